"""The `anthropic/` provider: OpenAI chat/completions ↔ Anthropic's Messages API (pure translation).

    POST {api_base or https://api.anthropic.com}/v1/messages
    x-api-key: <key>    anthropic-version: 2023-06-01    content-type: application/json

The request rules are in anthropic_request.py, the reply's in anthropic_reply.py, the stream's in
anthropic_stream.py, the error mapping in anthropic_errors.py. Usage is always read by the C++ core,
so `core.Usage` carries Anthropic's cache reads (cached_tokens), cache writes
(cache_creation_tokens) and the 1-hour writes among them (cache_creation_1h_tokens).

The native `/v1/messages` route (Anthropic's shapes in and out) needs no translation, only billing
and errors: messages_usage, messages_stream_usage, MessagesUsageTap and error_body serve it.

>>> adapter = AnthropicAdapter(clock=lambda: 1700000000.0)
>>> req = adapter.chat_request(ProviderParams("anthropic", "claude-sonnet-4-5", api_key="k"),
...                            {"messages": [{"role": "user", "content": "Hi"}]}, stream=False)
>>> req.url, req.headers["anthropic-version"]
('https://api.anthropic.com/v1/messages', '2023-06-01')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..._native import core
from ..reply_usage import usage_of
from .anthropic_errors import error_body as error_body
from .anthropic_errors import error_type as error_type
from .anthropic_errors import provider_failure
from .anthropic_reply import completion, parse_message
from .anthropic_request import DEFAULT_MAX_TOKENS as DEFAULT_MAX_TOKENS
from .anthropic_request import messages_body
from .anthropic_stream import AnthropicChatStream
from .base import ChatAdapter, ChatStream, ProviderFailure, ProviderParams, UpstreamRequest

DEFAULT_API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicAdapter:
    """Meets base.ChatAdapter. `clock` gives the `created` time of replies (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        # The deployment's output limit (max_output_tokens) is the default max_tokens when the client gave none.
        payload = messages_body(body, params.model, stream, params.extra.get("max_output_tokens"))
        return UpstreamRequest(url=messages_url(params), headers=headers(params), body=orjson.dumps(payload))

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        """ValueError when `body` is not a Messages reply; core.UsageError when its usage is unreadable."""
        message = parse_message(body)
        usage = usage_of(message, body)  # the decoded usage member alone, not the whole body again
        return completion(message, usage, model, int(self._clock())), usage

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> AnthropicChatStream:
        return AnthropicChatStream(model, include_usage, int(self._clock()))

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        return provider_failure(status, body)


def messages_url(params: ProviderParams, path: str = "/v1/messages") -> str:
    """The endpoint; an api_base written with `/v1` or as the whole `/v1/messages` URL (both seen in
    LiteLLM configs) is not doubled."""
    base = (params.api_base or DEFAULT_API_BASE).rstrip("/")
    for tail in ("/v1/messages", "/v1"):
        if base.endswith(tail):
            base = base[: -len(tail)]
            break
    return base + path


def headers(params: ProviderParams) -> dict[str, str]:
    return {"x-api-key": params.api_key, "anthropic-version": API_VERSION, "content-type": "application/json"}


if TYPE_CHECKING:  # mypy --strict proves the adapter and its stream meet the contract
    _adapter: ChatAdapter = AnthropicAdapter()
    _stream: ChatStream = AnthropicChatStream("m", False, 0)


# ---- the native /v1/messages route ------------------------------------------------------------------

def messages_usage(body: bytes | Mapping[str, Any]) -> core.Usage:
    """Usage of a Messages reply passed through unchanged (raises core.UsageError)."""
    return core.Usage.from_response(body if isinstance(body, bytes) else dict(body))


def messages_stream_usage(stream: bytes) -> core.Usage:
    """Usage of a whole Messages SSE stream: message_start plus the last message_delta."""
    return core.Usage.from_sse(stream)


class MessagesUsageTap:
    """Watches a Messages stream passed through unchanged, chunk by chunk, for its usage; a bad
    event never interrupts the relay (its error is kept, the usage stays the last good one)."""

    def __init__(self) -> None:
        self._scanner = core.SseUsageScanner()
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        try:
            self._scanner.feed(data)
        except core.UsageError as exc:
            self.error = self.error or str(exc)

    @property
    def usage(self) -> core.Usage | None:
        return self._scanner.usage
