"""Anthropic's Messages API: POST /v1/messages (and /anthropic/v1/messages), /v1/messages/count_tokens.

What the Anthropic SDK and Claude Code (`ANTHROPIC_BASE_URL`) call, with the virtual key in `x-api-key`
or `Authorization`. The same pipeline as every LLM route — model access, blocked, budgets and a
reserved upper bound (guards), the upstream, then settle (cost, ledger, spend log, Lago, webhook,
metrics) — only the shapes are Anthropic's, errors included (app.py renders them for these paths).
Anthropic deployments get the body natively; others are translated (providers/anthropic_inbound.py).
"""

from __future__ import annotations

import math
import time
from urllib.parse import quote
from collections.abc import Mapping
from typing import Any

import orjson

from ..._native import core
from .. import billing_gate, budget_fallbacks, fallbacks, observe
from ..auth import Principal
from ..call import Call
from ..call_limits import resolve_model
from ..deployments import Deployment
from ..errors import ProxyError, bad_request
from ..failures import answered
from ..reply_usage import usage_of
from ..customer_binding import bound_customer
from ..guards import check_model_access, customer_id
from ..http import JSON_HEADERS, SSE_HEADERS, Request, Response, StreamingResponse, json_response
from ..providers import anthropic_inbound as inbound
from ..providers.base import ProviderInputError, UpstreamRequest
from ..providers.google_auth import GoogleAuthError
from ..providers.vertex import ANTHROPIC_VERSION as VERTEX_ANTHROPIC_VERSION
from ..providers.vertex import VertexAdapter, is_claude, vertex_target
from ..relay import relay
from ..settle import settle
from ..state import ProxyState
from . import llm

ANTHROPIC_VERSION = "2023-06-01"
NATIVE = ("anthropic",)  # providers whose deployments take the Messages body as it is (+ Claude on Vertex)


def is_native(d: Deployment) -> bool:
    return d.provider in NATIVE or (d.provider == "vertex_ai" and is_claude(d.upstream_model))


def _validate(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required (a string)", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: Field required (a non-empty list)", "messages")
    mt = body.get("max_tokens")
    if isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt < 2**31:
        raise bad_request("max_tokens: Field required (a positive integer)", "max_tokens")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("stream: must be true or false", "stream")
    if "system" in body and not isinstance(body["system"], (str, list)):
        raise bad_request("system: must be a string or a list of text blocks", "system")
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request("metadata: must be an object", "metadata")
    return model


async def _begin(state: ProxyState, request: Request, principal: Principal) -> tuple[Call, dict[str, Any]]:
    started = time.perf_counter()
    body = await request.json()
    model = resolve_model(state, principal, _validate(body), body)  # aliases resolved
    d = state.deployment(model)
    if d is None:
        raise ProxyError(404, f"model: {model} (this proxy serves: {', '.join(state.config.model_names)})",
                         "not_found_error", "model")
    check_model_access(state, principal, model)
    billing_gate.check(state)  # 503 before forwarding while the call's Lago event cannot be made durable
    # metadata.user_id is Anthropic's end-user field
    customer = bound_customer(principal, customer_id(request.headers, body))
    model, d, admission = await budget_fallbacks.admit(state, principal, customer, model, d, body, ROUTE)
    call = Call(state, principal, "chat", model, d, customer, started, admission, call_type="anthropic_messages")
    observe.note_call(call)
    return call, body


ROUTE = fallbacks.Route("messages", _validate, lambda d: d.provider != "text-completion-openai")


async def messages(state: ProxyState, request: Request, principal: Principal) -> Response | StreamingResponse:
    call, body = await _begin(state, request, principal)

    async def attempt(call: Call, body: dict[str, Any]) -> Response | StreamingResponse:
        if is_native(call.d):
            return await _native(call, body, request.headers)
        return await _translated(call, body)

    # A failed call frees its reservation and is never billed; one that failed unbilled may fall back.
    return await fallbacks.serve(call, body, attempt, ROUTE)


