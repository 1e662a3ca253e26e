"""OpenAI and the hosts that speak its chat API: where each one lives, which key it takes, and an
adapter that passes OpenAI bodies through (model renamed, streamed usage always asked for).

The defaults follow what a LiteLLM config expects: `groq/<model>` with `GROQ_API_KEY` set reaches
Groq with no `api_base`. Each default base was read in the host's own documentation (see the
report of issue 14 for the two that could only be read in third-party pages).

>>> endpoint(ProviderParams(provider="groq", model="llama-3.3-70b"), env={"GROQ_API_KEY": "gsk"})
('https://api.groq.com/openai/v1', 'gsk')
>>> endpoint(ProviderParams(provider="ollama_chat", model="llama3", api_base="http://gpu:11434"), env={})
('http://gpu:11434/v1', '')
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..._native import core
from ..reply_usage import usage_of
from ..sse import event_end
from .base import ChatAdapter, ChatStream, ProviderFailure, ProviderParams, UpstreamRequest


class ProviderConfigError(RuntimeError):
    """A deployment that cannot reach its provider as configured (a missing key, region or optional
    dependency): one line naming the key. Not the client's fault, so never a 400 (hence not a
    ValueError like ProviderInputError): check at start-up."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Host:
    base: str  # the default base URL; "" → the deployment must set api_base
    key_env: tuple[str, ...]  # variables holding the API key, the first one set wins
    base_env: tuple[str, ...] = ()  # variables that override the default base
    key_required: bool = True  # local servers (vLLM, Ollama, LM Studio) run without a key
    suffix: str = ""  # appended to a base that lacks it (Ollama's OpenAI API lives under /v1)


