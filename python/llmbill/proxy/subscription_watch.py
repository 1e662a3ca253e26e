"""The subscription gate's answers (LAGO_CHECK_SUBSCRIPTIONS, LAGO_AUTO_PROVISION_PLAN): for each
billed id the pipeline's sender waits on, ask Lago whether it has an active subscription with that
external_id, off the request path (the call was served and its event spooled already).

Active: its events are sent. Missing, with a provisioning plan: the customer and subscription are
created (started no later than the id's first event), then its events are sent. Missing without
one: its events are held as dead letters with the reason, loudly (log, readiness, /metrics, the
UI's pipeline panel), and re-checked every minute — and at once when Lago's `subscription.started`
webhook names it (routes/lago_webhooks.py; relayed to every process on the same Redis,
credits/fanout.py). Once Lago has it active the id is released: new events flow again, and the
letters this process held for it are replayed (each process replays its own slot's, so none is sent
twice; `llmbill deadletters replay` remains for a slot no process owns). A letter dated before the
subscription started stays a dead letter, loudly: Lago would store it and never bill it. When Lago
cannot be asked, nothing is decided: the sender keeps waiting and the next tick asks again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ..lago.deadletters import DeadLetterBook, Letter, replay
from ..lago.reader import LagoReader, LagoReadError
from ..lago.subscriptions import LagoSubscriptions, missing_reason, started_ms
from . import metrics

if TYPE_CHECKING:
    from .._core import Pipeline
    from ..billing import LagoSettings
    from .state import ProxyState

log = logging.getLogger("llmbill.proxy")
FLUSH_S = 2.0  # an id's events queued before its release are sent or dead-lettered by then (then its letters are read)
_REPLAYING = threading.Lock()  # a webhook's release and the minute's never replay the same letters twice


def _client(state: ProxyState, timeout: float) -> LagoSubscriptions | None:
    settings = state.billing
    if settings is None or state.pipeline is None or not settings.check_subscriptions:
        return None
    return LagoSubscriptions(LagoReader(settings.api_base, settings.api_key, timeout=timeout))


def decide(client: LagoSubscriptions, ids: dict[str, int], plan: str) -> dict[str, str]:
    """id -> "" (billable now) or the reason to hold it; an id Lago could not be asked about is left out."""
    answers: dict[str, str] = {}
    for ident, oldest_ms in ids.items():
        try:
            if client.active(ident):
                answers[ident] = ""
            elif plan:
                client.provision(ident, plan, oldest_ms)
                log.warning("billing: created Lago customer and subscription %r on plan %r", ident, plan)
                answers[ident] = ""
            else:
                answers[ident] = missing_reason(ident)
        except LagoReadError as exc:
            log.warning("billing: could not check the Lago subscription of %r (its events wait): %s", ident, exc)
    return answers


async def check_new(state: ProxyState, timeout: float = 5.0) -> None:
    """Answers the ids the sender waits on (every tick: usually none)."""
    client = _client(state, timeout)
    if client is None or state.pipeline is None or state.billing is None:
        return
    waiting = state.pipeline.unverified_subscriptions()
    if not waiting:
        return
    answers = await asyncio.to_thread(decide, client, waiting, state.billing.provision_plan)
    for ident, reason in answers.items():
        if reason:
            log.error("billing: holding the events of %r: %s", ident, reason)
    state.pipeline.set_subscriptions(answers)
    metrics.HELD_SUBSCRIPTIONS.set(len(state.pipeline.held_subscriptions()))


async def recheck_held(state: ProxyState, timeout: float = 5.0) -> None:
    """Every minute: the held ids, and those of this process's letters held for a missing
    subscription (an event dead-lettered while its id was being released), asked again; the ones
    Lago has active now are released."""
    client = _client(state, timeout)
    if client is None or state.pipeline is None:
        return
    letters = await asyncio.to_thread(_held_letters, state)
    ids = set(state.pipeline.held_subscriptions()) | {ident for ident, _ in letters}
    if ids:
        await _release(state, client, ids)


async def started(state: ProxyState, ident: str, timeout: float = 5.0) -> None:
    """Lago says the subscription `ident` started (its webhook, here or relayed by another process):
    asked at once rather than at the next minute."""
    client = _client(state, timeout)
    if client is None or not ident:
        return
    await _release(state, client, {ident})


async def _release(state: ProxyState, client: LagoSubscriptions, ids: set[str]) -> None:
    pipeline = state.pipeline
    assert pipeline is not None
    active = await asyncio.to_thread(_active, client, ids)
    if not active:
        return
    pipeline.set_subscriptions({ident: "" for ident in active})
    metrics.HELD_SUBSCRIPTIONS.set(len(pipeline.held_subscriptions()))
    for ident in sorted(active):
        log.warning("billing: Lago has an active subscription for %r now; its events are sent", ident)
    await asyncio.to_thread(pipeline.flush, FLUSH_S)  # what the sender was dead-lettering for these ids is written
    await asyncio.to_thread(_replay, state, active)


def _active(client: LagoSubscriptions, ids: set[str]) -> dict[str, int | None]:
    """id -> when its subscription started (Unix ms; None: not given), for the ids Lago has active."""
    out: dict[str, int | None] = {}
    for ident in sorted(ids):
        try:
            found = client.find(ident)
        except LagoReadError as exc:
            log.warning("billing: could not re-check the Lago subscription of %r (its events stay held): %s",
                        ident, exc)
            continue
        if found is not None and found.get("status") == "active":
            out[ident] = started_ms(found)
    return out


def _held_letters(state: ProxyState) -> list[tuple[str, Letter]]:
    """(billed id, letter) of this process's slot, for the letters held because that id had no
    active subscription."""
    if state.spool_dir is None or state.billing is None:
        return []
    out = []
    for letter in DeadLetterBook(state.spool_base()).letters():
        ident = (letter.event or {}).get("external_subscription_id")
        if letter.file.parent == state.spool_dir and isinstance(ident, str) and letter.reason == missing_reason(ident):
            out.append((ident, letter))
    return out


def _timestamp_ms(event: dict[str, Any] | None) -> int | None:
    try:
        return int(Decimal(str((event or {})["timestamp"])) * 1000)
    except (KeyError, InvalidOperation, ValueError):
        return None


def _replay(state: ProxyState, active: dict[str, int | None]) -> None:
    """Sends this process's letters of the released ids, unless dated before their subscription started."""
    settings, pipeline = state.billing, state.pipeline
    if settings is None or pipeline is None:
        return
    with _REPLAYING:  # the second one finds the letters the first one sent gone
        _replay_letters(state, settings, pipeline, active)


