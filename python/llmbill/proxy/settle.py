"""Settle: the one place a proxy call is billed, whatever its route or provider — cost, the ledger,
the Lago event (spooled before the reply) and the spend log row in one step with the core
(`core.settle_call`, which builds the event as the library's callbacks do and the row as the line the
journal and the spend flush take: store/log_line.py), the row journaled now (written behind the
reply), the reservation released, webhooks, metrics. A call with a discount or margin (margin.py)
is priced here first, its billed amount recorded and its event spooled by `llmbill.settle`. Called
exactly once per successful call; a failed call never reaches it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson

from .. import settle as billing_rules
from .._native import core
from ..calls import BilledCall, billed_call, call_start_us, call_timestamp_ms
from . import observe
from . import webhook as hooks
from .call import Call
from .credits.charge import charge_of
from .call_margin import billed_amount, margined
from .guards import limits_of, window_spend
from .routing import deployment_entity
from .state import ProxyState
from .store.base import SpendLog
from .store.log_line import LineLog

log = logging.getLogger("llmbill.proxy")


Who = tuple[int, str, str, str]  # the event's timestamp (ms), the key's alias, user and team


def _who(call: Call) -> Who:
    key = call.principal.key or {}
    return (call_timestamp_ms(call.start_wall), key.get("key_alias") or "", key.get("user_id") or "",
            key.get("team_id") or "")


def _record(call: Call, usage: core.Usage, who: Who, detail: core.Cost | None,
            amount: Decimal | None) -> BilledCall:
    """The call's record at `detail` (None: unpriced, cost 0, flagged), billed `amount` when a margin applies."""
    stamp, alias, user, team = who
    return billed_call(call_id=call.call_id, timestamp_ms=stamp, model=call.model, usage=usage,
                       cost=detail.total if detail is not None else Decimal(0), cost_detail=detail,
                       unpriced=detail is None, key_alias=alias, user_id=user, team_id=team,
                       end_user_id=call.customer, billed_amount=amount)


def priced(call: Call, usage: core.Usage) -> BilledCall:
    """The call's record, priced by its deployment (None: unpriced, cost 0, flagged)."""
    price = call.price
    detail = price.cost(usage) if price is not None else None
    return _record(call, usage, _who(call), detail,
                   billed_amount(call, detail.total if detail is not None else Decimal(0)))


def spend_log(call: Call, billed: BilledCall) -> SpendLog:
    usage = billed.usage
    meta: dict[str, Any] = {}
    if billed.unpriced:
        meta["unpriced"] = True
    if usage.estimated:
        meta["estimated"] = True
    if billed.billed_amount is not None:
        # The row's spend is what the customer pays; the provider's cost (the event's response_cost) is kept here.
        meta["response_cost"] = format(billed.cost, "f")
    # What the Lago event carries beyond the row's columns, so reconcile rebuilds it exactly.
    if billed.key_alias:
        meta["key_alias"] = billed.key_alias
    if usage.cache_creation_tokens:
        meta["cache_creation_tokens"] = usage.cache_creation_tokens
    if usage.cache_creation_1h_tokens:
        meta["cache_creation_1h_tokens"] = usage.cache_creation_1h_tokens
    if call.admission.tags:
        meta["tags"] = list(call.admission.tags)
    return SpendLog(
        request_id=billed.call_id, call_type=call.call_type, model=billed.model, api_key=call.principal.token_hash,
        user=billed.user_id, team_id=billed.team_id, end_user=billed.end_user_id, spend=billed.billed,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens, reasoning_tokens=usage.reasoning_tokens, start_time=call.start_wall,
        end_time=datetime.now(timezone.utc), status="success", metadata=meta, response_id=call.response_id)


