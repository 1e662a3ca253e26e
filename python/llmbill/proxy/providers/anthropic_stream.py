"""Anthropic Messages SSE → OpenAI chat.completion.chunk events, incrementally (anthropic.py).

Events (Anthropic's streaming reference): message_start (the message id and input usage),
content_block_start / content_block_delta / content_block_stop per block (text_delta,
input_json_delta for tool arguments, thinking_delta), message_delta (stop_reason and cumulative
usage), message_stop, ping, and error (a failure after the 200).

What the client gets, in OpenAI's order: a first chunk with the role, content / tool_calls deltas,
a chunk with the finish_reason (at message_stop), then from finish() the usage chunk
(`choices: []`) when include_usage, and `data: [DONE]`. An error event becomes OpenAI's in-stream
error (`data: {"error": {...}}`) and ends the stream without [DONE]; so do an upstream that stops
before message_stop, an unreadable event and a line or event over 16 MiB. Bytes may arrive split
anywhere: only complete lines are read.

The translation is the C++ core's `AnthropicChatStream` (one crossing a read; the same steps in
Python were ~37 µs a stream, bench/README.md): it cuts the lines, translates each event, and scans
the usage with the core's SseUsageScanner fed the very same bytes — the reader that
core.Usage.from_response shares its rules with, so a streamed and an unstreamed call of the same
tokens bill the same. This module maps its failures to the client's error, with the error mapping
an unstreamed reply's failure gets (anthropic_errors.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..._native import core
from .anthropic_errors import provider_failure, status_of
from .anthropic_request import JSON_TOOL
from .base import ProviderFailure

_FAILURES = {
    "unreadable_event": "Anthropic's stream sent an unreadable event",
    "line_too_long": "Anthropic's stream sent a line over 16 MiB",
    "event_too_long": "Anthropic's stream sent an event over 16 MiB",
    "ended_early": "Anthropic's stream ended before message_stop",
}


def _failure(kind: str, event: bytes) -> ProviderFailure:
    if kind != "error_event":
        return ProviderFailure(502, "upstream_error", _FAILURES[kind])
    data: Any = orjson.loads(event)  # the core read it as a JSON object
    error = data.get("error")
    type_ = str(error.get("type") or "api_error") if isinstance(error, dict) else "api_error"
    return provider_failure(status_of(type_), event)


class AnthropicChatStream:
    """One streamed reply; meets base.ChatStream."""

    __slots__ = ("_native", "failure")

    def __init__(self, model: str, include_usage: bool, created: int) -> None:
        self._native = core.AnthropicChatStream(model, include_usage, created, JSON_TOOL)
        self.failure: ProviderFailure | None = None  # set by an error event or a cut stream

    @property
    def usage(self) -> core.Usage | None:
        return self._native.usage

    @property
    def usage_error(self) -> str | None:
        """The first usage the core could not read (the stream's usage then stops at the last good one)."""
        return self._native.usage_error

    @property
    def complete(self) -> bool:
        """message_stop arrived and no error did."""
        return self._native.complete

    def feed(self, data: bytes) -> list[bytes]:
        return self._ended(self._native.feed(data))

    def finish(self) -> list[bytes]:
        return self._ended(self._native.finish())

    def _ended(self, out: list[bytes]) -> list[bytes]:
        """`out`, and the client's error event when the stream failed in this step (once)."""
        if self.failure is None and self._native.failure:
            failure = self.failure = _failure(self._native.failure, self._native.failed_event)
            out.append(b"data: " + orjson.dumps({"error": {"message": failure.message, "type": failure.type,
                                                           "param": None, "code": str(failure.status)}}) + b"\n\n")
        return out
