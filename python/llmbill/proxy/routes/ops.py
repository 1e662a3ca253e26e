"""Operator routes: GET /metrics (Prometheus text) and POST /billing/reconcile.

POST /billing/reconcile {"from": ISO, "to": ISO, "fix": false, "max_age": "31d", "force_late": false}
answers the reconciliation report as JSON (`llmbill reconcile --format json`), 200 whether clean or
not (`"clean"` says which). With "fix", missing events are re-sent through this process's pipeline.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from ... import redact
from ...errors import Error
from ...lago.deadletters import DeadLetterBook
from ...lago.reader import LagoReader, LagoReadError
from ...calls import call_timestamp_ms
from ...lago.reconcile_run import DEFAULT_MAX_AGE, reconcile_async
from ...lago.timeparse import UsageError, parse_duration, parse_time
from ..auth import Principal
from ..errors import ProxyError, bad_request
from ..http import Request, Response, json_response
from ..state import ProxyState
from .. import metrics
from ..billing_watch import sync_metrics


async def scrape(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    await sync_metrics(state)  # this worker's billing figures are current; the others' are at most 1 s old
    return Response(200, metrics.exposition(), [(b"content-type", metrics.CONTENT_TYPE.encode())])


def _time_ms(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{name}' is required: an ISO 8601 time, 'now' or '-<n>[smhdw]'", name)
    try:
        return call_timestamp_ms(parse_time(value, name))
    except (UsageError, ValueError) as exc:
        raise bad_request(str(exc), name) from None


def _options(body: dict[str, Any]) -> tuple[bool, timedelta, bool, float]:
    for name in ("fix", "force_late"):
        if name in body and not isinstance(body[name], bool):
            raise bad_request(f"'{name}' must be true or false", name)
    wait = body.get("wait", 30)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 300:
        raise bad_request("'wait' must be a number of seconds between 0 and 300", "wait")
    max_age = DEFAULT_MAX_AGE
    if body.get("max_age") is not None:
        if not isinstance(body["max_age"], str):
            raise bad_request("'max_age' must be a duration like '31d'", "max_age")
        try:
            max_age = parse_duration(body["max_age"], "max_age")
        except UsageError as exc:
            raise bad_request(str(exc), "max_age") from None
    return bool(body.get("fix", False)), max_age, bool(body.get("force_late", False)), float(wait)


async def reconcile(state: ProxyState, request: Request, principal: Principal) -> Response:
    body = await request.json()
    start_ms, end_ms = _time_ms(body, "from"), _time_ms(body, "to")
    if end_ms <= start_ms:
        raise bad_request("'to' must be after 'from'", "to")
    fix, max_age, force_late, wait = _options(body)
    settings, pipeline = state.billing, state.pipeline
    if settings is None or pipeline is None:
        raise bad_request("billing is off (no 'lago' in litellm_settings.callbacks): nothing to reconcile")
    if not settings.api_base:
        raise bad_request("LAGO_API_BASE is not set: events go to a local file, there is no Lago to reconcile with")
    await state.spend.flush()  # every call billed so far is in the spend logs
    book = DeadLetterBook(state.spool_base())
    try:
        dead = await asyncio.to_thread(book.ids)
        report = await reconcile_async(
            state.store, LagoReader(settings.api_base, settings.api_key), settings, start_ms, end_ms,
            dead_letters=dead, submit=pipeline.submit_event if fix else None, flush=pipeline.flush if fix else None,
            max_age=max_age, force_late=force_late, wait=wait)
    except LagoReadError as exc:
        raise ProxyError(502, redact.text(str(exc)), "lago_error") from None  # LAGO_API_BASE may hold a password
    except Error as exc:
        raise ProxyError(500, f"reconciliation failed: {exc}", "internal_error") from None
    return json_response(report.to_json())
