"""The contract every provider adapter meets: pure translation, no I/O.

An adapter turns an OpenAI-shaped request into the provider's HTTP request, and the provider's reply
(or stream) back into OpenAI's shapes plus the call's usage in the one normal form (`core.Usage`:
prompt_tokens includes cached and cache-write tokens; completion_tokens includes reasoning tokens).
The proxy's forwarding code owns the connection; the settle module owns cost and billing. An adapter
never prices, never bills and never touches the network, so each one is tested with bytes alone.

>>> p = ProviderParams(provider="anthropic", model="claude-sonnet-4-5", api_base="https://api.anthropic.com")
>>> p.extra_str("api_version") is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..._native import core


@dataclass(frozen=True)
class ProviderParams:
    """A deployment's `litellm_params` as the adapter needs them (os.environ/ references resolved)."""

    provider: str  # the prefix: openai, anthropic, azure, bedrock, gemini, vertex_ai, groq, ...
    model: str  # the provider's model name or id (after the prefix)
    api_base: str = ""  # "" → the provider's default base
    api_key: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # api_version, aws_*, vertex_*, azure_ad_token ...

    def extra_str(self, name: str) -> str | None:
        v = self.extra.get(name)
        return v if isinstance(v, str) and v else None


@dataclass(frozen=True)
class UpstreamRequest:
    """One HTTP POST to the provider."""

    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ProviderFailure:
    """A provider's error reply as the client sees it (OpenAI's shape is built from it by the route)."""

    status: int  # the status the client gets: 529 → 503, a provider auth failure → 502, ...
    type: str  # OpenAI-style error type, e.g. rate_limit_error, invalid_request_error, upstream_error
    message: str


class ChatStream(Protocol):
    """Translates one streamed reply incrementally: provider bytes in, OpenAI SSE events out."""

    def feed(self, data: bytes) -> list[bytes]:
        """Raw bytes as they arrive (any split) → complete OpenAI events, each `data: {...}\\n\\n`."""
        ...

    def finish(self) -> list[bytes]:
        """The upstream ended: trailing events (the usage chunk when asked for, then `data: [DONE]`)."""
        ...

    @property
    def usage(self) -> core.Usage | None:
        """The call's usage as soon as the stream has reported it (possibly partial mid-stream)."""
        ...


class ChatAdapter(Protocol):
    """OpenAI chat/completions ↔ one provider's chat API."""

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        """Raises ProviderInputError for a request the provider cannot express."""
        ...

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        """The provider's successful reply → (OpenAI chat.completion object naming `model`, usage)."""
        ...

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> ChatStream:
        ...

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        ...


class ProviderInputError(ValueError):
    """The client's request cannot be expressed for this provider (becomes a 400 naming `param`)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
