"""The translated Anthropic stream (proxy/providers/anthropic_stream.py, the core's
AnthropicChatStream): the same events, usage and failures as the Python translator it replaced,
for random streams cut into random reads. The behaviour tests of the translation live in
test_provider_anthropic.py; this file proves the move to the core changed nothing but what its
docstring says it changed (a non-string id or text is ignored instead of passed on; a tool input given
whole at its block's start is written compact)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbill import _core as core
from llmbill.proxy.providers.anthropic_errors import provider_failure, status_of
from llmbill.proxy.providers.anthropic_reply import finish_reason, openai_usage
from llmbill.proxy.providers.anthropic_request import JSON_TOOL
from llmbill.proxy.providers.anthropic_stream import AnthropicChatStream
from llmbill.proxy.providers.base import ProviderFailure

MAX_LINE = 16 << 20
DONE = b"data: [DONE]\n\n"


class Reference:
    """The Python translator the core's replaced (as of f5d4d39), kept only here, with the two
    decided changes marked."""

    def __init__(self, model: str, include_usage: bool, created: int) -> None:
        self._model, self._include_usage, self._created = model, include_usage, created
        self._scanner = core.SseUsageScanner()
        self.usage_error: str | None = None
        self._pending = b""
        self._data: list[bytes] = []
        self._id = ""
        self._tools: dict[Any, int] = {}
        self._json_blocks: set[Any] = set()
        self._stop_reason: Any = None
        self._stopped = False
        self._finished = False
        self.failure: ProviderFailure | None = None

    @property
    def usage(self) -> core.Usage | None:
        return self._scanner.usage

    @property
    def complete(self) -> bool:
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
        if self._pending:
            self._scan(b"\n")
            self._line(self._pending.rstrip(b"\r"), out)
            self._pending = b""
        self._line(b"", out)
        if self.failure is not None:
            return out
        if not self._stopped:
            return out + self._fail(ProviderFailure(502, "upstream_error", "Anthropic's stream ended before message_stop"))
        usage = self.usage
        if self._include_usage and usage is not None:
            out.append(self._event({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                    "model": self._model, "system_fingerprint": None, "choices": [],
                                    "usage": openai_usage(usage)}))
        return out + [DONE]

    def _scan(self, data: bytes) -> None:
        try:
            self._scanner.feed(data)
        except core.UsageError as exc:
            self.usage_error = self.usage_error or str(exc)

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        elif not line and self._data:
            data, self._data = b"\n".join(self._data), []
            self._event_of(data, out)

    def _event_of(self, data: bytes, out: list[bytes]) -> None:
        if self.failure is not None or self._stopped:
            return
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
            given_id = message.get("id") if isinstance(message, dict) else None
            self._id = given_id if isinstance(given_id, str) else ""  # decided: a non-string id is ignored
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

    @staticmethod
    def _text(value: Any) -> bool:
        return isinstance(value, str) and bool(value)  # decided: a non-string text is ignored

    def _block_start(self, index: Any, block: Any, out: list[bytes]) -> None:
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "text" and self._text(block.get("text")):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and self._text(block.get("thinking")):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            self._json_blocks.add(index)
        elif kind == "tool_use":
            self._tools[index] = position = len(self._tools)
            given = block.get("input")
            arguments = orjson.dumps(given).decode() if given else ""  # decided: compact
            out.append(self._chunk({"tool_calls": [{"index": position, "id": block.get("id"), "type": "function",
                                                    "function": {"name": block.get("name"), "arguments": arguments}}]}))

    def _block_delta(self, index: Any, delta: Any, out: list[bytes]) -> None:
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta" and self._text(delta.get("text")):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta" and self._text(delta.get("thinking")):
            out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "input_json_delta" and self._text(delta.get("partial_json")):
            if index in self._json_blocks:
                out.append(self._chunk({"content": delta["partial_json"]}))
            elif index in self._tools:
                out.append(self._chunk({"tool_calls": [{"index": self._tools[index],
                                                        "function": {"arguments": delta["partial_json"]}}]}))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "system_fingerprint": None,
                                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self._include_usage:
            chunk["usage"] = None
        return self._event(chunk)

    @staticmethod
    def _event(value: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(value) + b"\n\n"

    def _fail(self, failure: ProviderFailure) -> list[bytes]:
        self.failure = failure
        return [self._event({"error": {"message": failure.message, "type": failure.type, "param": None,
                                       "code": str(failure.status)}})]


# ---- random streams -------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)  # quotes, controls, any plane
INDEX = st.one_of(st.integers(0, 3), st.none(), st.just("1"))
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), TEXT),
                       lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
                       max_leaves=6)
MAYBE_TEXT = st.one_of(TEXT, TEXT, st.integers(0, 2), st.none())  # mostly text, sometimes not


def _with(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**event, **{k: v for k, v in fields.items() if v is not _MISSING}}


_MISSING = object()
MAYBE = st.one_of(st.just(_MISSING), INDEX)

EVENTS = st.one_of(
    st.builds(lambda i, u: {"type": "message_start", "message": {"id": i, "usage": u}},
              st.one_of(TEXT, st.integers(0, 9)),
              st.fixed_dictionaries({"input_tokens": st.integers(0, 9), "output_tokens": st.integers(0, 3)},
                                    optional={"cache_read_input_tokens": st.integers(0, 9)})),
    st.builds(lambda i, t, text: _with({"type": "content_block_start", "content_block": {"type": t, t: text}}, index=i),
              MAYBE, st.sampled_from(["text", "thinking", "image"]), MAYBE_TEXT),
    st.builds(lambda i, name, tid, inp: _with({"type": "content_block_start",
                                               "content_block": {"type": "tool_use", "id": tid, "name": name,
                                                                 "input": inp}}, index=i),
              MAYBE, st.sampled_from(["weather", JSON_TOOL]), st.one_of(TEXT, st.integers(0, 9), st.none()),
              st.one_of(st.just({}), JSONISH)),
    st.builds(lambda i, t, field, text: _with({"type": "content_block_delta", "delta": {"type": t, field: text}},
                                              index=i),
              MAYBE, st.sampled_from(["text_delta", "thinking_delta", "input_json_delta", "signature_delta"]),
              st.sampled_from(["text", "thinking", "partial_json"]), MAYBE_TEXT),
    st.builds(lambda r, n: {"type": "message_delta", "delta": {"stop_reason": r}, "usage": {"output_tokens": n}},
              st.sampled_from(["end_turn", "max_tokens", "tool_use", "refusal", "pause_turn", "new", None, 3, ["x"]]),
              st.integers(0, 99)),
    st.just({"type": "message_stop"}), st.just({"type": "ping"}), st.just({"type": "content_block_stop", "index": 0}),
    st.builds(lambda t: {"type": "error", "error": {"type": t, "message": "m"}},
              st.sampled_from(["overloaded_error", "api_error", "rate_limit_error", 5])),
    st.sampled_from([{"type": 3}, {"no": "type"}, {"type": "content_block_delta", "delta": "x"}]),
)


@st.composite
def block(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A block as Anthropic sends one: its start, then deltas of its kind at its index."""
    index = draw(st.integers(0, 2))
    kind = draw(st.sampled_from(["text", "thinking", "tool", "json"]))
    if kind in ("tool", "json"):
        start = {"type": "tool_use", "id": draw(TEXT), "name": "weather" if kind == "tool" else JSON_TOOL, "input": {}}
        field, delta_type = "partial_json", "input_json_delta"
    else:
        start = {"type": kind, kind: ""}
        field, delta_type = ("text", "text_delta") if kind == "text" else ("thinking", "thinking_delta")
    deltas = [{"type": "content_block_delta", "index": index, "delta": {"type": delta_type, field: text}}
              for text in draw(st.lists(TEXT, min_size=1, max_size=3))]
    return [{"type": "content_block_start", "index": index, "content_block": start}, *deltas,
            {"type": "content_block_stop", "index": index}]


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = []
    items = draw(st.lists(st.one_of(EVENTS, EVENTS, block(), block(), st.sampled_from(["bad", "comment"])), max_size=12))
    if draw(st.booleans()):  # as Anthropic ends a stream (else whatever the draw gave, or nothing)
        items.append([draw(EVENTS.filter(lambda e: e.get("type") == "message_delta")), {"type": "message_stop"}])
    for event in [e for item in items for e in (item if isinstance(item, list) else [item])]:
        if event == "bad":
            parts.append(b"data: " + draw(st.sampled_from([b"{not json", b"[1]", b"", b"null", b"\"s\""])) + b"\n\n")
        elif event == "comment":
            parts.append(draw(st.sampled_from([b": keep-alive\n", b"id: 4\n", b"retry: 10\n", b"event: x\n"])))
        else:
            ascii_only, compact = draw(st.booleans()), draw(st.booleans())  # compact: as Anthropic writes
            text = json.dumps(event, ensure_ascii=ascii_only, separators=(",", ":") if compact else None).encode()
            name = event["type"] if isinstance(event.get("type"), str) else "x"
            space = draw(st.sampled_from([b" ", b""]))
            parts.append(f"event: {name}\n".encode() + b"data:" + space + text + b"\n\n")
    data = b"".join(parts)
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    if data and draw(st.integers(0, 4)) == 0:  # cut short
        data = data[: draw(st.integers(0, len(data)))]
    return data


