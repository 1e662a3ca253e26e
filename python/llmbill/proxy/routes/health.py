"""/health/liveliness (the process answers) and /health/readiness (database and billing sink)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..._native import core
from ...lago.deadletters import DeadLetterBook
from ..auth import Principal
from ..http import Request, Response, json_response
from ..state import ProxyState


async def liveliness(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    return json_response("I'm alive!")


async def readiness(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    db_ok = False
    try:
        db_ok = await state.store.ping()
    except Exception:
        db_ok = False
    billing: dict[str, Any] = {"enabled": state.pipeline is not None}
    if state.pipeline is not None:
        stats = state.pipeline.stats()
        billing.update(sink=state.pipeline.describe(), delivered=stats["delivered"], pending=stats["pending"],
                       dead_lettered=stats["dead_lettered"], oldest_pending_age_s=stats["oldest_pending_age_s"],
                       last_error=stats["last_error"], spool_bytes=stats["spool_bytes"])
        # Dead letters of every process's slot, waiting for an operator (llmbill deadletters).
        try:
            count, oldest = await asyncio.to_thread(DeadLetterBook(state.spool_base()).count_and_oldest)
        except (core.Error, OSError) as exc:  # readiness reports it; it never fails on it
            count, oldest = None, None
            billing["dead_letters_error"] = str(exc)
        billing.update(dead_letters=count, oldest_dead_letter_age_s=oldest,
                       held_codes=sorted(state.pipeline.held_codes()))
    healthy = db_ok
    body = {"status": "healthy" if healthy else "unhealthy", "db": "connected" if db_ok else "unreachable",
            "billing": billing, "spend_flush_failures": state.spend.flush_failures}
    return json_response(body, 200 if healthy else 503)
