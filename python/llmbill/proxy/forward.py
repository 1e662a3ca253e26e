"""Forwarding a chat call through a provider adapter (providers/*.py): translate the OpenAI request,
send it over the pooled client, translate the reply or stream back, and hand the usage to settle.

The OpenAI-shaped deployments keep their byte pass-through in routes/llm.py (no translation, usage
parsed by C++ from the reply's bytes); everything else comes here. An adapter is pure, so this module
owns the I/O and the failure rules: a provider error maps to the client's status (adapter.failure)
and the call is never billed; a stream is billed for what the provider reported, or estimated.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from .._native import core
from ..pricing import default_prices
from .call import Call
from . import request_fields
from .errors import ProxyError
from .failures import UpstreamFailure, answered
from .http import JSON_HEADERS, SSE_HEADERS, Response, StreamingResponse
from .providers.base import ChatAdapter, ChatStream, ProviderInputError, UpstreamRequest
from .relay import RelayedStream
from .settle import settle

_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"([^"\\]+)"')


def _adapter(call: Call) -> ChatAdapter:
    adapter = call.d.adapter
    assert adapter is not None and call.d.params is not None
    return adapter


# Request fields that steer LiteLLM-style proxies, not the model: never sent to a provider
# (request_fields.py honours, refuses or documents each).
PROXY_ONLY = request_fields.PROXY_ONLY


def provider_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body without the proxy-only fields (a copy only when there is something to drop)."""
    if PROXY_ONLY.isdisjoint(body):
        return body
    return {k: v for k, v in body.items() if k not in PROXY_ONLY}


def _request(call: Call, body: dict[str, Any], stream: bool) -> UpstreamRequest:
    assert call.d.params is not None
    body = provider_body(body)
    for _ in range(len(body)):  # drop_params: what the provider cannot take is left out
        try:
            return _adapter(call).chat_request(call.d.params, body, stream)
        except ProviderInputError as exc:
            dropping = request_fields.drop_params(call.state.config.drop_params)  # the call's, else the config's
            if not dropping or exc.param not in body or exc.param in ("model", "messages"):
                raise ProxyError(400, f"{call.d.model_name}: {exc}", "invalid_request_error", exc.param) from None
            body = {k: v for k, v in body.items() if k != exc.param}
    try:
        return _adapter(call).chat_request(call.d.params, body, stream)
    except ProviderInputError as exc:
        raise ProxyError(400, f"{call.d.model_name}: {exc}", "invalid_request_error", exc.param) from None


