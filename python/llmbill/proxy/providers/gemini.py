"""`gemini/<model>`: Google AI Studio's Gemini API (generateContent), as a ChatAdapter.

    POST {api_base or https://generativelanguage.googleapis.com}/v1beta/models/{model}:generateContent
    POST ...:streamGenerateContent?alt=sse                      header x-goog-api-key: <key>

The key is `litellm_params.api_key`, else the GEMINI_API_KEY variable (LiteLLM's). The body is built by
gemini_request.py, the reply and the stream read by gemini_reply.py and gemini_stream.py.

>>> from .base import ProviderParams
>>> req = GeminiAdapter().chat_request(ProviderParams("gemini", "gemini-2.5-flash", api_key="k"),
...                                    {"messages": [{"role": "user", "content": "Hi"}]}, stream=True)
>>> req.url
'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from ..._native import core
from .base import ChatStream, ProviderFailure, ProviderParams, UpstreamRequest
from .gemini_reply import chat_completion, google_failure, new_call_id
from .gemini_request import generate_content_body
from .gemini_stream import GeminiStream

DEFAULT_BASE = "https://generativelanguage.googleapis.com"


def method_path(model: str, stream: bool) -> str:
    """`{model}:generateContent`, or the SSE stream's `{model}:streamGenerateContent?alt=sse`."""
    name = quote(model.removeprefix("models/"), safe="-._~@")
    return f"{name}:streamGenerateContent?alt=sse" if stream else f"{name}:generateContent"


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class GeminiAdapter:
    """ChatAdapter for `gemini/`. `clock` and `new_id` make replies reproducible in tests."""

    def __init__(self, clock: Callable[[], float] = time.time, new_id: Callable[[], str] = new_call_id) -> None:
        self._clock, self._new_id = clock, new_id

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        base = (params.api_base or DEFAULT_BASE).rstrip("/")
        headers = {"content-type": "application/json"}
        key = params.api_key or os.environ.get("GEMINI_API_KEY", "")
        if key:  # without one Google answers 400/403, which failure() reports as the deployment's fault
            headers["x-goog-api-key"] = key
        return UpstreamRequest(f"{base}/v1beta/models/{method_path(params.model, stream)}", headers,
                               encode(generate_content_body(body)))

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("the Gemini reply is not a JSON object")
        return chat_completion(data, model, int(self._clock()), self._new_id)

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> ChatStream:
        return GeminiStream(model, include_usage, int(self._clock()), self._new_id)

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        return google_failure(status, body, "Gemini API key")
