"""Reconciliation, the I/O: read the proxy's spend logs and Lago's events for a window, compare
(`reconcile.compare`), and with `fix` re-send the missing events through the normal pipeline, then
read Lago again to prove them stored.

Re-sent events are rebuilt from the spend log row by the core's own event builder, with the
original transaction_id and timestamp, so Lago's dedup makes a resend harmless. Nothing is ever
deleted or changed in Lago: extra and altered events are reported for a human to judge. The billed
ids' subscriptions, read once, give both the ids Lago would never bill and the customers whose
prepaid credits are checked (reconcile_credits_run.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from .. import billing
from .._native import core
from ..errors import Error
from ..calls import EPOCH, call_timestamp_ms
from .reader import LagoReader, LagoReadError, StoredEvent
from .reconcile import Amounts, ExpectedEvent, ReconcileReport, UnbillableCall, compare
from .reconcile_credits import SettledCall
from .reconcile_credits_run import credit_accounts, subscriptions_of
from .subscriptions import ACTIVE

if TYPE_CHECKING:  # the store's types only: the proxy imports this package, never the reverse
    from ..proxy.store.base import SpendLog, Store

#: Both sides are read this much beyond the window, so a boundary never hides a match.
MARGIN_MS = 1000
#: Lago's acceptance window by default: an event older than a monthly billing period may fall in a
#: period that is invoiced already (Lago stores it and never bills it), so it is not re-sent blindly.
DEFAULT_MAX_AGE = timedelta(days=31)
#: Events dated this far ahead are not re-sent either (a clock problem, not a lost event).
FUTURE_SLACK = timedelta(minutes=5)
LOG_CHUNK = 5000
#: Missing events looked up one by one (GET /events/{id}) before they are called missing.
MAX_LOOKUPS = 1000


def _ms_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


async def read_calls(store: Store, start_ms: int, end_ms: int, chunk: int = LOG_CHUNK) -> list[SpendLog]:
    """Every spend log row whose start time is in [start_ms, end_ms): the range is halved until each
    part fits in one `spend_logs` page."""
    out: list[SpendLog] = []
    todo = [(_ms_to_datetime(start_ms), _ms_to_datetime(end_ms))]
    while todo:
        a, b = todo.pop()
        rows = await store.spend_logs(None, a, b, chunk)
        if len(rows) < chunk:
            out.extend(rows)
            continue
        if b - a <= timedelta(milliseconds=2):
            raise Error(f"more than {chunk} calls started within {a.isoformat()}..{b.isoformat()}")
        middle = a + (b - a) / 2
        todo += [(a, middle), (middle, b)]
    return out


def expected_events(logs: Iterable[SpendLog],
                    settings: billing.LagoSettings) -> tuple[list[ExpectedEvent], list[UnbillableCall]]:
    """The events each spend log row's call produced, rebuilt exactly as the proxy built them."""
    expected: list[ExpectedEvent] = []
    unbillable: list[UnbillableCall] = []
    for log in logs:
        meta = dict(log.metadata)
        usage = core.Usage(prompt_tokens=log.prompt_tokens, completion_tokens=log.completion_tokens,
                           cached_tokens=log.cached_tokens,
                           cache_creation_tokens=int(meta.get("cache_creation_tokens") or 0),
                           cache_creation_1h_tokens=int(meta.get("cache_creation_1h_tokens") or 0),
                           reasoning_tokens=log.reasoning_tokens, estimated=bool(meta.get("estimated")))
        timestamp_ms = call_timestamp_ms(log.start_time)
        # A call billed with a margin: the row's spend is the billed amount, its cost is in the metadata.
        margin = "response_cost" in meta
        cost = Decimal(str(meta["response_cost"])) if margin else Decimal(log.spend)
        events, missing = core.build_lago_events(
            call_id=log.request_id, timestamp_ms=timestamp_ms, model=log.model, usage=usage, cost=cost,
            codes=list(settings.event_codes), charge_by=settings.charge_by,
            key_alias=str(meta.get("key_alias") or ""), user_id=log.user, team_id=log.team_id,
            end_user_id=log.end_user, unpriced=bool(meta.get("unpriced")),
            billed_amount=Decimal(log.spend) if margin else None)
        if missing:
            amounts = Amounts(1, log.prompt_tokens, log.completion_tokens, cost, Decimal(log.spend))
            unbillable.append(UnbillableCall(log.request_id, missing, amounts, timestamp_ms))
        expected += [ExpectedEvent.from_json(log.request_id, event) for event in events]
    return expected, unbillable


async def settled_calls(store: Store, settings: billing.LagoSettings, start_ms: int, end_ms: int) -> list[SettledCall]:
    """The spend logs' calls in [start_ms, end_ms) with the id each is billed to and what it billed
    (one entry per event: a call with several codes appears once per code)."""
    expected, _ = expected_events(await read_calls(store, start_ms, end_ms), settings)
    return [SettledCall(e.call_id, e.billed_id, e.timestamp_ms, Amounts.of(e.properties).billed) for e in expected
            if start_ms <= e.timestamp_ms < end_ms]


