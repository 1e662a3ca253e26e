"""Watching the billing pipeline from a proxy process: its figures for /metrics (every second) and
the configured event codes against Lago (at start, then every minute).

A code Lago does not know as a billable metric is the quiet failure of usage billing: Lago answers
200, stores the events and never bills them, and their transaction_ids are taken for good (Lago's
uniqueness ignores the code), so nothing sent later under the right code could bill those calls.
So such a code is held: its events become dead letters, kept with the reason, and the readiness
route, /metrics and the log say so. Once the operator fixes LAGO_API_EVENT_CODE (or creates the
metric), `llmbill deadletters replay --all` sends them. When Lago cannot be asked, nothing changes.

It also logs when billing stops being able to keep new events durably (spool full or unwritable:
billable calls are refused under fail_closed, see billing_gate.py) and when it can again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..lago.deadletters import DeadLetterBook
from ..lago.reader import LagoReader, LagoReadError
from . import metrics, subscription_watch

if TYPE_CHECKING:
    from .state import ProxyState

log = logging.getLogger("llmbill.proxy")
CODE_CHECK_INTERVAL = 60.0
METRICS_INTERVAL = 1.0
DEAD_LETTER_SCAN_INTERVAL = 10.0


def hold_reason(code: str) -> str:
    return (f"code {code!r} is not a billable metric in Lago: Lago would store its events and never bill them "
            f"(fix LAGO_API_EVENT_CODE or create the metric, then run `llmbill deadletters replay --all`)")


async def check_codes(state: ProxyState, timeout: float = 5.0) -> None:
    """Holds the configured codes Lago says it does not know; releases the ones it knows again."""
    settings, pipeline = state.billing, state.pipeline
    if settings is None or pipeline is None or not settings.api_base:
        return
    reader = LagoReader(settings.api_base, settings.api_key, timeout=timeout)
    try:
        unknown = await asyncio.to_thread(reader.unknown_codes, settings.event_codes)
    except LagoReadError as exc:
        log.warning("could not check the event codes with Lago (nothing held or released): %s", exc)
        return
    held = {code: hold_reason(code) for code in unknown}
    before = pipeline.held_codes()
    if held != before:
        for code in sorted(set(held) - set(before)):
            log.error("billing: %s", held[code])
        for code in sorted(set(before) - set(held)):
            log.warning("billing: code %r is a billable metric in Lago now; its events are sent again", code)
    pipeline.hold_codes(held)
    metrics.HELD_CODES.set(len(held))


class _Watch:
    mirror = metrics.PipelineMirror()
    last_scan = 0.0
    accepting = True


def note_durability(state: ProxyState, stats: dict[str, Any]) -> None:
    """One log line when billing stops (or resumes) being able to keep new events durably."""
    accepting = bool(stats.get("accepting", True)) and not stats.get("unspooled", 0)
    if accepting == _Watch.accepting:
        return
    _Watch.accepting = accepting
    if accepting:
        log.warning("billing: events can be stored durably again; billable calls are accepted")
        return
    action = ("served anyway (billing_failure_policy: fail_open)" if state.config.billing_failure_policy == "fail_open"
              else "refused with 503 billing_unavailable")
    log.error("billing: new events cannot be stored durably (%s; %s held in memory); billable calls are %s",
              stats.get("last_error") or "spool full", stats.get("unspooled", 0), action)


async def sync_metrics(state: ProxyState, scan_dead_letters: bool = True) -> None:
    """This process's pipeline figures into the gauges and counters; the dead letters of every slot
    when `scan_dead_letters` (they are files: read at most every few seconds by the loop)."""
    if state.pipeline is not None:
        stats = state.pipeline.stats()
        _Watch.mirror.sync(stats)
        note_durability(state, stats)
    if scan_dead_letters and state.billing is not None:
        count, oldest = await asyncio.to_thread(DeadLetterBook(state.spool_base()).count_and_oldest)
        metrics.set_dead_letters(count, oldest)


async def run(state: ProxyState) -> None:
    """The background loop of one process."""
    last_check = time.monotonic()
    while True:
        await asyncio.sleep(METRICS_INTERVAL)
        now = time.monotonic()
        scan = now - _Watch.last_scan >= DEAD_LETTER_SCAN_INTERVAL
        try:
            await sync_metrics(state, scan)
            if scan:
                _Watch.last_scan = now
            await subscription_watch.check_new(state)
            if now - last_check >= CODE_CHECK_INTERVAL:
                last_check = now
                await check_codes(state)
                await subscription_watch.recheck_held(state)
        except Exception as exc:  # a watcher never takes the proxy down
            log.error("billing watch failed (will retry): %s", exc)
