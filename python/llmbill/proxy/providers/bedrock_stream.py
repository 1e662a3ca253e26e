"""Bedrock ConverseStream → OpenAI chat.completion.chunk events, plus what Converse replies and streams
share: finish reasons, usage, and the table of Bedrock's exceptions.

ConverseStream answers `application/vnd.amazon.eventstream`: binary frames (a prelude with lengths and
a CRC, typed headers, a JSON payload, a CRC of the whole). botocore's EventStreamBuffer parses them, so
a frame split across reads at any byte comes out whole. Events: messageStart, contentBlockStart /
Delta / Stop, messageStop (the stop reason), metadata (the usage) and exceptions in the stream.

Usage follows Anthropic's rule: `inputTokens` excludes cache reads and writes. The OpenAI-shaped
usage shows prompt_tokens = input + cache read + cache write (LiteLLM's convention) and
`prompt_tokens_details.cached_tokens` = cache read; core.Usage gets the same itemisation, so the
streamed and the unstreamed call of the same tokens bill the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..._native import core
from .base import ChatStream, ProviderFailure
from .openai_compatible import ProviderConfigError

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}

_CREDENTIALS = "Bedrock rejected the deployment's AWS credentials (aws_access_key_id / aws_secret_access_key / " \
               "aws_session_token)"

# Bedrock's exception names → (status for the client, OpenAI-style type, what the message says first).
EXCEPTIONS: Mapping[str, tuple[int, str, str]] = {
    "ThrottlingException": (429, "rate_limit_error", ""),
    "ServiceQuotaExceededException": (429, "rate_limit_error", ""),
    "ModelNotReadyException": (503, "upstream_error", "the Bedrock model is not ready"),
    "ServiceUnavailableException": (503, "upstream_error", "Bedrock is unavailable"),
    "ValidationException": (400, "invalid_request_error", ""),
    "AccessDeniedException": (502, "upstream_error", _CREDENTIALS),
    "UnrecognizedClientException": (502, "upstream_error", _CREDENTIALS),
    "InvalidSignatureException": (502, "upstream_error", _CREDENTIALS),
    "ExpiredTokenException": (502, "upstream_error", _CREDENTIALS),
    "ResourceNotFoundException": (502, "upstream_error", "Bedrock has no such model in this region"),
    "ModelTimeoutException": (504, "upstream_error", "the Bedrock model timed out"),
    "ModelErrorException": (502, "upstream_error", "the Bedrock model failed"),
    "ModelStreamErrorException": (502, "upstream_error", "the Bedrock model failed mid-stream"),
    "InternalServerException": (502, "upstream_error", "Bedrock failed"),
}


def bedrock_failure(exception: str, status: int, message: str) -> ProviderFailure:
    """A Bedrock error (by exception name when known, else by HTTP status) as the client sees it."""
    name = exception[:1].upper() + exception[1:]  # stream exceptions are spelt throttlingException
    known = EXCEPTIONS.get(name)
    if known is None:
        by_status = {429: "ThrottlingException", 400: "ValidationException", 403: "AccessDeniedException",
                     401: "UnrecognizedClientException", 404: "ResourceNotFoundException",
                     503: "ServiceUnavailableException", 408: "ModelTimeoutException"}
        known = EXCEPTIONS.get(by_status.get(status, ""), (502, "upstream_error", f"Bedrock answered {status}"))
    code, type_, lead = known
    text = f"{lead}: {message}" if lead and message else (lead or message or f"Bedrock answered {status}")
    return ProviderFailure(code, type_, text)


def finish_reason(stop_reason: object) -> str:
    return FINISH_REASONS.get(str(stop_reason), "stop")


def usage_of(usage: object) -> tuple[dict[str, Any], core.Usage]:
    """Converse `usage` → (OpenAI usage object, core.Usage); both count cache tokens in the prompt."""
    u = usage if isinstance(usage, Mapping) else {}

    def count(name: str) -> int:
        v = u.get(name)
        return v if isinstance(v, int) and v > 0 else 0

    read, write = count("cacheReadInputTokens"), count("cacheWriteInputTokens")
    prompt, completion = count("inputTokens") + read + write, count("outputTokens")
    openai: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": read}}
    if write:
        openai["cache_creation_input_tokens"] = write  # as LiteLLM shows Bedrock and Anthropic cache writes
    return openai, core.Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=read,
                              cache_creation_tokens=write, estimated=not u)


def event_buffer() -> Any:
    try:
        from botocore.eventstream import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            EventStreamBuffer,
        )
    except ImportError:
        raise ProviderConfigError("bedrock/ deployments need botocore: pip install 'llmbill[bedrock]'",
                                  "model") from None
    return EventStreamBuffer()


class BedrockChatStream:
    """One ConverseStream reply, translated as its bytes arrive (ChatStream)."""

    def __init__(self, model: str, include_usage: bool, chunk_id: str, created: int) -> None:
        self._buffer = event_buffer()  # first: a missing botocore fails here with the one-line config error
        from botocore.eventstream import ParserError  # type: ignore[import-untyped,import-not-found,unused-ignore]

        self._parser_error: type[Exception] = ParserError
        self._base = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._include_usage = include_usage
        self._tools: dict[int, int] = {}  # contentBlockIndex → index in OpenAI's tool_calls
        self._usage: core.Usage | None = None
        self._openai_usage: dict[str, Any] | None = None
        self._broken = False  # a corrupt frame: nothing after it can be trusted
        self.failure: ProviderFailure | None = None  # an exception the stream carried

    @property
    def usage(self) -> core.Usage | None:
        return self._usage

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            return []
        self._buffer.add_data(data)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                out += self._message(message.headers, message.payload)
        except self._parser_error as exc:
            self._broken = True
            out.append(self._error(ProviderFailure(502, "upstream_error", f"corrupt Bedrock event stream: {exc}")))
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        if self._include_usage and self._openai_usage is not None:
            out.append(self._chunk({**self._base, "choices": [], "usage": self._openai_usage}))
        return out + [b"data: [DONE]\n\n"]

    def _message(self, headers: Mapping[str, Any], payload: bytes) -> list[bytes]:
        kind = headers.get(":message-type")
        if kind == "exception":
            return [self._error(bedrock_failure(str(headers.get(":exception-type", "")), 502, _message_of(payload)))]
        if kind == "error":
            code, text = str(headers.get(":error-code", "")), str(headers.get(":error-message", ""))
            return [self._error(bedrock_failure(code, 502, text))]
        if kind != "event":
            return []
        try:
            event = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            return []
        return self._event(str(headers.get(":event-type", "")), event if isinstance(event, dict) else {})

    def _event(self, name: str, event: dict[str, Any]) -> list[bytes]:
        if name == "messageStart":
            return [self._delta({"role": "assistant", "content": ""})]
        if name == "contentBlockStart":
            tool = (event.get("start") or {}).get("toolUse")
            if not isinstance(tool, dict):
                return []
            index = self._tools.setdefault(int(event.get("contentBlockIndex") or 0), len(self._tools))
            call = {"index": index, "id": tool.get("toolUseId", ""), "type": "function",
                    "function": {"name": tool.get("name", ""), "arguments": ""}}
            return [self._delta({"tool_calls": [call]})]
        if name == "contentBlockDelta":
            delta = event.get("delta") or {}
            if isinstance(delta.get("text"), str):
                return [self._delta({"content": delta["text"]})]
            tool = delta.get("toolUse")
            if isinstance(tool, dict):
                index = self._tools.get(int(event.get("contentBlockIndex") or 0), 0)
                piece = {"index": index, "function": {"arguments": tool.get("input", "")}}
                return [self._delta({"tool_calls": [piece]})]
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
                return [self._delta({"reasoning_content": reasoning["text"]})]
            return []
        if name == "messageStop":
            return [self._chunk({**self._base, "choices": [
                {"index": 0, "delta": {}, "finish_reason": finish_reason(event.get("stopReason")), "logprobs": None}]})]
        if name == "metadata" and isinstance(event.get("usage"), dict):
            self._openai_usage, self._usage = usage_of(event["usage"])
        return []  # contentBlockStop, unknown events

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._chunk({**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": None,
                                                       "logprobs": None}]})

    def _error(self, failure: ProviderFailure) -> bytes:
        self.failure = failure
        return self._chunk({"error": {"message": failure.message, "type": failure.type, "param": None,
                                      "code": str(failure.status)}})

    @staticmethod
    def _chunk(data: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(data) + b"\n\n"


def _message_of(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")[:500]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("Message") or "")
    return ""


if TYPE_CHECKING:  # mypy proves the stream meets the contract
    _conforms: ChatStream = BedrockChatStream("m", True, "id", 0)