def _replay_letters(state: ProxyState, settings: LagoSettings, pipeline: Pipeline,
                    active: dict[str, int | None]) -> None:
    sendable: list[Letter] = []
    early: dict[str, int] = {}
    for ident, letter in _held_letters(state):
        if ident not in active:
            continue
        start, at = active[ident], _timestamp_ms(letter.event)
        if start is not None and at is not None and at < start:
            early[ident] = early.get(ident, 0) + 1
        else:
            sendable.append(letter)
    for ident, count in sorted(early.items()):
        log.error("billing: %d held event(s) of %r are dated before its Lago subscription started: Lago would store "
                  "them and never bill them, so they stay dead letters (start the subscription earlier in Lago and "
                  "run `llmbill deadletters replay`, or drop them)", count, ident)
    if not sendable:
        return
    outcomes = replay(DeadLetterBook(state.spool_base()), sendable, pipeline, settings)
    sent = sum(1 for o in outcomes if o.sent)
    for outcome in outcomes:
        if outcome.refused:
            log.error("billing: a held event was not replayed: %s", outcome.refused)
    log.warning("billing: replayed %d held event(s) of %s", sent, ", ".join(sorted(active)))


_KIND_OF = {"end_user_id": "customer", "team_id": "team", "user_id": "user"}


def provision_created(state: ProxyState, kind: str, ident: str) -> None:
    """A customer, team or user just created through the API, with LAGO_AUTO_PROVISION_PLAN and when
    it is the kind billed: its Lago customer and subscription, made behind the reply (its first
    call then finds them; if this fails, the gate asks again at that call)."""
    settings = state.billing
    if settings is None or not settings.provision_plan or _KIND_OF.get(settings.charge_by) != kind:
        return
    client = _client(state, 5.0)
    pipeline = state.pipeline
    if client is None or pipeline is None:
        return
    plan = settings.provision_plan

    async def work() -> None:
        answers = await asyncio.to_thread(decide, client, {ident: int(time.time() * 1000)}, plan)
        pipeline.set_subscriptions(answers)

    state.run_in_background(work())
