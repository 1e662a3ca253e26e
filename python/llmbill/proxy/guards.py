"""The pre-call checks: may this caller use this model; is the key, its user, its team or the
customer blocked (from memory), over budget (counting what calls in flight have reserved) or over a
rate limit (the shared limits: this process's, or Redis's with several processes — limits.py). The first limit crossed, in the order key, user, team, customer, is named in the error
(with LiteLLM's message prefixes). An admitted call holds its reservation until it settles.

A plain call (guard_book.py: no Redis, credits, margins, per-model or member limits on it) is
checked and reserved by the core's guard book in one step; the plan below decides every other call,
and words every refusal, against the same limiter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .auth import Principal
from .credits import calls as credits
from .credits.gate import CreditHold
from .call_limits import (ModelLimit, SpendNotLoaded, call_tags, check_customer_models, load_model_spend,
                          model_exceeded_message, model_limit, window_of)
from .entity_limits import Limits, entity_limits, member_entry
from .errors import ProxyError, budget_exceeded, rate_limited
from .ids import check_id, header_id, new_id
from .model_access import Governing, governing, listed, refusing
from . import guard_book
from .limits import Refusal, Slot, core_slot, per_model, refusal_message
from .state import ProxyState
from .call_margin import at_cost, billed_bound
from .store.base import member_id
from .upper_bound import UpperBound

Entity = tuple[str, str]


def limits_of(state: ProxyState, kind: str, record: dict[str, Any] | None) -> Limits:
    """An entity's limits (entity_limits.py), with this proxy's default customer tier."""
    return entity_limits(state.cache, state.config.max_end_user_budget_id, kind, record)


def window_spend(state: ProxyState, kind: str, ident: str, record: dict[str, Any] | None,
                 now: datetime | None = None) -> Decimal:
    """Spend in the current budget window. Past `budget_reset_at` the stored spend belongs to the old
    window, so only what this process recorded since counts — the reset takes effect at that instant,
    whenever the background job gets to write it. A `budget_reset_at` left behind by a duration
    since removed (a record written before updates cleared it) starts no window: all spend counts."""
    reset_at = (record or {}).get("budget_reset_at")
    if (isinstance(reset_at, datetime) and (now or datetime.now(timezone.utc)) >= reset_at
            and limits_of(state, kind, record).budget_duration):
        return state.spend.pending(kind, ident)
    return state.spend.spend(kind, ident, record)


def _rules(state: ProxyState, key: dict[str, Any]) -> Governing:
    team = state.cache.get("team", key["team_id"]) if key.get("team_id") else None
    user = state.cache.get("user", key["user_id"]) if key.get("user_id") else None
    return governing(key, team, user)


def allowed_models(state: ProxyState, principal: Principal) -> list[str]:
    """The models this caller may call, as /v1/models lists them (model_access.py)."""
    if principal.key is None:
        return [n for n in state.config.model_names if n != "*"]
    return listed(state.config, _rules(state, principal.key))


def check_model_access(state: ProxyState, principal: Principal, model: str) -> None:
    """403 when a `models` list governing the key refuses `model`, typed by the list's owner as
    LiteLLM types it (key_model_access_denied, team_model_access_denied, user_model_access_denied)."""
    if principal.key is None:
        return
    rules = _rules(state, principal.key)
    kind = refusing(state.config, rules, model)
    if kind is not None:
        why = ("its user has no-default-models: only team models" if rules.denied_by
               else f"not in its {kind}'s models" if kind != "key" else "not in its models")
        allowed = listed(state.config, rules)
        raise ProxyError(403, f"this key may not call model {model!r} ({why}); it may call: "
                              f"{', '.join(allowed) or 'no model'}",
                         "key_model_access_denied" if kind == "key" or rules.denied_by else f"{kind}_model_access_denied",
                         "model")


def customer_id(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Headers x-litellm-customer-id / x-litellm-end-user-id, then body `user`, then metadata.user_id —
    each checked as an id (ids.py): a customer id is stored, indexed and billed, so a bad one is a 400."""
    for h in ("x-litellm-customer-id", "x-litellm-end-user-id"):
        if headers.get(h):
            return header_id(headers[h], h)
    user = body.get("user")
    if isinstance(user, str) and user:
        return check_id(user, "user")
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        return check_id(meta["user_id"], "metadata.user_id")
    return ""


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f")  # exact and plain: 0.000078, never 7.8e-05


def member_spend(state: ProxyState, team_id: str, user_id: str) -> Decimal:
    """A team member's spend in the team's current member-budget window: its own record, which every
    call of the user's keys in that team adds to (spend.py), plus what this process has not written yet."""
    ident = member_id(team_id, user_id)
    return window_spend(state, "member", ident, state.cache.get("member", ident))


