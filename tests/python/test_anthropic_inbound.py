"""providers/anthropic_inbound.py: Messages requests become chat requests and chat replies or streams
become Messages again, for /v1/messages calls to deployments that do not speak Messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from llmbill.proxy.providers.anthropic_inbound import chat_request, messages_reply, messages_stream
from llmbill.proxy.providers.base import ProviderInputError


def test_tools_and_tool_results_round_trip() -> None:
    body = {
        "model": "m", "max_tokens": 100, "stop_sequences": ["END"], "temperature": 0.2,
        "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "checking"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "weather",
                                               "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
                                         {"type": "text", "text": "and tomorrow?"}]},
        ]}
    out = chat_request(body)
    assert out["messages"][0] == {"role": "system", "content": "one\ntwo"}
    assert out["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    call = out["messages"][2]["tool_calls"][0]
    assert call["id"] == "toolu_1" and orjson.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"}
    assert out["messages"][4] == {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]}
    assert out["tools"] == [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"},
                                                              "description": "w"}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert out["stop"] == ["END"] and out["max_tokens"] == 100 and out["temperature"] == 0.2


@pytest.mark.parametrize("field", ["top_k", "thinking"])
def test_what_chat_cannot_express_is_refused_by_name(field: str) -> None:
    with pytest.raises(ProviderInputError) as err:
        chat_request({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], field: 3})
    assert err.value.param == field


def test_reply_with_tool_calls_and_cached_usage() -> None:
    reply = {"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "ok", "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}],
             "usage": {"prompt_tokens": 100, "completion_tokens": 9,
                       "prompt_tokens_details": {"cached_tokens": 40}}}
    msg = messages_reply(reply, "claude-x")
    assert msg["model"] == "claude-x" and msg["stop_reason"] == "tool_use"
    assert msg["content"] == [{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "c1", "name": "f",
                                                              "input": {"a": 1}}]
    # Anthropic's input_tokens exclude cache reads.
    assert msg["usage"] == {"input_tokens": 60, "output_tokens": 9, "cache_read_input_tokens": 40,
                            "cache_creation_input_tokens": 0}


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


async def _collect(data: bytes, split: int) -> list[tuple[str, dict[str, Any]]]:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), split):
            yield data[i:i + split]

    out = b"".join([b async for b in messages_stream(pieces(), "claude-x")])
    events = []
    for block in out.split(b"\n\n"):
        if block:
            name, data_line = block.split(b"\n")
            events.append((name[len(b"event: "):].decode(), orjson.loads(data_line[len(b"data: "):])))
    return events


@pytest.mark.parametrize("split", [1, 7, 10_000])
def test_stream_with_text_then_a_tool_call(split: int) -> None:
    stream = _sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f",
                                                                                          "arguments": "{\"a\""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    events = asyncio.run(_collect(stream, split))
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert "".join(e["delta"]["partial_json"] for n, e in events if e.get("index") == 1
                   and n == "content_block_delta") == "{\"a\": 1}"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 3 and events[-2][1]["usage"]["input_tokens"] == 5
