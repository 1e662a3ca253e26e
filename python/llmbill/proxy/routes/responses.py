"""OpenAI's Responses API: POST /v1/responses (and /responses), forwarded to OpenAI-shaped
deployments as it is, billed from the reply's usage (streamed: `response.completed`). The same
pipeline as every LLM route: guards before, settle after (the spend log's call_type is `responses`).
"""

from __future__ import annotations

import math
import time
from urllib.parse import quote
from typing import Any

import orjson

from ..._native import core
from .. import billing_gate, budget_fallbacks, fallbacks, observe
from ..auth import Principal
from ..call import Call
from ..call_limits import resolve_model
from ..deployments import Deployment
from ..errors import ProxyError, bad_request
from ..customer_binding import bound_customer
from ..guards import check_model_access, customer_id
from ..http import JSON_HEADERS, SSE_HEADERS, Request, Response, StreamingResponse
from ..providers import azure
from ..providers.base import UpstreamRequest
from ..relay import relay
from ..reply_usage import usage_of
from ..settle import settle
from ..state import ProxyState
from ..upstream import upstream_error

SERVED_BY = ("openai", "azure")  # providers whose API has /responses


def _validate(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a string", "model")
    if not isinstance(body.get("input"), (str, list)) or not body.get("input"):
        raise bad_request("'input' must be a non-empty string or list", "input")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("'stream' must be true or false", "stream")
    mot = body.get("max_output_tokens")
    if mot is not None and (isinstance(mot, bool) or not isinstance(mot, int) or not 1 <= mot < 2**31):
        raise bad_request("'max_output_tokens' must be a positive integer", "max_output_tokens")
    if body.get("background"):
        # A background response is billed when it completes, which this proxy does not observe.
        raise bad_request("'background' responses are not supported: their usage would go unbilled", "background")
    return model


def _request(d: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    out = dict(body)
    out["model"] = d.upstream_model
    if d.provider == "azure":  # the resource's /openai/responses; the body's model names the deployment
        assert d.params is not None
        url = f"{d.api_base.rstrip('/')}/openai/responses?api-version={quote(azure.api_version(d.params), safe='')}"
        return UpstreamRequest(url, {"content-type": "application/json", **azure.auth_headers(d.params)},
                               orjson.dumps(out))
    headers = {"content-type": "application/json"}
    if d.api_key:
        headers["authorization"] = f"Bearer {d.api_key}"
    return UpstreamRequest(d.api_base + "/responses", headers, orjson.dumps(out))


async def responses(state: ProxyState, request: Request, principal: Principal) -> Response | StreamingResponse:
    started = time.perf_counter()
    body = await request.json()
    model = resolve_model(state, principal, _validate(body), body)  # aliases resolved
    d = state.deployment(model)
    if d is None:
        raise bad_request(f"unknown model {model!r}; this proxy serves: {', '.join(state.config.model_names)}", "model")
    if not _served(d):
        raise bad_request(f"model {model!r} ({d.provider}) does not serve the Responses API; "
                          "call /chat/completions", "model")
    check_model_access(state, principal, model)
    billing_gate.check(state)  # 503 before forwarding while the call's Lago event cannot be made durable
    customer = bound_customer(principal, customer_id(request.headers, body))
    model, d, admission = await budget_fallbacks.admit(state, principal, customer, model, d, body, ROUTE)
    call = Call(state, principal, "chat", model, d, customer, started, admission, call_type="responses")
    observe.note_call(call)
    # A failed call frees its reservation and is never billed; one that failed unbilled may fall back.
    return await fallbacks.serve(call, body, _attempt, ROUTE)


def _served(d: Deployment) -> bool:
    return d.provider in SERVED_BY and (d.adapter is None or d.provider == "azure")


ROUTE = fallbacks.Route("responses", _validate, _served)


async def _attempt(call: Call, body: dict[str, Any]) -> Response | StreamingResponse:
    if body.get("stream"):
        return await _stream(call, body)
    return await _plain(call, body)


async def _plain(call: Call, body: dict[str, Any]) -> Response:
    t = time.perf_counter()
    reply = await call.state.upstream.send(call.d, _request(call.d, body))
    call.upstream_seconds = time.perf_counter() - t
    if reply.status >= 400:
        raise upstream_error(call.d, reply.status, reply.body)
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
        usage = _estimate(body, len(reply.body))
    data["model"] = call.model
    call.note_reply(data)
    cost = settle(call, usage)
    return Response(200, orjson.dumps(data), call.reply_headers(cost, JSON_HEADERS))


async def _stream(call: Call, body: dict[str, Any]) -> StreamingResponse:
    t = time.perf_counter()
    up = await call.state.upstream.open_stream(call.d, _request(call.d, body))
    if up.status >= 400:
        raise upstream_error(call.d, up.status, b"".join([c async for c in up.chunks]))
    call.upstream_seconds = time.perf_counter() - t
    # No usage from the provider: about a token an event (each delta carries one), marked estimated.
    chunks = relay(call, up, lambda events: _estimate(body, 16 * events))
    headers = call.reply_headers(None, SSE_HEADERS)
    return StreamingResponse(chunks, 200, headers, on_close=call.admission.release)


def _estimate(body: dict[str, Any], reply_bytes: int) -> core.Usage:
    """No usage from the provider: 4 bytes a token, marked estimated — never billed as zero."""
    prompt = max(1, math.ceil(len(orjson.dumps([body.get("instructions"), body.get("input")])) / 4))
    return core.Usage(prompt_tokens=prompt, completion_tokens=math.ceil(reply_bytes / 16), estimated=True)
