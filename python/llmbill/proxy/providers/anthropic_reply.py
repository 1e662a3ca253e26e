"""Anthropic Messages reply → OpenAI chat.completion (pure; see anthropic.py).

The usage is read by the C++ core (core.Usage.from_response), the one reader of provider usage, so
a reply and the same call streamed give the same Usage to the token. The OpenAI-shaped `usage`
follows LiteLLM's convention for Anthropic, which clients rely on: prompt_tokens = input + cache
reads + cache writes, prompt_tokens_details.cached_tokens = cache reads, plus LiteLLM's
cache_read_input_tokens / cache_creation_input_tokens beside them.

>>> finish_reason("tool_use", tool_calls=True)
'tool_calls'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from ..._native import core
from .anthropic_request import JSON_TOOL

Json = dict[str, Any]


def finish_reason(stop_reason: Any, tool_calls: bool) -> str:
    """OpenAI's finish_reason (the core's table, which the streamed reply's translation uses too).
    `tool_use` that only carried the response_format JSON is a plain stop."""
    return core.anthropic_finish_reason(stop_reason, tool_calls)


def openai_usage(usage: core.Usage) -> Json:
    # The streamed reply's usage chunk is written by the core (AnthropicChatStream::finish) with these
    # fields; tests/python/test_anthropic_stream.py holds the two to the same bytes.
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
    }


def parse_message(body: bytes) -> Json:
    """The reply as a dict; ValueError when it is not a Messages reply."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("Anthropic reply is not JSON") from None
    if not isinstance(data, dict) or data.get("type") != "message" or not isinstance(data.get("content"), list):
        raise ValueError("Anthropic reply is not a message object")
    return data


def completion(message: Mapping[str, Any], usage: core.Usage, model: str, created: int) -> Json:
    """The chat.completion for a parsed Messages reply."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            text.append(str(block.get("text") or ""))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            text.append(json.dumps(block.get("input"), ensure_ascii=False))
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": json.dumps(block.get("input"), ensure_ascii=False)}})
    reply: Json = {"role": "assistant", "content": "".join(text) if text or not calls else None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)  # LiteLLM's field for Claude's thinking
    return {
        "id": message.get("id"), "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(message.get("stop_reason"), bool(calls))}],
        "usage": openai_usage(usage),
        "system_fingerprint": None,
    }
