"""The OpenAI-compatible routes: /chat/completions, /completions, /embeddings, /models.

One call: authenticate (memory) → validate → model access and budgets (memory) → forward → usage
(C++) → cost (C++) → settle: ledger + spend log row (written behind the reply) + Lago event (spooled
by the C++ pipeline before the reply) → reply with the call id, cost and the proxy's own overhead.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from decimal import Decimal
from typing import Any

import orjson

from ..._native import core
from .. import billing_gate, budget_fallbacks, fallbacks, forward, observe
from ..auth import Principal
from ..deployments import Deployment
from ..customer_binding import bound_customer
from ..errors import ProxyError, bad_request
from ..call import Call
from ..call_limits import resolve_model
from ..guards import allowed_models, check_model_access, customer_id
from ..http import JSON_HEADERS, SSE_HEADERS, Request, Response, StreamingResponse, json_response
from ..ids import check_id
from ..relay import relay
from ..reply_usage import usage_of
from ..settle import settle
from ..state import ProxyState
from ..upstream import upstream_error

log = logging.getLogger("llmbill.proxy")


# Token counts are int64 in the C++ core and reserve money before the call; no model generates more.
MAX_TOKENS = 2**31 - 1
MAX_N = 128  # OpenAI's own limit on choices per request


def _count(body: dict[str, Any], name: str, lo: int, hi: int) -> None:
    v = body.get(name)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
        raise bad_request(f"'{name}' must be an integer between {lo} and {hi}", name)


def _validate(route: str, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a string", "model")
    check_id(model, "model")  # a wildcard deployment stores and labels the name the client sent
    if route == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a non-empty list", "messages")
    elif route == "completion":
        if not isinstance(body.get("prompt"), (str, list)):
            raise bad_request("'prompt' must be a string or a list", "prompt")
    elif not isinstance(body.get("input"), (str, list)) or not body.get("input"):
        raise bad_request("'input' must be a non-empty string or list", "input")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("'stream' must be true or false", "stream")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    if "user" in body and body["user"] is not None:
        if not isinstance(body["user"], str):
            raise bad_request("'user' must be a string", "user")
        check_id(body["user"], "user")
    for name in ("max_tokens", "max_completion_tokens"):
        _count(body, name, 0, MAX_TOKENS)
    _count(body, "n", 1, MAX_N)
    return model


def _estimate_prompt(body: dict[str, Any]) -> int:
    source = body.get("messages", body.get("prompt", body.get("input", "")))
    return max(1, math.ceil(len(orjson.dumps(source)) / 4))


async def _begin(state: ProxyState, request: Request, route: str, principal: Principal) -> tuple[Call, dict[str, Any]]:
    started = time.perf_counter()
    body = await request.json()
    model = resolve_model(state, principal, _validate(route, body), body)  # aliases resolved
    d = state.deployment(model)
    if d is None:
        raise bad_request(f"unknown model {model!r}; this proxy serves: {', '.join(state.config.model_names)}", "model")
    if d.provider == "text-completion-openai" and route != "completion":
        raise bad_request(f"model {model!r} is a text-completion deployment: call /completions", "model")
    check_model_access(state, principal, model)
    billing_gate.check(state)  # 503 before forwarding while the call's Lago event cannot be made durable
    customer = bound_customer(principal, customer_id(request.headers, body))
    model, d, admission = await budget_fallbacks.admit(state, principal, customer, model, d, body, ROUTES[route])
    call = Call(state, principal, route, model, d, customer, started, admission)
    observe.note_call(call)
    return call, body


def _serves(route: str, d: Deployment) -> bool:
    """Whether a deployment can serve the route (for fallbacks; _begin and _forward say why not)."""
    if route == "chat":
        return d.provider != "text-completion-openai"
    if route == "completion":
        return d.adapter is None
    return d.adapter is None or hasattr(d.adapter, "embedding_requests") or hasattr(d.adapter, "embedding_request")


ROUTES = {route: fallbacks.Route(route, functools.partial(_validate, route), functools.partial(_serves, route))
          for route in ("chat", "completion", "embedding")}


async def llm_call(state: ProxyState, request: Request, principal: Principal, route: str) -> Response | StreamingResponse:
    call, body = await _begin(state, request, route, principal)
    # A failed call frees its reservation and is never billed; one that failed unbilled may fall back.
    return await fallbacks.serve(call, body, _forward, ROUTES[route])


async def forward_chat(call: Call, body: dict[str, Any]) -> Response | StreamingResponse:
    """A call admitted by another route (e.g. /v1/messages, translated): forwarded and settled as a
    chat call; the caller releases the reservation if this raises."""
    return await _forward(call, body)


async def _forward(call: Call, body: dict[str, Any]) -> Response | StreamingResponse:
    state, route = call.state, call.route
    upstream_body = dict(forward.provider_body(body))
    upstream_body["model"] = call.d.upstream_model
    if call.d.adapter is not None:  # a provider with its own API shape: translated both ways
        if route == "embedding":
            return await forward.embeddings(call, upstream_body)
        if route != "chat":
            raise bad_request(f"model {call.model!r} ({call.d.provider}) serves /chat/completions only", "model")
        if body.get("stream"):
            return await forward.chat_stream(call, upstream_body)
        return await forward.chat(call, upstream_body)
    if body.get("stream") and route != "embedding":
        return await _stream(call, body, upstream_body)
    t = time.perf_counter()
    reply = await state.upstream.call(call.d, route, upstream_body)
    call.upstream_seconds = time.perf_counter() - t
    if reply.status >= 400:
        raise upstream_error(call.d, reply.status, reply.body)  # a failed call is never billed
    try:
        data = orjson.loads(reply.body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (orjson.JSONDecodeError, ValueError):
        raise ProxyError(502, f"{call.d.model_name}: upstream returned a reply that is not a JSON object",
                         "upstream_error") from None
    try:
        usage = usage_of(data, reply.body)
    except core.UsageError:
        usage = _estimated_usage(body, data)
    data["model"] = call.model  # the name the client asked for
    call.note_reply(data)
    cost = settle(call, usage)
    return Response(200, orjson.dumps(data), call.reply_headers(cost, JSON_HEADERS))


def _estimated_usage(body: dict[str, Any], reply: dict[str, Any]) -> core.Usage:
    """A reply without usage: estimate (4 characters a token) and mark it — never bill zero silently."""
    text = ""
    for choice in reply.get("choices") or []:
        if isinstance(choice, dict):
            msg = choice.get("message") or {}
            text += str(msg.get("content") or "") if isinstance(msg, dict) else ""
            text += str(choice.get("text") or "")
    completion = math.ceil(len(text) / 4) if text else 0
    return core.Usage(prompt_tokens=_estimate_prompt(body), completion_tokens=completion, estimated=True)


async def _stream(call: Call, body: dict[str, Any], upstream_body: dict[str, Any]) -> StreamingResponse:
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    # Always ask the upstream for usage: the proxy bills from it, and strips it for clients that did not ask.
    upstream_body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    t = time.perf_counter()
    up = await call.state.upstream.stream(call.d, call.route, upstream_body)
    if up.status >= 400:
        data = b"".join([c async for c in up.chunks])
        raise upstream_error(call.d, up.status, data)  # llm_call releases the reservation
    call.upstream_seconds = time.perf_counter() - t  # time to the first byte of the reply
    chunks = relay(call, up, lambda n: _stream_estimate(body, n), strip_usage_only=not wants_usage)
    return StreamingResponse(chunks, 200, call.reply_headers(None, SSE_HEADERS), on_close=call.admission.release)


def _stream_estimate(body: dict[str, Any], content_events: int) -> core.Usage:
    # OpenAI-style streams carry about one token per content chunk.
    return core.Usage(prompt_tokens=_estimate_prompt(body), completion_tokens=max(0, content_events - 1), estimated=True)


async def models(state: ProxyState, request: Request, principal: Principal) -> Response:
    created = int(time.time())
    data = [{"id": m, "object": "model", "created": created, "owned_by": "llmbill"}
            for m in allowed_models(state, principal)]
    return json_response({"object": "list", "data": data})
