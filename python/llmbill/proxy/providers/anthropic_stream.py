"""Anthropic Messages SSE → OpenAI chat.completion.chunk events, incrementally (pure; anthropic.py).

Events (Anthropic's streaming reference): message_start (the message id and input usage),
content_block_start / content_block_delta / content_block_stop per block (text_delta,
input_json_delta for tool arguments, thinking_delta), message_delta (stop_reason and cumulative
usage), message_stop, ping, and error (a failure after the 200).

What the client gets, in OpenAI's order: a first chunk with the role, content / tool_calls deltas,
a chunk with the finish_reason (at message_stop), then from finish() the usage chunk
(`choices: []`) when include_usage, and `data: [DONE]`. An error event becomes OpenAI's in-stream
error (`data: {"error": {...}}`) and ends the stream without [DONE]; so does an upstream that stops
before message_stop. Bytes may arrive split anywhere: only complete lines are read.

Usage comes from the C++ core's SseUsageScanner fed the very same bytes: the reader that
core.Usage.from_response shares its rules with, so a streamed and an unstreamed call of the same
tokens bill the same.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..._native import core
from .anthropic_errors import provider_failure, status_of
from .anthropic_reply import finish_reason, openai_usage
from .anthropic_request import JSON_TOOL
from .base import ProviderFailure

Json = dict[str, Any]
DONE = b"data: [DONE]\n\n"
MAX_LINE = 16 << 20  # as the core's scanner: a longer line is a broken or hostile upstream


class AnthropicChatStream:
    """One streamed reply; meets base.ChatStream."""

    def __init__(self, model: str, include_usage: bool, created: int) -> None:
        self._model, self._include_usage, self._created = model, include_usage, created
        self._scanner = core.SseUsageScanner()
        self._usage_error: str | None = None
        self._pending = b""  # an incomplete line
        self._data: list[bytes] = []  # the data lines of the event being read
        self._id = ""
        self._tools: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._json_blocks: set[int] = set()  # blocks of the response_format tool: they are content
        self._stop_reason: Any = None
        self._stopped = False  # message_stop seen
        self._finished = False
        self.failure: ProviderFailure | None = None  # set by an error event or a cut stream

    @property
    def usage(self) -> core.Usage | None:
        return self._scanner.usage

    @property
    def usage_error(self) -> str | None:
        """The first usage the core could not read (the stream's usage then stops at the last good one)."""
        return self._usage_error

    @property
    def complete(self) -> bool:
        """message_stop arrived and no error did."""
        return self._stopped and self.failure is None

    def feed(self, data: bytes) -> list[bytes]:
        self._scan(data)
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        out: list[bytes] = []
        for line in lines:
            self._line(line[:-1] if line.endswith(b"\r") else line, out)
        if len(self._pending) > MAX_LINE:
            self._pending = b""
            if self.failure is None:
                out += self._fail(ProviderFailure(502, "upstream_error", "Anthropic's stream sent a line over 16 MiB"))
        return out

    def finish(self) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        out: list[bytes] = []
        if self._pending:  # a last line without its newline
            self._scan(b"\n")
            self._line(self._pending.rstrip(b"\r"), out)
            self._pending = b""
        self._line(b"", out)  # a last event without its blank line
        if self.failure is not None:
            return out
        if not self._stopped:
            return out + self._fail(ProviderFailure(502, "upstream_error",
                                                    "Anthropic's stream ended before message_stop"))
        usage = self.usage
        if self._include_usage and usage is not None:
            out.append(self._event({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                    "model": self._model, "system_fingerprint": None, "choices": [],
                                    "usage": openai_usage(usage)}))
        return out + [DONE]

    # ---- reading ---------------------------------------------------------------------------------

    def _scan(self, data: bytes) -> None:
        try:
            self._scanner.feed(data)
        except core.UsageError as exc:
            self._usage_error = self._usage_error or str(exc)

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        elif not line and self._data:  # a blank line ends the event
            data, self._data = b"\n".join(self._data), []
            self._event_of(data, out)
        # event: names repeat the data's `type`; comments and id:/retry: say nothing here

    def _event_of(self, data: bytes, out: list[bytes]) -> None:
        if self.failure is not None or self._stopped:
            return  # nothing after an error or message_stop reaches the client
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            out += self._fail(ProviderFailure(502, "upstream_error", "Anthropic's stream sent an unreadable event"))
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            self._id = str(message.get("id") or "") if isinstance(message, dict) else ""
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif kind == "content_block_start":
            self._block_start(event.get("index"), event.get("content_block"), out)
        elif kind == "content_block_delta":
            self._block_delta(event.get("index"), event.get("delta"), out)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self._stopped = True
            out.append(self._chunk({}, finish_reason(self._stop_reason, bool(self._tools))))
        elif kind == "error":
            error = event.get("error")
            type_ = str(error.get("type") or "api_error") if isinstance(error, dict) else "api_error"
            out += self._fail(provider_failure(status_of(type_), data))
        # ping, content_block_stop and event types added later carry nothing for the client

    def _block_start(self, index: Any, block: Any, out: list[bytes]) -> None:
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            self._json_blocks.add(index)
        elif kind == "tool_use":
            self._tools[index] = position = len(self._tools)
            given = block.get("input")
            arguments = json.dumps(given, ensure_ascii=False) if given else ""  # the deltas usually carry it
            out.append(self._chunk({"tool_calls": [{"index": position, "id": block.get("id"), "type": "function",
                                                    "function": {"name": block.get("name"), "arguments": arguments}}]}))

    def _block_delta(self, index: Any, delta: Any, out: list[bytes]) -> None:
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta" and delta.get("thinking"):
            out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "input_json_delta" and delta.get("partial_json"):
            if index in self._json_blocks:
                out.append(self._chunk({"content": delta["partial_json"]}))
            elif index in self._tools:
                out.append(self._chunk({"tool_calls": [{"index": self._tools[index],
                                                        "function": {"arguments": delta["partial_json"]}}]}))

    # ---- writing ---------------------------------------------------------------------------------

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        chunk: Json = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                       "model": self._model, "system_fingerprint": None,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self._include_usage:
            chunk["usage"] = None  # as OpenAI: null in every chunk but the last
        return self._event(chunk)

    @staticmethod
    def _event(value: Json) -> bytes:
        return b"data: " + orjson.dumps(value) + b"\n\n"

    def _fail(self, failure: ProviderFailure) -> list[bytes]:
        self.failure = failure
        return [self._event({"error": {"message": failure.message, "type": failure.type, "param": None,
                                       "code": str(failure.status)}})]