def _budget_message(kind: str, ident: str, spend: Decimal, limit: Decimal, reserved: Decimal) -> str:
    held = f" (+{_fmt(reserved)} reserved by calls in flight)" if reserved else ""
    if kind == "member":
        team_id, _, user_id = ident.partition("/")
        return (f"Budget has been exceeded! Team={team_id} Member={user_id} Current cost: {_fmt(spend)}{held}, "
                f"Max budget in team: {_fmt(limit)}")
    if kind == "customer":
        return f"ExceededBudget: End User={ident} over budget. Spend={_fmt(spend)}{held}, Budget={_fmt(limit)}"
    if kind == "user":
        return f"ExceededBudget: User={ident} over budget. Spend={_fmt(spend)}{held}, Budget={_fmt(limit)}"
    if kind == "team":
        return f"Budget has been exceeded! Team={ident} Current cost: {_fmt(spend)}{held}, Max budget: {_fmt(limit)}"
    return f"Budget has been exceeded! Current cost: {_fmt(spend)}{held}, Max budget: {_fmt(limit)}"


@dataclass
class Admission:
    """A call let through: its reservations and slots, released once it settles or fails."""

    state: ProxyState
    entities: list[tuple[Entity, dict[str, Any] | None]]  # (none for a plain call while no webhook reads them)
    upper_bound: Decimal | None  # what it reserves; None for a plain call (the guard book holds its units)
    released: bool = False
    model_limits: tuple[ModelLimit, ...] = ()
    slots: tuple[Slot, ...] = ()  # what the call holds in the limiter (limits.py), released with it
    call_id: str = ""  # the limiter's name for the call's hold
    tags: tuple[str, ...] = ()  # written on the call's spend log
    credit: CreditHold | None = None  # the prepaid-credit hold (credits/gate.py); settle.py settles it
    at_cost: bool = False  # no discount or margin can apply (call_margin.at_cost): settle.py bills the cost
    handle: int = 0  # a plain call's in the guard book (guard_book.py), which holds its slots

    def release(self, tokens: int = 0, cost: Decimal | None = None, request_id: str = "",
                at: datetime | None = None) -> None:
        """Frees the reservations; a settled call passes its cost (per-model spend counts it)."""
        if not self.released:
            self.released = True
            if self.handle:
                self.state.guard_book.release(self.handle, tokens, time.time())
                return
            if self.credit is not None:
                self.credit.release()  # a no-op once settled; a failed call's hold comes back whole
            self.state.shared_limits.release(self.call_id, self.slots, tokens, cost or Decimal(0))
            for lim in self.model_limits:
                if cost and lim.max_budget is not None and at is not None:
                    self.state.limiter.model_spend.record(lim.pair, window_of(self.state, lim, at), request_id,
                                                          at, cost)


def entities_of(state: ProxyState, principal: Principal, customer: str) -> list[tuple[Entity, dict[str, Any] | None]]:
    out: list[tuple[Entity, dict[str, Any] | None]] = []
    key = principal.key
    if key is not None:
        out.append((("key", key["token_hash"]), state.cache.get("key", key["token_hash"]) or key))
        if key.get("user_id"):
            out.append((("user", key["user_id"]), state.cache.get("user", key["user_id"])))
        if key.get("team_id"):
            team = state.cache.get("team", key["team_id"])
            member = member_entry(team, next((m for m in (team or {}).get("members_with_roles") or []
                                              if key.get("user_id") and m.get("user_id") == key["user_id"]), None))
            if member is not None:  # with its budget or rate limits in the team
                out.append((("member", f"{key['team_id']}/{key['user_id']}"), member))
            out.append((("team", key["team_id"]), team))
    if customer:
        out.append((("customer", customer), state.cache.get("customer", customer)))
    return out


def unpriced_refused(model: str, why: str) -> ProxyError:
    return ProxyError(403, f"model {model!r} has no price, so {why}; the operator can price it "
                           "(litellm_params input_cost_per_token / output_cost_per_token, or "
                           "general_settings.unpriced_model_fallback)", "model_unpriced", "model")


def entities_unheld(state: ProxyState, principal: Principal, customer: str) -> dict[str, list[str]]:
    """What the checks read and memory does not hold fresh (the cache loads on demand): the customer,
    the key's user and team (authentication read them; again only when stale) and the member's spend.
    Empty (the common case): nothing to await."""
    key = principal.key or {}
    wanted: list[tuple[str, str | None]] = [("customer", customer), ("user", key.get("user_id")),
                                            ("team", key.get("team_id"))]
    if key.get("team_id") and key.get("user_id"):
        wanted.append(("member", member_id(key["team_id"], key["user_id"])))
    return state.cache.unheld(wanted)