def messages_url(api_base: str, path: str = "/v1/messages") -> str:
    """LiteLLM's convention: api_base is the host (optionally with /v1); the path is appended."""
    base = (api_base or "https://api.anthropic.com").rstrip("/")
    if base.endswith("/v1/messages"):
        base = base[: -len("/v1/messages")]
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + path


def vertex_claude_request(d: Deployment, body: Mapping[str, Any], client_headers: Mapping[str, str]) -> UpstreamRequest:
    """Claude on Vertex: the Messages body minus `model`, plus Vertex's anthropic_version, posted to the
    publisher model's rawPredict (streamRawPredict); the bearer token is added by the adapter."""
    assert d.params is not None
    t = vertex_target(d.params)
    out = {k: v for k, v in body.items() if k != "model"}
    out["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
    verb = "streamRawPredict" if body.get("stream") else "rawPredict"
    url = (f"{t.base}/v1/projects/{quote(t.project, safe='')}/locations/{quote(t.location, safe='')}"
           f"/publishers/anthropic/models/{quote(d.upstream_model, safe='-._~@')}:{verb}")
    headers = {"content-type": "application/json"}
    if client_headers.get("anthropic-beta"):
        headers["anthropic-beta"] = client_headers["anthropic-beta"]
    return UpstreamRequest(url, headers, orjson.dumps(out))


def native_request(d: Deployment, body: Mapping[str, Any], client_headers: Mapping[str, str],
                   path: str = "/v1/messages") -> UpstreamRequest:
    out = dict(body)
    out["model"] = d.upstream_model
    headers = {"content-type": "application/json", "x-api-key": d.api_key,
               "anthropic-version": client_headers.get("anthropic-version") or ANTHROPIC_VERSION}
    if client_headers.get("anthropic-beta"):  # Claude Code's betas (prompt caching, tools) reach the provider
        headers["anthropic-beta"] = client_headers["anthropic-beta"]
    return UpstreamRequest(messages_url(d.api_base, path), headers, orjson.dumps(out))


def upstream_failure(d: Deployment, status: int, body: bytes) -> ProxyError:
    """Anthropic's error → the client's status: overloaded (529) → 503; the deployment's own
    credentials refused → 502 naming it (never 401: that would blame the client's key)."""
    message, type_ = body.decode("utf-8", "replace")[:500], "api_error"
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message, type_ = str(err.get("message") or message), str(err.get("type") or type_)
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status in (401, 403):
        return ProxyError(502, f"{d.model_name}: the provider refused this deployment's credentials ({status}): "
                          f"{message}", "api_error")
    if status == 529:
        return ProxyError(503, f"{d.model_name}: {message}", "overloaded_error")
    if status >= 500:
        return ProxyError(502, f"{d.model_name}: {message}", "api_error")
    return ProxyError(status, f"{d.model_name}: {message}", type_)


async def _native_request(call: Call, body: dict[str, Any], client_headers: Mapping[str, str]) -> UpstreamRequest:
    if call.d.provider != "vertex_ai":
        return native_request(call.d, body, client_headers)
    adapter = call.d.adapter
    assert isinstance(adapter, VertexAdapter) and call.d.params is not None
    try:
        return await adapter.authorize(call.d.params, vertex_claude_request(call.d, body, client_headers))
    except GoogleAuthError as exc:  # the deployment's credentials, not the client's request
        raise ProxyError(502, f"{call.d.model_name}: {exc}", "api_error") from None


async def _native(call: Call, body: dict[str, Any], client_headers: Mapping[str, str]) -> Response | StreamingResponse:
    request = await _native_request(call, body, client_headers)
    if body.get("stream"):
        return await _native_stream(call, body, request)
    t = time.perf_counter()
    reply = await call.state.upstream.send(call.d, request)
    call.upstream_seconds = time.perf_counter() - t
    if reply.status >= 400:
        raise answered(upstream_failure(call.d, reply.status, reply.body), reply.status, reply.body)
    try:
        data = orjson.loads(reply.body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (orjson.JSONDecodeError, ValueError):
        raise ProxyError(502, f"{call.d.model_name}: the provider's reply is not a JSON object", "api_error") from None
    try:
        usage = usage_of(data, reply.body)
    except core.UsageError:
        usage = _estimate(body, _text_bytes(data))
    data["model"] = call.model
    call.note_reply(data)
    cost = settle(call, usage)
    return Response(200, orjson.dumps(data), call.reply_headers(cost, JSON_HEADERS))


async def _native_stream(call: Call, body: dict[str, Any], request: UpstreamRequest) -> StreamingResponse:
    t = time.perf_counter()
    up = await call.state.upstream.open_stream(call.d, request)
    if up.status >= 400:
        data = b"".join([c async for c in up.chunks])
        raise answered(upstream_failure(call.d, up.status, data), up.status, data)
    call.upstream_seconds = time.perf_counter() - t
    # No usage from the provider (never for Anthropic, but never billed as zero): a token an event.
    chunks = relay(call, up, lambda events: _estimate(body, 4 * events))
    headers = call.reply_headers(None, SSE_HEADERS)
    return StreamingResponse(chunks, 200, headers, on_close=call.admission.release)


async def _translated(call: Call, body: dict[str, Any]) -> Response | StreamingResponse:
    """A deployment that does not speak Messages: the request becomes a chat call (the same forwarding
    and settling as /chat/completions), its reply or stream becomes Anthropic's again."""
    try:
        chat_body = inbound.chat_request(body)
    except ProviderInputError as exc:
        raise bad_request(str(exc), exc.param) from None
    chat_body["model"] = call.model
    if body.get("stream"):
        chat_body["stream_options"] = {"include_usage": True}  # the translator reports usage at the end
    result = await llm.forward_chat(call, chat_body)
    if isinstance(result, StreamingResponse):
        result.chunks = inbound.messages_stream(result.chunks, call.model)
        return result
    result.body = orjson.dumps(inbound.messages_reply(orjson.loads(result.body), call.model))
    return result


def _text_bytes(data: dict[str, Any]) -> int:
    return sum(len(str(b.get("text") or "")) for b in data.get("content") or [] if isinstance(b, dict))


def _estimate(body: dict[str, Any], output_bytes: int) -> core.Usage:
    """No usage from the provider: 4 bytes a token, marked estimated — never billed as zero."""
    prompt = max(1, math.ceil(len(orjson.dumps([body.get("system"), body.get("messages")])) / 4))
    return core.Usage(prompt_tokens=prompt, completion_tokens=math.ceil(output_bytes / 4), estimated=True)


async def count_tokens(state: ProxyState, request: Request, principal: Principal) -> Response:
    """Anthropic deployments answer it themselves (not billed); others get an upper estimate
    (4 bytes a token rounded up — a bound, not Anthropic's tokenizer)."""
    body = await request.json()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required (a string)", "model")
    if not isinstance(body.get("messages"), list):
        raise bad_request("messages: Field required (a list)", "messages")
    d = state.deployment(model)
    if d is None:
        raise ProxyError(404, f"model: {model}", "not_found_error", "model")
    check_model_access(state, principal, model)
    if d.provider in NATIVE:  # Anthropic's own endpoint (Vertex has no count_tokens for Claude: estimated)
        reply = await state.upstream.send(d, native_request(d, body, request.headers, "/v1/messages/count_tokens"))
        if reply.status >= 400:
            raise upstream_failure(d, reply.status, reply.body)
        return Response(200, reply.body, list(JSON_HEADERS))
    size = len(orjson.dumps([body.get("system"), body.get("messages"), body.get("tools")]))
    return json_response({"input_tokens": math.ceil(size / 4)})
