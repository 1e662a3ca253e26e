"""The built-in `mock/<name>` model: a deterministic reply with usage, no network.

Token counts are a fixed function of the request (about 4 characters a token), so the same call
always costs the same.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

DEFAULT_REPLY = "This is a mock response from llmbill-proxy."


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return orjson.dumps(body["messages"]).decode()
    value = body.get("prompt", body.get("input", ""))
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _call_id(prefix: str, body: dict[str, Any]) -> str:
    return prefix + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def usage_for(body: dict[str, Any], reply: str) -> dict[str, int]:
    prompt = _tokens(_prompt_text(body))
    completion = _tokens(reply)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat(body: dict[str, Any], model: str, reply: str | None) -> dict[str, Any]:
    text = reply or DEFAULT_REPLY
    return {
        "id": _call_id("chatcmpl-mock-", body),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                     "logprobs": None}],
        "usage": usage_for(body, text),
    }


def completion(body: dict[str, Any], model: str, reply: str | None) -> dict[str, Any]:
    text = reply or DEFAULT_REPLY
    return {
        "id": _call_id("cmpl-mock-", body),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        "usage": usage_for(body, text),
    }


def embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    inputs = body.get("input", "")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = []
    for i, item in enumerate(items):
        digest = hashlib.sha256(orjson.dumps(item)).digest()
        data.append({"object": "embedding", "index": i, "embedding": [b / 255.0 for b in digest[:16]]})
    prompt = _tokens(_prompt_text(body))
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


async def chat_stream(body: dict[str, Any], model: str, reply: str | None) -> AsyncIterator[bytes]:
    """SSE chunks word by word; the usage chunk only when stream_options.include_usage is set."""
    text = reply or DEFAULT_REPLY
    cid = _call_id("chatcmpl-mock-", body)
    created = int(time.time())
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        delta: dict[str, Any] = {"content": piece}
        if i == 0:
            delta["role"] = "assistant"
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    done = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield b"data: " + orjson.dumps(done) + b"\n\n"
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": usage_for(body, text)}
        yield b"data: " + orjson.dumps(usage) + b"\n\n"
    yield b"data: [DONE]\n\n"