async def check_subscriptions_and_credits(store: Store, reader: LagoReader, settings: billing.LagoSettings,
                                          report: ReconcileReport) -> None:
    """Fills `unsubscribed` and `credits`; what Lago could not answer becomes a warning."""
    ids = [a.billed_id for a in report.accounts if a.billed_id]
    try:
        subscriptions = await asyncio.to_thread(subscriptions_of, reader, ids)
    except LagoReadError as exc:
        report.warnings.append(f"could not check the billed ids' Lago subscriptions: {exc}")
        return
    report.unsubscribed = [i for i in ids if (subscriptions[i] or {}).get("status") != ACTIVE]
    try:
        report.credits, warnings = await credit_accounts(
            reader, subscriptions, report.start_ms, report.end_ms,
            lambda a, b: settled_calls(store, settings, a, b))
        report.warnings += warnings
    except LagoReadError as exc:
        report.warnings.append(f"could not check prepaid credits against Lago's wallets: {exc}")


async def reconcile_async(store: Store, reader: LagoReader, settings: billing.LagoSettings, start_ms: int,
                          end_ms: int, *, dead_letters: dict[str, str] | None = None,
                          submit: Callable[[str], bool] | None = None,
                          flush: Callable[[float], bool] | None = None, max_age: timedelta = DEFAULT_MAX_AGE,
                          force_late: bool = False, wait: float = 30.0,
                          now: datetime | None = None) -> ReconcileReport:
    """One reconciliation of [start_ms, end_ms). With `submit` (and `flush`), the missing events that
    may be re-sent are re-sent, delivery is awaited up to `wait` seconds, and the report returned is
    that of a second reading of Lago: what remains, with `fixed` naming what was re-sent."""
    if end_ms <= start_ms:
        raise ValueError("the window is empty: --to must be after --from")
    now_ms = call_timestamp_ms(now or datetime.now(tz=EPOCH.tzinfo))
    accept_from = None if force_late else now_ms - int(max_age / timedelta(milliseconds=1))
    accept_to = None if force_late else now_ms + int(FUTURE_SLACK / timedelta(milliseconds=1))
    logs = await read_calls(store, start_ms - MARGIN_MS, end_ms + MARGIN_MS)
    expected, unbillable = expected_events(logs, settings)
    unbillable = [u for u in unbillable if start_ms <= u.timestamp_ms < end_ms]
    calls = len({e.call_id for e in expected if start_ms <= e.timestamp_ms < end_ms}) + len(unbillable)

    def against(stored: list[StoredEvent]) -> ReconcileReport:
        return compare(expected, stored, start_ms=start_ms, end_ms=end_ms, codes=settings.event_codes,
                       charge_by=settings.charge_by, calls=calls, unbillable=unbillable,
                       dead_letters=dead_letters, accept_from_ms=accept_from, accept_to_ms=accept_to)

    async def read_and_compare() -> ReconcileReport:
        stored, warnings = await asyncio.to_thread(reader.events, start_ms - MARGIN_MS, end_ms + MARGIN_MS)
        report = against(stored)
        # An event Lago holds under a timestamp outside the window is not missing (a resend would be a
        # no-op for Lago's dedup and reconcile would never come clean): look each one up by its id.
        missing = [d.transaction_id for d in report.of_kind("missing")]
        if 0 < len(missing) <= MAX_LOOKUPS:
            found = [e for e in await asyncio.to_thread(lambda: [reader.event(i) for i in missing]) if e is not None]
            if found:
                report = against(stored + found)
        elif missing:
            warnings.append(f"{len(missing)} events missing: too many to look up one by one; an event Lago holds "
                            "dated outside the window shows as missing")
        report.warnings += warnings
        await check_subscriptions_and_credits(store, reader, settings, report)
        if end_ms > now_ms - 60_000:
            report.warnings.append("the window ends less than a minute ago: events of the last calls may still be "
                                   "on their way to Lago (reconcile a closed window for a final answer)")
        return report

    report = await read_and_compare()
    if submit is None:
        return report
    resend = [d for d in report.of_kind("missing") if d.resendable]
    if not resend:
        return report
    # Spool appends (fsynced per policy): off the event loop, which may be the proxy's.
    await asyncio.to_thread(lambda: [submit(d.event_json) for d in resend])
    delivered = await asyncio.to_thread(flush, wait) if flush is not None else True
    after = await read_and_compare()
    after.fixed = [d.transaction_id for d in resend]
    if not delivered:
        after.warnings.append(f"not every re-sent event was delivered within {wait:g} s; the rest stay spooled "
                              "and are sent when Lago answers (run reconcile again)")
    return after
