"""Which code serves a deployment's `litellm_params.model: <provider>/<name>`, resolved once at
start-up (a missing key, region, api_version or optional dependency stops start-up with one line).

- `mock`: the built-in deterministic model.
- `openai`, `text-completion-openai` and the OpenAI-compatible hosts (openai_compatible.HOSTS): the
  proxy's byte pass-through — no translation, usage parsed by C++ from the reply's bytes; the host's
  default base and key variable are filled in here.
- `anthropic`, `azure`, `bedrock`, `gemini`, `vertex_ai`: an adapter (providers/<name>.py).

>>> sorted(ADAPTED)
['anthropic', 'azure', 'bedrock', 'gemini', 'vertex_ai']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import ChatAdapter, ProviderParams
from .openai_compatible import HOSTS, ProviderConfigError, endpoint

# litellm_params that reach the adapter (os.environ/ references resolved by the config loader).
EXTRA_PARAMS = ("api_version", "azure_ad_token", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                "aws_region_name", "aws_bedrock_runtime_endpoint", "vertex_project", "vertex_location",
                "vertex_credentials", "max_output_tokens")
KEY_VARIABLES = {"anthropic": ("ANTHROPIC_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
DEFAULT_BASES = {"anthropic": "https://api.anthropic.com", "gemini": "https://generativelanguage.googleapis.com"}


def _anthropic() -> ChatAdapter:
    from .anthropic import AnthropicAdapter

    return AnthropicAdapter()


def _azure() -> ChatAdapter:
    from .azure import AzureAdapter

    return AzureAdapter()


def _bedrock() -> ChatAdapter:
    from .bedrock import BedrockAdapter

    return BedrockAdapter()


def _gemini() -> ChatAdapter:
    from .gemini import GeminiAdapter

    return GeminiAdapter()


def _vertex() -> ChatAdapter:
    from .vertex import VertexAdapter

    return VertexAdapter()


ADAPTED: Mapping[str, Callable[[], ChatAdapter]] = {
    "anthropic": _anthropic, "azure": _azure, "bedrock": _bedrock, "gemini": _gemini, "vertex_ai": _vertex}
PASSTHROUGH = ("mock", "text-completion-openai", *HOSTS)
PROVIDERS = (*PASSTHROUGH, *ADAPTED)
_adapters: dict[str, ChatAdapter] = {}  # one adapter object per provider (they hold no per-call state)


@dataclass(frozen=True)
class Resolved:
    adapter: ChatAdapter | None  # None: the OpenAI byte pass-through (or mock)
    params: ProviderParams
    api_base: str
    api_key: str


def resolve(provider: str, model: str, litellm_params: Mapping[str, Any],
            env: Mapping[str, str] | None = None) -> Resolved:
    """Raises ProviderConfigError (one line naming the key) when the deployment cannot be served."""
    env = os.environ if env is None else env
    extra = {k: litellm_params[k] for k in EXTRA_PARAMS if litellm_params.get(k) is not None}
    base = str(litellm_params.get("api_base") or "")
    key = str(litellm_params.get("api_key") or "")
    params = ProviderParams(provider=provider, model=model, api_base=base, api_key=key, extra=extra)
    if provider == "mock":
        return Resolved(None, params, "", "")
    if provider in HOSTS or provider == "text-completion-openai":
        host_params = params if provider in HOSTS else ProviderParams("openai", model, base, key, extra)
        if provider == "openai" or provider == "text-completion-openai":
            # OpenAI itself may run without a key here (a local stand-in); the hosts need theirs.
            base = base or env.get("OPENAI_API_BASE") or env.get("OPENAI_BASE_URL") or HOSTS["openai"].base
            return Resolved(None, params, base.rstrip("/"), key or env.get("OPENAI_API_KEY", ""))
        base, key = endpoint(host_params, env)
        return Resolved(None, params, base, key)
    make = ADAPTED.get(provider)
    if make is None:
        raise ProviderConfigError(f"unknown provider {provider!r} (supported: {', '.join(PROVIDERS)})", "model")
    key = key or next((env[n] for n in KEY_VARIABLES.get(provider, ()) if env.get(n)), "")
    if provider in KEY_VARIABLES and not key:
        raise ProviderConfigError(f"{provider}/{model}: no API key: set api_key or {KEY_VARIABLES[provider][0]}",
                                  "api_key")
    params = ProviderParams(provider=provider, model=model, api_base=base or DEFAULT_BASES.get(provider, ""),
                            api_key=key, extra=extra)
    adapter = _adapters.get(provider)
    if adapter is None:
        try:
            adapter = _adapters[provider] = make()
        except ImportError as exc:
            raise ProviderConfigError(f"{provider}/{model}: {exc}", "model") from None
    _check(provider, params, env)
    return Resolved(adapter, params, params.api_base, key)


def _check(provider: str, params: ProviderParams, env: Mapping[str, str]) -> None:
    """What would fail on the first call fails at start instead: a missing region, version, dependency."""
    if provider == "azure":
        from .azure import api_version, auth_headers

        if not params.api_base and not env.get("AZURE_API_BASE"):
            raise ProviderConfigError(f"azure/{params.model}: api_base is required (or set AZURE_API_BASE)",
                                      "api_base")
        api_version(params, env)
        auth_headers(params, env)
    elif provider == "bedrock":
        from .bedrock import _botocore, credentials, region

        _botocore()
        region(params, env)
        credentials(params, env)
    elif provider == "vertex_ai":
        from .google_auth import GoogleAuthError, provider_for
        from .vertex import vertex_target

        try:
            vertex_target(params)
            provider_for(params.extra.get("vertex_credentials"))  # the key is read (and google-auth found) now
        except GoogleAuthError as exc:
            raise ProviderConfigError(str(exc), "vertex_credentials") from None
