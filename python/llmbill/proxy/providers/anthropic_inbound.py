"""Anthropic Messages in, OpenAI chat out — and the chat reply or stream back as Messages — for
/v1/messages calls to deployments that do not speak Messages (OpenAI, Gemini, mock, ...).

Pure functions. What chat cannot express (`top_k`, extended `thinking`, documents) is refused by
name rather than dropped. Usage maps back as Anthropic counts it: `input_tokens` excludes cache
reads (OpenAI's `cached_tokens` ⊂ `prompt_tokens`).

>>> chat_request({"model": "m", "max_tokens": 5, "system": "be brief",
...               "messages": [{"role": "user", "content": "hi"}]})["messages"][0]
{'role': 'system', 'content': 'be brief'}
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import orjson

from .base import ProviderInputError

UNSUPPORTED = ("top_k", "thinking", "container", "mcp_servers")
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def _text(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise ProviderInputError(f"{where}: must be a string or a list of text blocks", where)
    parts = []
    for b in blocks:
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise ProviderInputError(f"{where}: only text blocks are allowed here", where)
        parts.append(b["text"])
    return "\n".join(parts)


def _image(block: Mapping[str, Any]) -> dict[str, Any]:
    src = block.get("source")
    if isinstance(src, dict) and src.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{src.get('media_type')};base64,{src.get('data')}"}}
    if isinstance(src, dict) and src.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": src.get("url")}}
    raise ProviderInputError("messages: an image block needs a base64 or url source", "messages")


def _user(content: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    if not isinstance(content, list):
        raise ProviderInputError("messages: content must be a string or a list of blocks", "messages")
    parts: list[dict[str, Any]] = []
    for b in content:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(b.get("text", ""))})
        elif kind == "image":
            parts.append(_image(b))
        elif kind == "tool_result":
            # OpenAI's tool messages come right after the assistant's tool calls, before any user text.
            result = b.get("content")
            text = result if isinstance(result, str) else _text(result or [], "messages.tool_result.content")
            out.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")),
                        "content": ("[error] " + text) if b.get("is_error") else text})
        else:
            raise ProviderInputError(f"messages: content block type {kind!r} cannot be sent to this model", "messages")
    if parts:
        out.append({"role": "user", "content": parts})


def _assistant(content: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "assistant", "content": content})
        return
    if not isinstance(content, list):
        raise ProviderInputError("messages: content must be a string or a list of blocks", "messages")
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for b in content:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            text.append(str(b.get("text", "")))
        elif kind == "tool_use":
            calls.append({"id": str(b.get("id", "")), "type": "function",
                          "function": {"name": str(b.get("name", "")),
                                       "arguments": orjson.dumps(b.get("input") or {}).decode()}})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's earlier reasoning is not replayable to another provider
        else:
            raise ProviderInputError(f"messages: content block type {kind!r} cannot be sent to this model", "messages")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        msg["tool_calls"] = calls
    out.append(msg)


def _tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        raise ProviderInputError("tool_choice: must be an object", "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise ProviderInputError(f"tool_choice: unknown type {kind!r}", "tool_choice")


def chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Messages request → an OpenAI chat request (model left to the caller)."""
    for name in UNSUPPORTED:
        if body.get(name) is not None:
            raise ProviderInputError(f"{name}: not supported for this model (it is not an Anthropic deployment)",
                                     name)
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _text(body["system"], "system")})
    for m in body.get("messages") or []:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise ProviderInputError("messages: each message needs role user or assistant", "messages")
        (_user if m["role"] == "user" else _assistant)(m.get("content"), messages)
    out: dict[str, Any] = {"messages": messages, "max_tokens": body.get("max_tokens")}
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        out["user"] = meta["user_id"]
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise ProviderInputError("tools: must be a list", "tools")
        fns = []
        for t in tools:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or "input_schema" not in t:
                raise ProviderInputError("tools: each tool needs a name and an input_schema (client tools only)",
                                         "tools")
            fn: dict[str, Any] = {"name": t["name"], "parameters": t["input_schema"]}
            if t.get("description"):
                fn["description"] = t["description"]
            fns.append({"type": "function", "function": fn})
        out["tools"] = fns
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    return out