HOSTS: Mapping[str, Host] = {
    "openai": Host("https://api.openai.com/v1", ("OPENAI_API_KEY",), ("OPENAI_API_BASE", "OPENAI_BASE_URL")),
    "groq": Host("https://api.groq.com/openai/v1", ("GROQ_API_KEY",), ("GROQ_API_BASE",)),
    "together_ai": Host("https://api.together.ai/v1",
                        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY"), ("TOGETHER_AI_API_BASE",)),
    "mistral": Host("https://api.mistral.ai/v1", ("MISTRAL_API_KEY",), ("MISTRAL_API_BASE",)),
    "deepseek": Host("https://api.deepseek.com", ("DEEPSEEK_API_KEY",), ("DEEPSEEK_API_BASE",)),
    "fireworks_ai": Host("https://api.fireworks.ai/inference/v1",
                         ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY"), ("FIREWORKS_API_BASE",)),
    "openrouter": Host("https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY", "OR_API_KEY"), ("OPENROUTER_API_BASE",)),
    "xai": Host("https://api.x.ai/v1", ("XAI_API_KEY",), ("XAI_API_BASE",)),
    "perplexity": Host("https://api.perplexity.ai", ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
                       ("PERPLEXITY_API_BASE",)),
    "cerebras": Host("https://api.cerebras.ai/v1", ("CEREBRAS_API_KEY",), ("CEREBRAS_API_BASE",)),
    "hosted_vllm": Host("", ("HOSTED_VLLM_API_KEY",), ("HOSTED_VLLM_API_BASE",), key_required=False),
    # LiteLLM's ollama_chat talks to Ollama's native /api/chat, so its users configure the bare server
    # address; the OpenAI-compatible API is the same server under /v1.
    "ollama_chat": Host("http://localhost:11434", ("OLLAMA_API_KEY",), ("OLLAMA_API_BASE",), key_required=False,
                        suffix="/v1"),
    "lm_studio": Host("http://localhost:1234/v1", ("LM_STUDIO_API_KEY",), ("LM_STUDIO_API_BASE",), key_required=False),
}


def endpoint(params: ProviderParams, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(base URL without a trailing slash, API key or "") for a deployment of an OpenAI-compatible host."""
    env = os.environ if env is None else env
    host = HOSTS.get(params.provider)
    if host is None:
        raise ProviderConfigError(f"provider {params.provider!r} is not an OpenAI-compatible host "
                                  f"(known: {', '.join(sorted(HOSTS))})", "model")
    base = params.api_base or next((env[n] for n in host.base_env if env.get(n)), "") or host.base
    if not base:
        raise ProviderConfigError(f"{params.provider}/{params.model}: api_base is required "
                                  f"(or set {host.base_env[0]})", "api_base")
    base = base.rstrip("/")
    if host.suffix and not base.endswith(host.suffix):
        base += host.suffix
    key = params.api_key or next((env[n] for n in host.key_env if env.get(n)), "")
    if not key and host.key_required:
        raise ProviderConfigError(f"{params.provider}/{params.model}: no API key: set api_key or {host.key_env[0]}",
                                  "api_key")
    return base, key


def passthrough_body(body: Mapping[str, Any], model: str | None, stream: bool) -> bytes:
    """An OpenAI body for the upstream: its model name, and usage always asked for when streaming (the
    proxy bills from it and strips it for clients that did not ask)."""
    out = dict(body)
    if model is not None:
        out["model"] = model
    if stream:
        out["stream"] = True
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream", None)
        out.pop("stream_options", None)
    return orjson.dumps(out)


def reply_object(body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
    """An OpenAI-shaped reply renamed to `model`, with its usage (estimated, and marked so, when the
    server sent none: the caller, who has the prompt, may refine the prompt side)."""
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise ValueError("upstream reply is not a JSON object")
    try:
        usage = usage_of(data, body)
    except core.UsageError:
        text = "".join(str((c.get("message") or {}).get("content") or "") for c in data.get("choices") or []
                       if isinstance(c, dict) and isinstance(c.get("message"), dict))
        usage = core.Usage(completion_tokens=math.ceil(len(text) / 4), estimated=True)
    data["model"] = model
    return data, usage


class OpenAIStream:
    """An OpenAI SSE stream relayed event by event: renamed to the client's model, the usage-only chunk
    dropped unless asked for, comments and the upstream's [DONE] dropped ([DONE] comes from finish())."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._buffer = b""
        self._usage: core.Usage | None = None

    @property
    def usage(self) -> core.Usage | None:
        return self._usage

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while (cut := event_end(self._buffer)) >= 0:
            event, self._buffer = self._buffer[:cut], self._buffer[cut:]
            relayed = self._event(event)
            if relayed is not None:
                out.append(relayed)
        return out

    def finish(self) -> list[bytes]:
        tail = self._event(self._buffer) if self._buffer.strip() else None
        self._buffer = b""
        return ([tail] if tail is not None else []) + [b"data: [DONE]\n\n"]

    def _event(self, event: bytes) -> bytes | None:
        payload = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
        if not payload or payload == b"[DONE]":
            return None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b"data: " + payload + b"\n\n"  # not ours to judge: relayed as sent
        if not isinstance(chunk, dict):
            return b"data: " + payload + b"\n\n"
        if isinstance(chunk.get("usage"), dict):
            try:
                self._usage = core.Usage.from_response(chunk)
            except core.UsageError:
                pass
            if not chunk.get("choices") and not self._include_usage:
                return None
        if "model" in chunk:
            chunk["model"] = self._model
        return b"data: " + orjson.dumps(chunk) + b"\n\n"




def error_message(body: bytes) -> str:
    """The message of an OpenAI- or Azure-shaped error body, else the body's start."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500] or "no error body"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str):
        return err
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return body.decode("utf-8", "replace")[:500]


def openai_failure(who: str, status: int, body: bytes) -> ProviderFailure:
    """An OpenAI-style upstream error as the client sees it. A rejected key is the deployment's
    problem, not the caller's: 502 naming the credentials, never a 401 the client would blame itself for."""
    message = error_message(body)
    if status in (401, 403):
        return ProviderFailure(502, "upstream_error", f"{who}: the deployment's credentials were rejected: {message}")
    if status == 429:
        return ProviderFailure(429, "rate_limit_error", message)
    if status in (400, 413, 422):
        return ProviderFailure(400, "invalid_request_error", message)
    if status == 503:
        return ProviderFailure(503, "upstream_error", f"{who}: {message}")
    return ProviderFailure(502, "upstream_error", f"{who}: upstream answered {status}: {message}")


class OpenAICompatibleAdapter:
    """ChatAdapter for openai/ and every host in HOSTS: OpenAI's body and reply, renamed."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        base, key = endpoint(params, self._env)
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return UpstreamRequest(base + "/chat/completions", headers, passthrough_body(body, params.model, stream))

    def embedding_request(self, params: ProviderParams, body: Mapping[str, Any]) -> UpstreamRequest:
        base, key = endpoint(params, self._env)
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return UpstreamRequest(base + "/embeddings", headers, passthrough_body(body, params.model, False))

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        return reply_object(body, model)

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> OpenAIStream:
        return OpenAIStream(model, include_usage)

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        return openai_failure(f"{params.provider}/{params.model}", status, body)


if TYPE_CHECKING:  # mypy proves the adapter meets the contract
    _conforms: ChatAdapter = OpenAICompatibleAdapter()
    _streams: ChatStream = OpenAIStream("m", True)