@settings(max_examples=400, deadline=None)
@given(streams(), st.data(), st.booleans())
def test_the_core_translates_as_the_python_it_replaced(data: bytes, draw: st.DataObject, include_usage: bool) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    ours, theirs = AnthropicChatStream("my \"model\" €", include_usage, 1_700_000_000), \
        Reference("my \"model\" €", include_usage, 1_700_000_000)
    for a, b in zip([0, *cuts], [*cuts, len(data)]):
        assert ours.feed(data[a:b]) == theirs.feed(data[a:b])
        assert ours.usage == theirs.usage and ours.complete == theirs.complete
    assert ours.finish() == theirs.finish()
    assert ours.finish() == theirs.finish() == []
    assert ours.usage == theirs.usage
    assert ours.usage_error == theirs.usage_error
    assert ours.complete == theirs.complete
    assert (ours.failure and vars(ours.failure)) == (theirs.failure and vars(theirs.failure))


@pytest.mark.parametrize("text", [
    b'"plain"', b'""', b'"\\u00e9 \\/ \\u001F"', b'"\\u000a"', b'"a\\qb"', b'"\xff"', b'"\xed\xa0\x80"',
    b'"\xc0\xaf"', b'"\xf4\x90\x80\x80"', b'"\xe2\x82"', b'"\xf0\x9f\x98\x80 \xe2\x82\xac"', b'"tab\tin"', b'"open',
])
@pytest.mark.parametrize("index", [b"0", b"12", b"01", b"-1"])
def test_text_deltas_read_by_their_bytes_read_as_the_python_did(text: bytes, index: bytes) -> None:
    """The core recognises Anthropic's compact text_delta by its bytes; escapes it would not write
    itself, invalid UTF-8, raw control characters and odd indexes go the general way (or fail) as
    they did in Python."""
    event = b'data: {"type":"content_block_delta","index":' + index + b',"delta":{"type":"text_delta","text":' + text + b"}}\n\n"
    start = b'data: {"type":"message_start","message":{"id":"m1"}}\n\n'
    ours, theirs = AnthropicChatStream("m", False, 1), Reference("m", False, 1)
    assert ours.feed(start + event) == theirs.feed(start + event)
    assert (ours.failure and vars(ours.failure)) == (theirs.failure and vars(theirs.failure))


def test_an_event_of_endless_data_lines_is_an_error_not_unbounded_memory() -> None:
    stream = AnthropicChatStream("m", True, 0)
    line = b"data: " + b"x" * (1 << 20) + b"\n"
    events: list[bytes] = []
    for _ in range(17):
        events += stream.feed(line)
    assert json.loads(events[-1][6:])["error"]["message"] == "Anthropic's stream sent an event over 16 MiB"
    assert stream.failure is not None and stream.failure.status == 502
    assert stream.finish() == []
