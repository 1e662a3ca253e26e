"""/health/liveliness (the process answers) and /health/readiness (database and billing).

Readiness is public, so anyone sees only `{"status": ...}`: `healthy`; `degraded` while billing
cannot make new events durable (spool full or unwritable, events held in memory), when billable
calls are refused under `billing_failure_policy: fail_closed` (then the answer is 503, so a load
balancer sends calls elsewhere) or served at risk under `fail_open` (200); `unhealthy` (503) when
the database does not answer. A configured Redis (shared limits, redis_limits.py) that does not answer
makes it `degraded` too: 503 under `redis_failure_policy: fail_closed` (calls are refused), 200 under
`fail_open` (limits hold per process meanwhile). The details (Lago URL, spool path and figures, last error, dead
letters) are for the master key, or a signed-in admin UI session, only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..._native import core
from ...lago.deadletters import DeadLetterBook
from ..auth import Principal, is_master, presented_key
from ..http import Request, Response, json_response
from ..state import ProxyState
from ..ui.sessions import cookie_value


async def liveliness(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    return json_response("I'm alive!")


async def _may_see_details(state: ProxyState, request: Request) -> bool:
    master = state.config.master_key
    if master is None:
        return True  # an open proxy (warned at start-up)
    if is_master(presented_key(request) or "", master):
        return True
    # The admin UI reads this with its session cookie (a cross-site page cannot read the reply).
    try:
        return await state.ui_sessions.get(cookie_value(request)) is not None
    except Exception:  # the database is down (readiness says so): sessions cannot be read
        return False


async def readiness(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    db_ok = False
    try:
        db_ok = await state.store.ping()
    except Exception:
        db_ok = False
    pipeline = state.pipeline
    stats = pipeline.stats() if pipeline is not None else None
    billing_ok = stats is None or (bool(stats["accepting"]) and stats["unspooled"] == 0)
    redis_ok = state.redis is None or await state.redis.ping()
    status = "unhealthy" if not db_ok else "healthy" if billing_ok and redis_ok else "degraded"
    refusing = db_ok and not billing_ok and state.config.billing_failure_policy == "fail_closed"
    redis_refusing = not redis_ok and state.config.redis_failure_policy == "fail_closed"
    code = 503 if status == "unhealthy" or refusing or redis_refusing else 200
    if not await _may_see_details(state, request):
        return json_response({"status": status}, code)

    billing: dict[str, Any] = {"enabled": pipeline is not None}
    if pipeline is not None and stats is not None:
        billing.update(sink=pipeline.describe(), delivered=stats["delivered"], pending=stats["pending"],
                       dead_lettered=stats["dead_lettered"], oldest_pending_age_s=stats["oldest_pending_age_s"],
                       last_error=stats["last_error"], spool_bytes=stats["spool_bytes"],
                       spool_free_bytes=stats["spool_free_bytes"], spool_dir=str(state.spool_dir or ""),
                       accepting=stats["accepting"], unspooled=stats["unspooled"],
                       spool_failures=stats["spool_failures"], sender_errors=stats["sender_errors"],
                       failure_policy=state.config.billing_failure_policy, refusing_calls=refusing)
        # Dead letters of every process's slot, waiting for an operator (llmbill deadletters).
        try:
            count, oldest = await asyncio.to_thread(DeadLetterBook(state.spool_base()).count_and_oldest)
        except (core.Error, OSError) as exc:  # readiness reports it; it never fails on it
            count, oldest = None, None
            billing["dead_letters_error"] = str(exc)
        billing.update(dead_letters=count, oldest_dead_letter_age_s=oldest, held_codes=sorted(pipeline.held_codes()),
                       held_subscriptions=sorted(pipeline.held_subscriptions()),
                       unverified_subscriptions=len(pipeline.unverified_subscriptions()))
    body = {"status": status, "db": "connected" if db_ok else "unreachable", "billing": billing,
            "spend_flush_failures": state.spend.flush_failures, "limits": _limits(state, redis_ok)}
    return json_response(body, code)


def _limits(state: ProxyState, redis_ok: bool) -> dict[str, Any]:
    """Where rate limits and reservations live, and what happens while Redis does not answer."""
    if state.redis is None:
        return {"shared": False, "where": "in-process (per worker)"}
    policy = state.config.redis_failure_policy
    return {"shared": True, "where": "redis", "redis": "connected" if redis_ok else "unreachable",
            "failure_policy": policy, "last_error": state.redis.error,
            "refusing_calls": not redis_ok and policy == "fail_closed",
            "limiting_per_process": not redis_ok and policy == "fail_open"}