def _failure(call: Call, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> UpstreamFailure:
    """The provider's error as the client gets it, marked by what the provider answered (failures.py)."""
    assert call.d.params is not None
    adapter: Any = _adapter(call)
    if headers and "headers" in inspect.signature(adapter.failure).parameters:  # Bedrock names errors in a header
        f = adapter.failure(call.d.params, status, body, headers=headers)
    else:
        f = adapter.failure(call.d.params, status, body)
    return answered(ProxyError(f.status, f"{call.d.model_name}: {f.message}", f.type), status, body)


async def _authorized(call: Call, request: UpstreamRequest) -> UpstreamRequest:
    """Adapters whose credentials are fetched (Vertex's OAuth token) add them here, off the pure path."""
    authorize = getattr(call.d.adapter, "authorize", None)
    if authorize is None:
        return request
    assert call.d.params is not None
    try:
        signed: UpstreamRequest = await authorize(call.d.params, request)
    except RuntimeError as exc:  # the deployment's credentials, not the client's request
        raise ProxyError(502, f"{call.d.model_name}: {exc}", "upstream_error") from None
    return signed


def _unpriced_azure(call: Call) -> bool:
    return call.price is None and call.d.provider == "azure"


def _priced_by_reply(call: Call, body: bytes) -> None:
    """An Azure deployment without model_info.base_model: priced by the model its reply names. Read
    from the provider's bytes: the translated reply already names the client's model instead."""
    if _unpriced_azure(call):
        from .providers.azure import reply_model

        _price_as(call, reply_model(body))


def _priced_by_stream(call: Call, data: bytes) -> None:
    """The same for a stream: every Azure chunk names the model (the first, a filter report, names "")."""
    if _unpriced_azure(call):
        found = _MODEL_FIELD.search(data)
        if found is not None:
            _price_as(call, found.group(1).decode("utf-8", "replace"))


def _price_as(call: Call, reply_model: str) -> None:
    from .providers.azure import price_name

    assert call.d.params is not None
    found = default_prices().find(price_name(call.d.params, reply_model)) if reply_model else None
    if found is not None and found.priced:
        call.price = found


async def chat(call: Call, body: dict[str, Any]) -> Response:
    """A non-streamed chat call: one request, one reply, settled before the reply is returned."""
    assert call.d.params is not None
    request = await _authorized(call, _request(call, body, stream=False))
    t = time.perf_counter()
    reply = await call.state.upstream.send(call.d, request)
    call.upstream_seconds = time.perf_counter() - t
    if reply.status >= 400:
        raise _failure(call, reply.status, reply.body, reply.headers)  # a failed call is never billed
    try:
        data, usage = _adapter(call).chat_reply(call.d.params, reply.body, call.model)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProxyError(502, f"{call.d.model_name}: the provider's reply could not be read: {exc}",
                         "upstream_error") from None
    _priced_by_reply(call, reply.body)
    call.note_reply(data)
    cost = settle(call, usage)
    return Response(200, orjson.dumps(data), call.reply_headers(cost, JSON_HEADERS))


async def chat_stream(call: Call, body: dict[str, Any]) -> StreamingResponse:
    """A streamed chat call: the provider's events translated as they arrive; billed once when the
    provider's stream ends (or the client leaves: the stream is drained, see http.StreamingResponse)."""
    assert call.d.params is not None
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    request = await _authorized(call, _request(call, body, stream=True))
    t = time.perf_counter()
    up = await call.state.upstream.open_stream(call.d, request)
    if up.status >= 400:
        data = b"".join([c async for c in up.chunks])
        raise _failure(call, up.status, data, up.headers)
    call.upstream_seconds = time.perf_counter() - t
    translator = _adapter(call).chat_stream(call.d.params, call.model, wants_usage)
    return StreamingResponse(RelayedStream(up, TranslatedEvents(call, translator, body)), 200,
                             call.reply_headers(None, SSE_HEADERS), on_close=call.admission.release)


class TranslatedEvents:
    """A provider's stream through its translator (the adapter's ChatStream), read by read, for the
    relay (relay.RelayedStream: pulled, or pushed from the upstream connection's reads)."""

    __slots__ = ("_call", "_translator", "_body", "_events", "_finished")

    def __init__(self, call: Call, translator: ChatStream, body: dict[str, Any]) -> None:
        self._call, self._translator, self._body = call, translator, body
        self._events = 0  # OpenAI events given to the client: the estimate when no usage comes
        self._finished = False

    def feed(self, data: bytes) -> bytes:
        call, translator = self._call, self._translator
        _priced_by_stream(call, data)
        out = translator.feed(data)
        self._events += len(out)
        for event in out if not call.response_id else ():
            call.note_event(event)
        if not self._finished and getattr(translator, "complete", False):
            # The provider said its last word: the tail ([DONE], the usage chunk) goes out in the
            # same write as the last events, as an OpenAI upstream's would.
            out += translator.finish()
            self._finished = True
        return out[0] if len(out) == 1 else b"".join(out)

    def tail(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        return b"".join(self._translator.finish())

    def settle(self) -> None:
        usage = self._translator.usage
        # A stream the provider failed before it generated anything (an error event first, no usage):
        # a failed call, never billed. Anything it generated is billed, as reported or estimated.
        if usage is None and getattr(self._translator, "failure", None) is not None and self._events <= 1:
            return
        settle(self._call, usage or _estimate(self._body, self._events))


async def embeddings(call: Call, body: dict[str, Any]) -> Response:
    """Embeddings through an adapter that has them (Azure: one request; Bedrock Titan: one per input)."""
    adapter: Any = call.d.adapter
    params = call.d.params
    assert params is not None
    try:
        if hasattr(adapter, "embedding_requests"):
            requests = adapter.embedding_requests(params, body)
        elif hasattr(adapter, "embedding_request"):
            requests = [adapter.embedding_request(params, body)]
        else:
            raise ProxyError(400, f"model {call.model!r} ({call.d.provider}) has no embeddings API here",
                             "invalid_request_error", "model")
    except ProviderInputError as exc:
        raise ProxyError(400, f"{call.d.model_name}: {exc}", "invalid_request_error", exc.param) from None
    t = time.perf_counter()
    replies = []
    for request in requests:
        reply = await call.state.upstream.send(call.d, await _authorized(call, request))
        if reply.status >= 400:
            raise _failure(call, reply.status, reply.body, reply.headers)  # nothing billed
        replies.append(reply)
    call.upstream_seconds = time.perf_counter() - t
    try:
        if hasattr(adapter, "embedding_requests"):  # several replies (and the last one's headers)
            data, usage = adapter.embedding_reply(params, [r.body for r in replies], body, call.model,
                                                  headers=replies[-1].headers)
        else:
            data, usage = adapter.embedding_reply(params, replies[0].body, call.model)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProxyError(502, f"{call.d.model_name}: the provider's reply could not be read: {exc}",
                         "upstream_error") from None
    _priced_by_reply(call, replies[0].body)
    cost = settle(call, usage)
    return Response(200, orjson.dumps(data), call.reply_headers(cost, JSON_HEADERS))


def _estimate(body: dict[str, Any], events: int) -> core.Usage:
    """A stream that never reported usage: 4 bytes a prompt token, one token an event; marked estimated."""
    prompt = max(1, math.ceil(len(orjson.dumps(body.get("messages", ""))) / 4))
    return core.Usage(prompt_tokens=prompt, completion_tokens=max(0, events - 1), estimated=True)
