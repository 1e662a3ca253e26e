"""A Gemini `streamGenerateContent?alt=sse` reply → OpenAI chat.completion.chunk events, incrementally.

Google frames each `GenerateContentResponse` as `data: {...}` followed by a blank line (`\\r\\n\\r\\n`
in practice; `\\n\\n` is accepted too), and every chunk's `usageMetadata` is the running total, so the
last one seen is the call's usage — the same numbers, read by the same function, as the unstreamed
reply's, hence the same `core.Usage` to the token. Bytes may arrive split anywhere, even inside a
separator or a UTF-8 sequence: only whole events are decoded.

>>> s = GeminiStream("m", include_usage=False, created=0)
>>> s.feed(b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP"}],'
...        b'"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}\\r')
[]
>>> len(s.feed(b'\\n\\r\\n')), s.usage.completion_tokens, s.finish()[-1]
(1, 1, b'data: [DONE]\\n\\n')
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ..._native import core
from .gemini_reply import (candidate_index, field_list, field_map, finish_reason, google_error, new_call_id,
                           openai_usage, read_parts, usage_from_metadata)

_SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")


class GeminiStream:
    """One streamed call (ChatStream)."""

    def __init__(self, model: str, include_usage: bool, created: int,
                 new_id: Callable[[], str] = new_call_id) -> None:
        self._model, self._include_usage, self._created, self._new_id = model, include_usage, created, new_id
        self._buffer = b""
        self._id = ""
        self._usage: core.Usage | None = None
        self._calls: dict[int, int] = {}  # candidate index → tool calls sent so far (their stream index)
        self._blocked = False
        self._done = False

    @property
    def usage(self) -> core.Usage | None:
        return self._usage

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            cuts = [(at, len(sep)) for sep in _SEPARATORS if (at := self._buffer.find(sep)) >= 0]
            if not cuts:
                return out
            at, width = min(cuts)
            event, self._buffer = self._buffer[:at], self._buffer[at + width:]
            out += self._event(event)

    def finish(self) -> list[bytes]:
        if self._done:
            return []
        self._done = True
        out = self._event(self._buffer) if self._buffer.strip() else []  # a last event without its blank line
        self._buffer = b""
        if self._blocked and not self._calls:  # the prompt was blocked: no candidate ever came
            out.append(self._chunk([{"index": 0, "delta": {"role": "assistant"}, "logprobs": None,
                                     "finish_reason": "content_filter"}]))
        if self._include_usage and self._usage is not None:
            out.append(self._chunk([], usage=openai_usage(self._usage)))
        return out + [b"data: [DONE]\n\n"]

    # --- one event ------------------------------------------------------------------------------
    def _event(self, event: bytes) -> list[bytes]:
        lines = [line[5:].lstrip(b" ") for line in event.replace(b"\r\n", b"\n").split(b"\n")
                 if line.startswith(b"data:")]
        if not lines:
            return []  # a comment or a field other than data
        payload = b"\n".join(lines)
        try:
            data = json.loads(payload)
        except ValueError:
            return [self._error("the upstream sent an event that is not JSON")]
        if isinstance(data, Mapping) and "error" in data:
            return [self._error(google_error(payload).said)]
        if not isinstance(data, Mapping):
            return [self._error("the upstream sent an event that is not a JSON object")]
        if not self._id:
            rid = data.get("responseId")
            self._id = f"chatcmpl-{rid}" if isinstance(rid, str) and rid else "chatcmpl-" + secrets.token_hex(12)
        meta = data.get("usageMetadata")
        if isinstance(meta, Mapping):
            self._usage = usage_from_metadata(meta)
        feedback = data.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            self._blocked = True
        choices = []
        for position, cand in enumerate(field_list(data, "candidates")):
            if isinstance(cand, Mapping):
                choice = self._choice(cand, position)
                if choice is not None:
                    choices.append(choice)
        return [self._chunk(choices)] if choices else []

    def _choice(self, cand: Mapping[str, Any], position: int) -> dict[str, Any] | None:
        index = candidate_index(cand, position)
        text, thoughts, calls = read_parts(field_map(cand, "content").get("parts"), self._new_id)
        delta: dict[str, Any] = {}
        if index not in self._calls:
            self._calls[index] = 0
            delta["role"] = "assistant"
        if text:
            delta["content"] = text
        if thoughts:
            delta["reasoning_content"] = thoughts
        if calls:  # Gemini sends each function call whole, in one chunk
            first = self._calls[index]
            delta["tool_calls"] = [{"index": first + n, **call} for n, call in enumerate(calls)]
            self._calls[index] += len(calls)
        reason = finish_reason(cand.get("finishReason"), self._calls[index] > 0)
        if not delta and reason is None:
            return None
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        self._id = self._id or "chatcmpl-" + secrets.token_hex(12)
        chunk: dict[str, Any] = {"id": self._id,
                                 "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"

    @staticmethod
    def _error(message: str) -> bytes:
        body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": None}}
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