async def admit_model(state: ProxyState, principal: Principal, customer: str, bound: UpperBound,
                      model: str, body: dict[str, Any] | None = None) -> Admission:
    """admit() for a call to `model`, against the shared limits (Redis when configured). A per-model
    budget this process has not read the spend of yet is read first (once per pair: then the checks
    run again). The body's `metadata.tags` join the key's and team's tags on the call's spend log."""
    if need := entities_unheld(state, principal, customer):
        await state.cache.read(need)
    handle = guard_book.admit(state, principal, customer, bound, model, lambda: entities_of(state, principal, customer))
    if handle > 0:
        return _plain_admission(state, principal, customer, bound, model, body, handle)
    payer = credits.payer(state, principal, customer)
    if payer is not None:
        await credits.prepare(payer)  # the payer's Lago wallets, read once
    for _ in range(4):  # key, user, team, customer: at most one pair each to read
        try:
            plan = _plan(state, principal, customer, bound, model)
            break
        except SpendNotLoaded as missing:
            await load_model_spend(state, missing.limits)
    else:
        plan = _plan(state, principal, customer, bound, model)
    refused = await state.shared_limits.admit(plan.admission.call_id, plan.admission.slots)
    if refused is not None:
        raise plan.refusal(refused)
    if handle == guard_book.REFUSED and guard_book.ORACLE:
        plan.admission.release()
        raise AssertionError(f"the guard book refused a call the plan admits: {plan.admission.slots}")
    if payer is not None:
        await _hold_credits(plan.admission, bound, payer)
    else:
        _refuse_credits_without_lago(plan.admission, principal, customer)
    plan.admission.tags = call_tags(state, principal, body)
    return plan.admission


def _plain_admission(state: ProxyState, principal: Principal, customer: str, bound: UpperBound, model: str,
                     body: dict[str, Any] | None, handle: int) -> Admission:
    """The Admission of a call the guard book admitted (guard_book.py), which holds its slots."""
    entities = entities_of(state, principal, customer) if state.webhook is not None else []  # settle's notices
    admission = Admission(state, entities, None, call_id=new_id(), at_cost=True, handle=handle)
    if guard_book.ORACLE:
        _check_plain(state, principal, customer, bound, model, handle)
    admission.tags = call_tags(state, principal, body)
    return admission


def _check_plain(state: ProxyState, principal: Principal, customer: str, bound: UpperBound, model: str,
                 handle: int) -> None:
    """LLMBILL_GUARDS_ORACLE: the plan, on the same state, must build the slots the book took."""
    plan = _plan(state, principal, customer, bound, model)
    planned = [core_slot(s) for s in plan.admission.slots]
    taken = state.guard_book.slots_of(handle)
    if not plan.admission.at_cost or planned != taken:
        raise AssertionError(f"the guard book admitted {taken}, the plan would take {planned} "
                             f"(at cost: {plan.admission.at_cost})")


async def _hold_credits(admission: Admission, bound: UpperBound, payer: credits.Payer) -> None:
    """The last check, once the limits have admitted the call: prepaid credits hold its upper bound
    (one step for the check and the hold); refused, the call gives back what it took."""
    assert admission.upper_bound is not None  # planned (a plain call holds no credits)
    try:
        admission.credit = await credits.hold(admission.state, admission.upper_bound, bound.unpriced, payer)
    except BaseException:
        admission.release()
        raise


def _refuse_credits_without_lago(admission: Admission, principal: Principal, customer: str) -> None:
    """No payer: the call holds no credits — unless it asks for them with no Lago to read (refused,
    giving back what it took)."""
    try:
        credits.refuse_without_lago(admission.state, principal, customer)
    except BaseException:
        admission.release()
        raise


async def admit(state: ProxyState, principal: Principal, customer: str, bound: UpperBound,
                model: str | None = None) -> Admission:
    """Reads the call's records, then checks every entity of the call and reserves for all of them in
    this process's limiter (no await between the check and the reservation, so they are one step for
    the event loop)."""
    if need := entities_unheld(state, principal, customer):
        await state.cache.read(need)
    plan = _plan(state, principal, customer, bound, model)
    refused = state.limiter.try_admit(plan.admission.slots)
    if refused is not None:
        raise plan.refusal(refused)
    payer = credits.payer(state, principal, customer)
    if payer is not None:
        await _hold_credits(plan.admission, bound, payer)
    else:
        _refuse_credits_without_lago(plan.admission, principal, customer)
    return plan.admission


