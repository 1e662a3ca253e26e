"""`vertex_ai/<model>`: Gemini on Vertex AI, and Claude on Vertex AI, as a ChatAdapter.

    Gemini: POST {base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent
            (stream: :streamGenerateContent?alt=sse) with the same body as `gemini/` (gemini_request.py),
            plus `gs://` file URIs, which Vertex reads and AI Studio does not;
    Claude (`vertex_ai/claude-*`): .../publishers/anthropic/models/{model}:rawPredict (stream: :streamRawPredict)
            with the Anthropic Messages body minus `model`, plus `anthropic_version: vertex-2023-10-16`;
            the Messages translation (body, reply, stream) is the `anthropic/` adapter's.

`base` is `api_base` when set, else `https://{location}-aiplatform.googleapis.com`, or
`https://aiplatform.googleapis.com` for location `global`. Params (LiteLLM's names): `vertex_project`
(else VERTEXAI_PROJECT, GOOGLE_CLOUD_PROJECT, or the key's `project_id`), `vertex_location` (else
VERTEXAI_LOCATION, else us-central1), `vertex_credentials` (see google_auth.py).

Authentication is the one step with I/O, so it is apart from the pure translation: `chat_request`
builds the request without credentials, and the forwarding code awaits `authorize(params, request)`,
which adds `Authorization: Bearer <token>` from a cached, self-refreshing TokenProvider.

>>> from .base import ProviderParams
>>> p = ProviderParams("vertex_ai", "gemini-2.5-pro", extra={"vertex_project": "acme"})
>>> url = VertexAdapter().chat_request(p, {"messages": [{"role": "user", "content": "Hi"}]}, stream=False).url
>>> url.removeprefix("https://us-central1-aiplatform.googleapis.com/v1/projects/acme/locations/us-central1")
'/publishers/google/models/gemini-2.5-pro:generateContent'
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import quote

from ..._native import core
from .base import ChatAdapter, ChatStream, ProviderFailure, ProviderParams, UpstreamRequest
from .gemini import GeminiAdapter, encode, method_path
from .gemini_reply import google_error, google_failure, new_call_id
from .gemini_request import generate_content_body
from .google_auth import GoogleAuthError, TokenProvider, load_service_account_info, provider_for

ANTHROPIC_VERSION = "vertex-2023-10-16"
CREDENTIALS = "Vertex AI service-account credentials"


@dataclass(frozen=True)
class VertexTarget:
    project: str
    location: str
    base: str  # scheme and host, no trailing slash


def vertex_target(params: ProviderParams) -> VertexTarget:
    """Where a deployment's calls go; raises GoogleAuthError when no project can be found."""
    location = params.extra_str("vertex_location") or os.environ.get("VERTEXAI_LOCATION") or "us-central1"
    project = params.extra_str("vertex_project") or os.environ.get("VERTEXAI_PROJECT") \
        or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        project = _key_project(params.extra.get("vertex_credentials"))
        if not project:
            raise GoogleAuthError(f"vertex_ai/{params.model}: set litellm_params.vertex_project")
    host = "https://aiplatform.googleapis.com" if location == "global" \
        else f"https://{location}-aiplatform.googleapis.com"
    return VertexTarget(project, location, (params.api_base or host).rstrip("/"))


def _key_project(source: Any) -> str:
    """The key's project_id; a key named by a path (or the environment) is read once per process."""
    if isinstance(source, Mapping):
        return str(source.get("project_id") or "")
    return _key_project_cached(source if isinstance(source, str) else None,
                               os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", ""))


@functools.lru_cache(maxsize=64)
def _key_project_cached(source: str | None, env_path: str) -> str:
    return str(load_service_account_info(source).get("project_id") or "")


def is_claude(model: str) -> bool:
    return model.startswith("claude-")


def _default_claude() -> ChatAdapter:
    try:
        module = importlib.import_module(".anthropic", __package__)
    except ImportError:
        raise GoogleAuthError("vertex_ai/claude-*: the anthropic adapter (providers/anthropic.py) is missing") from None
    return cast(ChatAdapter, module.AnthropicAdapter())


class VertexAdapter:
    """ChatAdapter for `vertex_ai/`, plus `authorize`. `claude` is the Anthropic Messages adapter
    (default: providers/anthropic.py's AnthropicAdapter); `tokens` gives a deployment's TokenProvider."""

    def __init__(self, claude: ChatAdapter | None = None,
                 tokens: Callable[[ProviderParams], TokenProvider] | None = None,
                 clock: Callable[[], float] = time.time, new_id: Callable[[], str] = new_call_id) -> None:
        self._claude_adapter = claude
        self._tokens = tokens or (lambda p: provider_for(p.extra.get("vertex_credentials")))
        self._gemini = GeminiAdapter(clock, new_id)

    def _claude(self) -> ChatAdapter:
        if self._claude_adapter is None:
            self._claude_adapter = _default_claude()
        return self._claude_adapter

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        t = vertex_target(params)
        where = f"{t.base}/v1/projects/{quote(t.project, safe='')}/locations/{quote(t.location, safe='')}/publishers"
        headers = {"content-type": "application/json"}
        if not is_claude(params.model):
            return UpstreamRequest(f"{where}/google/models/{method_path(params.model, stream)}", headers,
                                   encode(generate_content_body(body, allow_gcs=True)))
        # The Anthropic adapter builds the Messages body; the key it would send is never used here.
        messages = self._claude().chat_request(replace(params, provider="anthropic", api_base="", api_key="vertex"),
                                               body, stream)
        payload = json.loads(messages.body)
        payload.pop("model", None)
        payload["anthropic_version"] = ANTHROPIC_VERSION
        beta = {k: v for k, v in messages.headers.items() if k.lower() == "anthropic-beta"}
        verb = "streamRawPredict" if stream else "rawPredict"
        return UpstreamRequest(f"{where}/anthropic/models/{quote(params.model, safe='-._~@')}:{verb}",
                               {**headers, **beta}, encode(payload))

    async def authorize(self, params: ProviderParams, request: UpstreamRequest) -> UpstreamRequest:
        """The request with a bearer token (refreshing it in a worker thread when it is near expiry)."""
        token = await self._tokens(params).token()
        return UpstreamRequest(request.url, {**request.headers, "authorization": f"Bearer {token}"}, request.body)

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        if is_claude(params.model):
            return self._claude().chat_reply(params, body, model)
        return self._gemini.chat_reply(params, body, model)

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> ChatStream:
        if is_claude(params.model):
            return self._claude().chat_stream(params, model, include_usage)
        return self._gemini.chat_stream(params, model, include_usage)

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        # Vertex's front end (auth, quota, routing) answers in Google's shape even for Claude; the
        # model itself answers Claude's errors in Anthropic's shape.
        err = google_error(body)
        if not is_claude(params.model) or status in (401, 403) or err.status or err.code is not None:
            return google_failure(status, body, CREDENTIALS)
        return self._claude().failure(params, status, body)
