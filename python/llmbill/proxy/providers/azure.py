"""Azure OpenAI: OpenAI's bodies and replies at a deployment's own URL, keyed by `api-key`.

`azure/<deployment>` calls `{api_base}/openai/deployments/<deployment>/chat/completions?api-version=…`
(and `/embeddings`). Azure's reply names the model the deployment runs (`gpt-4o-2024-08-06`), not the
deployment, so pricing goes by `model_info.base_model` when the config sets one, else by that name.

>>> p = ProviderParams(provider="azure", model="prod-4o", api_base="https://res.openai.azure.com/",
...                    api_key="k", extra={"api_version": "2024-10-21"})
>>> AzureAdapter(env={}).chat_request(p, {"messages": []}, stream=False).url
'https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21'
>>> price_name(p, "gpt-4o-2024-08-06")
'azure/gpt-4o-2024-08-06'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ..._native import core
from .base import ChatAdapter, ProviderFailure, ProviderParams, UpstreamRequest
from .openai_compatible import OpenAIStream, ProviderConfigError, error_message, passthrough_body, reply_object


def api_version(params: ProviderParams, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    version = params.extra_str("api_version") or env.get("AZURE_API_VERSION", "")
    if not version:
        raise ProviderConfigError(f"azure/{params.model}: api_version is required (or set AZURE_API_VERSION)",
                                  "api_version")
    return version


def deployment_url(params: ProviderParams, route: str, env: Mapping[str, str] | None = None) -> str:
    """The URL of `route` ("chat/completions" or "embeddings") on the deployment `params.model`."""
    env = os.environ if env is None else env
    base = (params.api_base or env.get("AZURE_API_BASE", "")).rstrip("/")
    if not base:
        raise ProviderConfigError(f"azure/{params.model}: api_base is required (or set AZURE_API_BASE)", "api_base")
    version = quote(api_version(params, env), safe="")
    return f"{base}/openai/deployments/{quote(params.model, safe='')}/{route}?api-version={version}"


def auth_headers(params: ProviderParams, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`api-key`, else an Entra ID token as `Authorization: Bearer` (LiteLLM's azure_ad_token)."""
    env = os.environ if env is None else env
    key = params.api_key or env.get("AZURE_API_KEY", "")
    if key:
        return {"api-key": key}
    token = params.extra_str("azure_ad_token") or env.get("AZURE_AD_TOKEN", "")
    if token:
        return {"authorization": f"Bearer {token}"}
    raise ProviderConfigError(f"azure/{params.model}: no credentials: set api_key (or AZURE_API_KEY) or azure_ad_token",
                              "api_key")


def price_name(params: ProviderParams, reply_model: str) -> str:
    """The price-table name of an Azure call: `base_model` when configured, else the model the reply
    names, under `azure/` (the deployment's own name means nothing to the table)."""
    base = params.extra_str("base_model")
    if base:
        return base
    return f"azure/{reply_model or params.model}"


def reply_model(body: bytes) -> str:
    """The `model` an Azure reply names (before the adapter renames it for the client), or ""."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else ""


class AzureAdapter:
    """ChatAdapter for azure/<deployment>, plus the embeddings route of the same deployment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env

    def _request(self, params: ProviderParams, route: str, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        headers = {"content-type": "application/json", **auth_headers(params, self._env)}
        # The deployment in the URL chooses the model; Azure ignores a `model` in the body, so the
        # client's is left as sent.
        return UpstreamRequest(deployment_url(params, route, self._env), headers, passthrough_body(body, None, stream))

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        return self._request(params, "chat/completions", body, stream)

    def embedding_request(self, params: ProviderParams, body: Mapping[str, Any]) -> UpstreamRequest:
        return self._request(params, "embeddings", body, False)

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        return reply_object(body, model)

    def embedding_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        return reply_object(body, model)

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> OpenAIStream:
        return OpenAIStream(model, include_usage)

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        message = error_message(body)
        who = f"azure/{params.model}"
        if status in (401, 403):
            return ProviderFailure(502, "upstream_error",
                                   f"{who}: Azure rejected the deployment's credentials (api_key / azure_ad_token): "
                                   f"{message}")
        if status == 429:
            return ProviderFailure(429, "rate_limit_error", message)
        if status == 400:
            # Includes Azure's content_filter refusals: the prompt is the client's, so a 400 it can act on.
            return ProviderFailure(400, "invalid_request_error", message)
        if status == 404:
            return ProviderFailure(502, "upstream_error",
                                   f"{who}: Azure has no such deployment or api_version at this api_base: {message}")
        if status == 503:
            return ProviderFailure(503, "upstream_error", f"{who}: {message}")
        return ProviderFailure(502, "upstream_error", f"{who}: upstream answered {status}: {message}")


if TYPE_CHECKING:  # mypy proves the adapter meets the contract
    _conforms: ChatAdapter = AzureAdapter()
