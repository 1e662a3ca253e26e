"""Gemini `GenerateContentResponse` → OpenAI shapes, usage and failures (shared by `gemini/`, `vertex_ai/`
and the stream translator).

Usage (Google's usageMetadata): `promptTokenCount` includes `cachedContentTokenCount`;
`thoughtsTokenCount` is NOT part of `candidatesTokenCount`; `toolUsePromptTokenCount` (prompts of
Google-run tools) is counted apart from the prompt and billed as input. So, in the one normal form:
prompt = promptTokenCount + toolUsePromptTokenCount, cached = cachedContentTokenCount (⊂ prompt),
completion = candidatesTokenCount + thoughtsTokenCount, reasoning = thoughtsTokenCount (⊂ completion).
The OpenAI-shaped `usage` says the same, so a client (or the C++ parser) reading it agrees to the token.

>>> u = usage_from_metadata({"promptTokenCount": 10, "cachedContentTokenCount": 4,
...                          "candidatesTokenCount": 5, "thoughtsTokenCount": 7})
>>> (u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.reasoning_tokens)
(10, 4, 12, 7)
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..._native import core
from .base import ProviderFailure

#: Joins an OpenAI tool-call id and the thought signature Gemini attached to that function call, so
#: that a client sending the call back (as every OpenAI client does) returns the signature with it.
THOUGHT_SIGNATURE = "__thought__"

_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                       "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR"})


def field_list(m: Mapping[str, Any], key: str) -> list[Any]:
    value = m.get(key)
    return value if isinstance(value, list) else []


def field_map(m: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = m.get(key)
    return value if isinstance(value, Mapping) else {}


def candidate_index(cand: Mapping[str, Any], position: int) -> int:
    value = cand.get("index")
    return value if isinstance(value, int) and not isinstance(value, bool) else position


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def _count(meta: Mapping[str, Any], name: str) -> int:
    value = meta.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_metadata(meta: Mapping[str, Any]) -> core.Usage:
    thoughts = _count(meta, "thoughtsTokenCount")
    return core.Usage(prompt_tokens=_count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount"),
                      cached_tokens=_count(meta, "cachedContentTokenCount"),
                      completion_tokens=_count(meta, "candidatesTokenCount") + thoughts,
                      reasoning_tokens=thoughts)


def openai_usage(usage: core.Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}


def finish_reason(reason: Any, called: bool) -> str | None:
    """Gemini's finishReason → OpenAI's; None while the candidate is still generating."""
    if not isinstance(reason, str) or not reason:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"  # STOP, and OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL ...


def read_parts(parts: Any, new_id: Callable[[], str]) -> tuple[str, str, list[dict[str, Any]]]:
    """A candidate's parts → (text, thought text, OpenAI tool calls without their stream index)."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, Mapping):
            continue
        call = part.get("functionCall")
        if isinstance(call, Mapping):
            given = call.get("id")
            call_id = given if isinstance(given, str) and given else new_id()
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                call_id += THOUGHT_SIGNATURE + signature
            args = field_map(call, "args")
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": str(call.get("name") or ""),
                                       "arguments": json.dumps(dict(args), separators=(",", ":"), ensure_ascii=False)}})
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") is True else text).append(part["text"])
    return "".join(text), "".join(thoughts), calls


def chat_completion(data: Mapping[str, Any], model: str, created: int,
                    new_id: Callable[[], str] = new_call_id) -> tuple[dict[str, Any], core.Usage]:
    """A whole GenerateContentResponse → (chat.completion, usage)."""
    choices: list[dict[str, Any]] = []
    for position, cand in enumerate(field_list(data, "candidates")):
        if not isinstance(cand, Mapping):
            continue
        text, thoughts, calls = read_parts(field_map(cand, "content").get("parts"), new_id)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if thoughts:
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": candidate_index(cand, position), "message": message, "logprobs": None,
                        "finish_reason": finish_reason(cand.get("finishReason"), bool(calls)) or "stop"})
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason): no candidate at all
        choices.append({"index": 0, "message": {"role": "assistant", "content": None}, "logprobs": None,
                        "finish_reason": "content_filter"})
    meta = data.get("usageMetadata")
    if isinstance(meta, Mapping):
        usage = usage_from_metadata(meta)
    else:  # never bill zero silently: estimate the completion (4 characters a token) and say so
        chars = sum(len(c["message"].get("content") or "") for c in choices)
        usage = core.Usage(completion_tokens=math.ceil(chars / 4), estimated=True)
    response_id = data.get("responseId")
    reply = {"id": f"chatcmpl-{response_id}" if isinstance(response_id, str) and response_id else
             "chatcmpl-" + secrets.token_hex(12),
             "object": "chat.completion", "created": created, "model": model, "choices": choices,
             "usage": openai_usage(usage)}
    return reply, usage


@dataclass(frozen=True)
class GoogleError:
    code: int | None
    status: str  # e.g. RESOURCE_EXHAUSTED; "" when the body is not Google's error shape
    message: str
    reasons: frozenset[str]  # the ErrorInfo reasons in `details`, e.g. API_KEY_INVALID

    @property
    def said(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


def google_error(body: bytes) -> GoogleError:
    """Google's `{"error": {"code", "message", "status", "details"}}` (also inside a one-element list,
    as a stream may send it); the raw text as the message when the body is not that shape."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, Mapping) else None
    if not isinstance(err, Mapping):
        return GoogleError(None, "", body.decode("utf-8", "replace")[:500], frozenset())
    reasons = frozenset(str(d["reason"]) for d in field_list(err, "details")
                        if isinstance(d, Mapping) and d.get("reason"))
    code = err.get("code")
    return GoogleError(code if isinstance(code, int) else None, str(err.get("status") or ""),
                       str(err.get("message") or ""), reasons)


#: ErrorInfo reasons that blame the deployment's credentials, whatever the status (Google answers a
#: wrong API key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID).
_CREDENTIAL_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED",
                                 "ACCESS_TOKEN_EXPIRED", "ACCESS_TOKEN_TYPE_UNSUPPORTED", "CREDENTIALS_MISSING",
                                 "SERVICE_DISABLED"})


def google_failure(status: int, body: bytes, credentials: str) -> ProviderFailure:
    """A Google API error → what the client sees. `credentials` names the deployment's credentials for
    the 401/403 case, which is the deployment's fault, never the client's: 502, not 401."""
    err = google_error(body)
    kind, said = err.status, err.said
    if status in (401, 403) or kind in ("UNAUTHENTICATED", "PERMISSION_DENIED") or err.reasons & _CREDENTIAL_REASONS:
        return ProviderFailure(502, "upstream_error", f"the deployment's {credentials} were refused ({said})")
    if status == 429 or kind == "RESOURCE_EXHAUSTED":
        return ProviderFailure(429, "rate_limit_error", said)
    if status == 503 or kind == "UNAVAILABLE":
        return ProviderFailure(503, "upstream_error", said)
    if status == 404 or kind == "NOT_FOUND":  # the deployment names a model the provider does not have
        return ProviderFailure(502, "upstream_error", said)
    if 400 <= status < 500:
        return ProviderFailure(400, "invalid_request_error", said)
    return ProviderFailure(502, "upstream_error", said)
