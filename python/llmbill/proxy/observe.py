"""What each request leaves behind for the operator: Prometheus figures and one access log line.

The app opens a `RequestInfo` per request (a context variable, so the LLM route can fill it in
without threading it through), the LLM route notes its call and, once billed, its tokens and cost;
when the reply is fully sent (a stream included) the app closes it: counters, histograms, and one
line at info level on the `llmbill.proxy.access` logger with request id, key alias, team,
customer, model, tokens, cost, status and durations. Never the key, never prompt or reply text.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import metrics
from .metrics_tally import LOCK

if TYPE_CHECKING:
    from .._native import core
    from .call import Call

access_log = logging.getLogger("llmbill.proxy.access")


@dataclass
class RequestInfo:
    method: str
    path: str
    started: float  # perf_counter
    request_id: str = ""
    route: str = "unmatched"
    call: Call | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None
    status: int = 0
    counted: bool = False  # the settled call's figures are counted at finish (note_settled)
    finished: bool = False


_current: ContextVar[RequestInfo | None] = ContextVar("llmbill_request", default=None)


def begin(method: str, path: str) -> RequestInfo:
    info = RequestInfo(method, path, time.perf_counter())  # request_id: the call's id, or made when logged
    _current.set(info)
    return info


def note_call(call: Call) -> None:
    """The LLM route has a call: its id becomes the request id (the x-litellm-call-id)."""
    info = _current.get()
    if info is not None:
        info.call = call
        info.request_id = call.call_id


def model_label(call: Call) -> str:
    """The model as a metrics label: a configured model_name, or "*" for every name a wildcard
    deployment served — those names come from clients, and each label value is a series kept forever."""
    return call.model if call.state.has_model(call.model) else "*"


def note_settled(call: Call, usage: core.Usage, cost: Decimal) -> None:
    """The call was billed (once): its tokens and spend go to the counters when its reply has been
    sent (finish: the Prometheus increments off the request's path), or now when no open request
    holds it. Either way they are counted even if the client is gone (finish always runs)."""
    info = _current.get()
    if info is not None and info.call is call:
        info.prompt_tokens, info.completion_tokens, info.cost = usage.prompt_tokens, usage.completion_tokens, cost
        if not info.finished:
            info.counted = True
            return
    with LOCK:
        _count_settled(call, model_label(call), usage.prompt_tokens, usage.completion_tokens, cost)


def _count_settled(call: Call, model: str, prompt_tokens: int, completion_tokens: int, cost: Decimal) -> None:
    """Under metrics_tally.LOCK (the caller's)."""
    key = call.principal.key or {}
    team = str(key.get("team_id") or "")
    metrics.tokens.add((model, team, "prompt"), prompt_tokens)
    metrics.tokens.add((model, team, "completion"), completion_tokens)
    metrics.spend.add((model, team), float(cost))
    metrics.billed_calls.add((model, team))


def budget_refused(message: str, kind: str | None) -> None:
    metrics.BUDGET_REFUSALS.labels(metrics.budget_kind(message, kind)).inc()


def finish(info: RequestInfo, status: int) -> None:
    """The reply is sent: count it and write its access line."""
    info.status = status
    info.finished = True
    elapsed = time.perf_counter() - info.started
    call = info.call
    model = model_label(call) if call is not None else ""
    upstream = call.upstream_seconds if call is not None and call.upstream_seconds > 0 else None
    with LOCK:
        if info.counted and call is not None and info.cost is not None:
            assert info.prompt_tokens is not None and info.completion_tokens is not None
            _count_settled(call, model, info.prompt_tokens, info.completion_tokens, info.cost)
        metrics.requests.add((info.route, model, str(status)))
        metrics.request_seconds.add((info.route, model), elapsed)
        if upstream is not None:
            metrics.upstream_seconds.add((model,), upstream)
            metrics.added_seconds.add((info.route, model), max(0.0, elapsed - upstream))
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s %s %d", info.method, info.path, status, extra={"fields": _fields(info, elapsed, upstream)})


def _fields(info: RequestInfo, elapsed: float, upstream: float | None) -> dict[str, Any]:
    call = info.call
    key = (call.principal.key or {}) if call is not None else {}
    return {
        "request_id": info.request_id or uuid.uuid4().hex,
        "method": info.method,
        "path": info.path,
        "status": info.status,
        "key_alias": (key.get("key_alias") or "") if key else ("master" if call is not None else ""),
        "team": key.get("team_id") or "",
        "customer": call.customer if call is not None else "",
        "model": call.model if call is not None else "",
        "prompt_tokens": info.prompt_tokens,
        "completion_tokens": info.completion_tokens,
        "cost": None if info.cost is None else format(info.cost, "f"),
        "duration_ms": round(elapsed * 1000, 3),
        "upstream_ms": None if upstream is None else round(upstream * 1000, 3),
        "overhead_ms": None if upstream is None else round(max(0.0, elapsed - upstream) * 1000, 3),
    }
