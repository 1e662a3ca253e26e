"""Errors as OpenAI-style JSON: {"error": {"message", "type", "param", "code"}}, `code` the status.

Every failure a client can cause is a ProxyError with the status and type of the table in
docs/proxy-api.md; nothing else escapes a route (the app turns the unexpected into a 500 without a
traceback in the body).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import orjson


class ProxyError(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.headers = dict(headers or {})
        self.budget_kind: str | None = None  # which budget refused the call (metrics label)

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.type, self.param)


def error_body(status: int, message: str, type_: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": str(status)}})


def bad_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, "bad_request_error", param)


def not_found(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(404, message, "not_found_error", param)


def auth_error(message: str, status: int = 401) -> ProxyError:
    return ProxyError(status, message, "auth_error")


BUDGET_EXCEEDED_STATUS = 422  # LiteLLM 1.108's default; litellm_settings.budget_exceeded_status_code changes it


def budget_exceeded(message: str, status: int = BUDGET_EXCEEDED_STATUS) -> ProxyError:
    # The status is the operator's (clients pin LiteLLM's 422, older 400, or 429); x-should-retry
    # stops the openai SDK retrying whichever it is: spending more time will not lower the spend.
    return ProxyError(status, message, "budget_exceeded", None, {"x-should-retry": "false"})


def rate_limited(message: str, retry_after: float) -> ProxyError:
    return ProxyError(429, message, "rate_limit_error", None, {"retry-after": str(max(1, math.ceil(retry_after)))})
