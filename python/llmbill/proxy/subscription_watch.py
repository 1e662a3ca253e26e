"""The subscription gate's answers (LAGO_CHECK_SUBSCRIPTIONS, LAGO_AUTO_PROVISION_PLAN): for each
billed id the pipeline's sender waits on, ask Lago whether it has an active subscription with that
external_id, off the request path (the call was served and its event spooled already).

Active: its events are sent. Missing, with a provisioning plan: the customer and subscription are
created (started no later than the id's first event), then its events are sent. Missing without
one: its events are held as dead letters with the reason, loudly (log, readiness, /metrics, the
UI's pipeline panel), and re-checked every minute; once Lago has the subscription new events flow
again and `llmbill deadletters replay --all` sends the held ones. When Lago cannot be asked,
nothing is decided: the sender keeps waiting and the next tick asks again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..lago.reader import LagoReader, LagoReadError
from ..lago.subscriptions import LagoSubscriptions, missing_reason
from . import metrics

if TYPE_CHECKING:
    from .state import ProxyState

log = logging.getLogger("llmbill.proxy")


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
    """Releases the held ids Lago has an active subscription for now (every minute)."""
    client = _client(state, timeout)
    if client is None or state.pipeline is None:
        return
    held = state.pipeline.held_subscriptions()
    if not held:
        return
    answers = await asyncio.to_thread(decide, client, {i: 0 for i in held}, "")
    released = {ident: "" for ident, reason in answers.items() if not reason}
    for ident in sorted(released):
        log.warning("billing: Lago has a subscription for %r now; its new events are sent "
                    "(run `llmbill deadletters replay --all` for the held ones)", ident)
    state.pipeline.set_subscriptions(released)
    metrics.HELD_SUBSCRIPTIONS.set(len(state.pipeline.held_subscriptions()))


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