def settle(call: Call, usage: core.Usage) -> Decimal:
    """Bills the call once: ledger and spend log (persisted behind the reply) and Lago (spooled now)."""
    state = call.state
    before = _limit_spends(call) if state.webhook is not None else None
    billed: BilledCall | None = None  # the call's record, made here only when a margin or a credit needs it
    if not call.admission.at_cost and margined(call):
        billed = priced(call, usage)  # with its billed amount: spend and budgets count what the customer pays
        row = spend_log(call, billed)
        state.spend.record(usage, billed.billed_amount, row, model=call.model)
        spool_error = _spool(state, billed)
        cost, detail = billed.billed, billed.cost_detail
    else:  # billed at cost: priced, in the ledger, spooled and its row made by the core in one step
        detail, cost, spool_error, row = _settle_in_core(call, usage)
    if state.spend.journal is not None:
        try:
            state.spend.journal.append(row)  # before the reply: a kill -9 now cannot lose this spend
        except OSError as exc:
            log.error("spend of call %s not journaled (kept in memory until the next flush): %s", call.call_id, exc)
    if call.admission.credit is not None:
        if billed is None:
            billed = _record(call, usage, _who(call), detail, None)
        call.admission.credit.settle(charge_of(billed))  # the hold's rest comes back
    call.admission.release(usage.total_tokens, cost, call.call_id, call.start_wall)
    if call.d.tpm is not None:  # the deployment's own tpm (routing.py): a saturated one is skipped
        state.limiter.count_tokens(deployment_entity(call.d), usage.total_tokens)
    if before is not None:
        _notify(call, cost, before)
    if spool_error:  # spool full or unwritable: the spend log keeps the call for reconcile
        log.error("billing event for call %s not spooled: %s", call.call_id, spool_error)
    observe.note_settled(call, usage, cost)
    return cost


def _settle_in_core(call: Call, usage: core.Usage) -> tuple[core.Cost | None, Decimal, str, SpendLog]:
    """core.settle_call: (the itemised cost or None when unpriced, the cost, why the event was not
    spooled or "", the spend-log row as its line)."""
    state = call.state
    start_us = call_start_us(call.start_wall)  # // 1000: the event's timestamp (calls.call_timestamp_ms)
    key = call.principal.key or {}
    user, team = key.get("user_id") or "", key.get("team_id") or ""
    tags = call.admission.tags
    detail, spool_error, line = core.settle_call(
        state.spend.ledger, state.pipeline, call.price, usage, call.call_id, start_us // 1000, call.model,
        call.principal.token_hash, key.get("key_alias") or "", user, team, call.customer, call.call_type, start_us,
        call.response_id, orjson.dumps(list(tags)).decode() if tags else "")
    assert line is not None  # asked for by call_type
    cost = detail.total if detail is not None else Decimal(0)
    row = LineLog(line)
    state.spend.note_settled(row, cost, user, team)  # the core's ledger has the call already
    return detail, cost, spool_error, row


def _spool(state: ProxyState, billed: BilledCall) -> str:
    """A margined call's Lago event(s), spooled by llmbill.settle; why not, when the spool refused."""
    if state.pipeline is None:
        return ""
    try:
        billing_rules.spool(state.pipeline, billed)
    except core.Error as exc:
        return str(exc)
    return ""


def _limit_spends(call: Call) -> dict[tuple[str, str], Decimal]:
    return {entity: window_spend(call.state, entity[0], entity[1], record)
            for entity, record in call.admission.entities if entity[0] != "member"}


def _notify(call: Call, cost: Decimal, before: dict[tuple[str, str], Decimal]) -> None:
    """spend_tracked for a customer call; soft_budget_crossed / budget_crossed for any entity."""
    state = call.state
    hook = state.webhook
    assert hook is not None
    key = call.principal.key or {}
    user = state.cache.get("user", key["user_id"]) if key.get("user_id") else None
    who: dict[str, Any] = {"token": call.principal.token_hash, "customer": call.customer,
                           "user_id": key.get("user_id") or "", "team_id": key.get("team_id") or "",
                           "user_email": (user or {}).get("user_email"), "key_alias": key.get("key_alias")}
    for (kind, ident), record in call.admission.entities:
        if kind == "member":
            continue
        limits = limits_of(state, kind, record)
        old, new = before[(kind, ident)], before[(kind, ident)] + cost
        for event, limit in (("soft_budget_crossed", limits.soft_budget), ("budget_crossed", limits.max_budget)):
            if limit is not None and old < limit <= new:
                hook.emit(hooks.crossed(event=event, group=kind, ident=ident, spend=new, limit=limit, **who))
    if call.customer:
        record = state.cache.get("customer", call.customer)
        hook.emit(hooks.spend_tracked(
            cost=cost, total_spend=before[("customer", call.customer)] + cost,
            max_budget=limits_of(state, "customer", record).max_budget, **who))