@dataclass
class _Plan:
    """A call's slots, and for each what its refusal says."""

    admission: Admission
    reasons: list[tuple[Entity, dict[str, Any] | None, Decimal, Decimal | None, ModelLimit | None]]

    def refusal(self, refused: Refusal) -> ProxyError:
        slot = self.admission.slots[refused.index]
        (kind, ident), record, spend, max_budget, lim = self.reasons[refused.index]
        name = ident if kind != "key" else (record or {}).get("key_alias") or "key"
        if refused.limit == "budget":
            assert max_budget is not None
            if lim is not None:
                over = budget_exceeded(model_exceeded_message(lim, record, spend + refused.reserved))
                over.budget_kind = f"{kind}_model"
                return over
            over = budget_exceeded(_budget_message(kind, ident, spend, max_budget, refused.reserved),
                                   self.admission.state.config.budget_exceeded_status_code)
            over.budget_kind = kind
            return over
        what = refusal_message(refused.limit, slot)
        if refused.limit == "tpd":
            return rate_limited(f"{kind} {name} is over its {what}; retry tomorrow (UTC)", refused.wait)
        if lim is not None:
            return rate_limited(f"{kind} {name} is over its {what} for model {lim.model}; retry later", refused.wait)
        return rate_limited(f"{kind} {name} is over its {what}; retry later", refused.wait)


def _plan(state: ProxyState, principal: Principal, customer: str, bound: UpperBound, model: str | None) -> _Plan:
    """Every check that needs no limiter (blocked, unpriced, customer models, spend read), and the
    call's slots: each entity's, followed by its per-model one. An unpriced model has no upper
    bound, so a call to it is refused wherever a budget applies (and always under require_prices):
    it would spend nothing against the budget however much it used."""
    if bound.unpriced is not None and state.config.require_prices:
        raise unpriced_refused(bound.unpriced, "general_settings.require_prices refuses it")
    billed_at_cost = at_cost(state, customer)
    # Budgets count what is billed.
    upper_bound = bound.cost if billed_at_cost else billed_bound(state, model, customer, bound.cost)
    entities = entities_of(state, principal, customer)
    model_limits: list[ModelLimit] = []
    slots: list[Slot] = []
    reasons: list[tuple[Entity, dict[str, Any] | None, Decimal, Decimal | None, ModelLimit | None]] = []
    for (kind, ident), record in entities:
        if record is not None and record.get("blocked"):
            if kind == "customer":
                raise ProxyError(403, f"customer {ident} is blocked", "customer_blocked", "user")
            raise ProxyError(401, f"{kind} {ident} is blocked", "auth_error")
        limits = limits_of(state, kind, record)
        spend = Decimal(0)
        if limits.max_budget is not None:
            if bound.unpriced is not None:
                who = ident if kind != "key" else (record or {}).get("key_alias") or "key"
                raise unpriced_refused(bound.unpriced, f"its calls cannot count against the budget of {kind} {who}")
            if kind == "member" and principal.key is not None:
                spend = member_spend(state, principal.key["team_id"], principal.key["user_id"])
            else:
                spend = window_spend(state, kind, ident, record)
        headroom = None if limits.max_budget is None else limits.max_budget - spend
        is_member = kind == "member"
        slots.append(Slot((kind, ident), upper_bound, headroom, limits.rpm, limits.tpm, limits.parallel,
                          None if is_member else limits.tpd))
        reasons.append(((kind, ident), record, spend, limits.max_budget, None))
        if is_member or model is None:
            continue
        if kind == "customer":
            check_customer_models(record, ident, model)
        lim = model_limit((kind, ident), limits, model)
        if lim is None:
            continue
        model_spend = Decimal(0)
        if lim.max_budget is not None:
            if bound.unpriced is not None:
                raise unpriced_refused(bound.unpriced, f"its calls cannot count against the {model} budget "
                                                       f"of {kind} {ident if kind != 'key' else 'key'}")
            if not state.limiter.model_spend.loaded(lim.pair, window_of(state, lim)):
                raise SpendNotLoaded([lim])
            model_spend = state.limiter.model_spend.spend(lim.pair, window_of(state, lim))
        slots.append(Slot(per_model(lim.entity, lim.model), upper_bound if lim.max_budget is not None else Decimal(0),
                          None if lim.max_budget is None else lim.max_budget - model_spend, lim.rpm, lim.tpm))
        reasons.append(((kind, ident), record, model_spend, lim.max_budget, lim))
        model_limits.append(lim)
    admission = Admission(state, entities, upper_bound, model_limits=tuple(model_limits), slots=tuple(slots),
                          call_id=new_id(), at_cost=billed_at_cost)
    return _Plan(admission, reasons)
