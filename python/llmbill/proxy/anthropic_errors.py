"""Anthropic's error shape for the Anthropic-native routes (/v1/messages): the Anthropic SDK and
Claude Code read `{"type": "error", "error": {"type", "message"}}`. The status is the same as on the
OpenAI routes; only the body's shape and type names differ.

>>> anthropic_error_body(429, "over budget", "budget_exceeded")
b'{"type":"error","error":{"type":"rate_limit_error","message":"over budget"}}'
"""

from __future__ import annotations

import orjson

# OpenAI-style types used by the proxy → Anthropic's error types.
_TYPES = {
    "bad_request_error": "invalid_request_error", "invalid_request_error": "invalid_request_error",
    "auth_error": "authentication_error", "authentication_error": "authentication_error",
    "permission_error": "permission_error", "key_model_access_denied": "permission_error",
    "customer_blocked": "permission_error", "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error", "budget_exceeded": "rate_limit_error",
    "overloaded_error": "overloaded_error", "request_too_large": "request_too_large",
}


def anthropic_type(status: int, type_: str) -> str:
    if type_ in _TYPES:
        return _TYPES[type_]
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 413:
        return "request_too_large"
    if status == 429:
        return "rate_limit_error"
    if status in (503, 529):
        return "overloaded_error"
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def anthropic_error_body(status: int, message: str, type_: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": anthropic_type(status, type_), "message": message}})