def _usage(u: Mapping[str, Any] | None) -> dict[str, int]:
    u = u or {}
    prompt = int(u.get("prompt_tokens") or 0)
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {"input_tokens": prompt - cached, "output_tokens": int(u.get("completion_tokens") or 0),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def _message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def messages_reply(reply: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion → a Messages reply."""
    choice = (reply.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for tc in msg.get("tool_calls") or []:
        fn = tc.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": fn.get("arguments")}
        content.append({"type": "tool_use", "id": tc.get("id") or "toolu_" + uuid.uuid4().hex[:20],
                        "name": fn.get("name", ""), "input": args})
    return {"id": _message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": _usage(reply.get("usage"))}


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesStreamWriter:
    """OpenAI chat chunks (parsed) → Anthropic stream events, block by block."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block = -1  # index of the open content block
        self.open_kind = ""  # "text" | "tool"
        self.tool_index: dict[int, int] = {}  # OpenAI tool_call index → our block index
        self.finish: str | None = None
        self.usage: dict[str, int] | None = None

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return [_event("message_start", {"type": "message_start", "message": {
            "id": _message_id(), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})]

    def _close_block(self) -> list[bytes]:
        if self.block < 0 or not self.open_kind:
            return []
        self.open_kind = ""
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def chunk(self, data: Mapping[str, Any]) -> list[bytes]:
        out = self._start()
        if data.get("usage"):
            self.usage = _usage(data["usage"])
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.open_kind != "text":
                    out += self._close_block()
                    self.block += 1
                    self.open_kind = "text"
                    out.append(_event("content_block_start", {"type": "content_block_start", "index": self.block,
                                                              "content_block": {"type": "text", "text": ""}}))
                out.append(_event("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                          "delta": {"type": "text_delta", "text": delta["content"]}}))
            for tc in delta.get("tool_calls") or []:
                i = int(tc.get("index", 0))
                fn = tc.get("function") or {}
                if i not in self.tool_index:
                    out += self._close_block()
                    self.block += 1
                    self.open_kind = "tool"
                    self.tool_index[i] = self.block
                    out.append(_event("content_block_start", {
                        "type": "content_block_start", "index": self.block,
                        "content_block": {"type": "tool_use", "id": tc.get("id") or "toolu_" + uuid.uuid4().hex[:20],
                                          "name": fn.get("name", ""), "input": {}}}))
                if fn.get("arguments"):
                    out.append(_event("content_block_delta", {
                        "type": "content_block_delta", "index": self.tool_index[i],
                        "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]}}))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def end(self) -> list[bytes]:
        out = self._start() + self._close_block()
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        out.append(_event("message_delta", {"type": "message_delta",
                                            "delta": {"stop_reason": STOP_REASONS.get(self.finish or "stop", "end_turn"),
                                                      "stop_sequence": None},
                                            "usage": usage}))
        out.append(_event("message_stop", {"type": "message_stop"}))
        return out


async def messages_stream(chunks: AsyncIterable[bytes], model: str) -> AsyncIterator[bytes]:
    """The proxy's OpenAI SSE bytes (as the chat relay yields them) → Anthropic SSE bytes."""
    writer = MessagesStreamWriter(model)
    buffer = b""
    async for data in chunks:
        buffer += data
        out: list[bytes] = []
        while True:
            cut = buffer.find(b"\n\n")
            if cut < 0:
                break
            event, buffer = buffer[:cut], buffer[cut + 2:]
            for line in event.split(b"\n"):
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]" or not payload:
                    continue
                try:
                    parsed = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(parsed, dict):
                    out += writer.chunk(parsed)
        if out:
            yield b"".join(out)
    yield b"".join(writer.end())
