"""Anthropic's error shape both ways: a provider error → the status and type the client gets, and
an Anthropic-shaped error body for the native `/v1/messages` route.

Anthropic answers `{"type": "error", "error": {"type": ..., "message": ...}}` with these statuses:
400 invalid_request_error, 401 authentication_error, 402 billing_error, 403 permission_error,
404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error, 504 timeout_error,
529 overloaded_error. What the client gets (the proxy answers for the deployment, not Anthropic):
- 529 overloaded → 503, so clients and routers back off and retry as for any busy server;
- 429 → 429 rate_limit_error;
- 400 / 413 → the same status: the client's request is what Anthropic refused;
- 401 / 403 → 502 naming the deployment's credentials (a 401 would blame the client's own key), and
  likewise 402 billing and 404 (an unknown model name is the deployment's configuration);
- every other status → 502 upstream_error.

>>> provider_failure(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}').status
503
>>> error_body(429, "slow down")
b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import ProviderFailure

_TYPE_OF_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}
_STATUS_OF_TYPE = {t: s for s, t in _TYPE_OF_STATUS.items() if s != 503}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (unlisted 4xx: invalid_request_error, 5xx: api_error)."""
    return _TYPE_OF_STATUS.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def error_body(status: int, message: str, type_: str | None = None) -> bytes:
    """An error in Anthropic's shape, for the native Messages route."""
    return orjson.dumps({"type": "error", "error": {"type": type_ or error_type(status), "message": message}})


def status_of(type_: str) -> int:
    """The HTTP status Anthropic uses for an error type (an error event inside a stream has none)."""
    return _STATUS_OF_TYPE.get(type_, 500)


def read_error(status: int, body: bytes) -> tuple[str, str]:
    """(type, message) of an Anthropic error body; anything else is described, never trusted."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("message"), str):
        return error["type"], error["message"]
    text = body[:200].decode("utf-8", "replace").strip()
    return error_type(status), text or f"HTTP {status}"


def provider_failure(status: int, body: bytes) -> ProviderFailure:
    type_, message = read_error(status, body)
    said = f"Anthropic {status} {type_}: {message}"
    if status == 529 or type_ == "overloaded_error":
        return ProviderFailure(503, "overloaded_error", f"{said} (the provider is overloaded; retry later)")
    if status == 429:
        return ProviderFailure(429, "rate_limit_error", said)
    if status in (400, 413):
        return ProviderFailure(status, "invalid_request_error", said)
    if status in (401, 403):
        return ProviderFailure(502, "upstream_auth_error",
                               f"the deployment's Anthropic credentials were refused ({said})")
    return ProviderFailure(502, "upstream_error", said)
