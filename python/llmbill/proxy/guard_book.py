"""The guard book's proxy side (cpp/include/llmbill/guard_book.hpp): a plain call admitted in one
step with the core — each of its entities' slot built from its compiled limits and spend and taken in
the limiter — where guards.py's plan would take ~15 Python steps (bench/README.md, "Step 2 sized by
taking it out": 0.05 ms of a call at concurrency 1).

A call is plain when no limit it meets is one the book does not check: it runs in this process's
limiter (no Redis), no margin is configured, its model has a price and, of its entities (key, user,
team, customer), none is blocked, pays with prepaid credits or asks for them, has a margin or a
budget finer than the core's unit, a per-model limit on this model or — a customer — a list of
models without it, or — a team — limits on this key's user as a member. And no spend flush is
writing: the ledger then holds everything spent here and not yet in the records. Anything else goes
the slow way (guards.py), against the same limiter, which also words every refusal: for a call a
limit refuses the book holds nothing and says so, and the plan, run at once on the same state,
refuses it.

The entries are compiled here from the records — `entity_limits` reads a record's limits, as for the
plan — and stamped with the record cache's generation (cache.py), so an entry never outlives the
record, tier or spend it was made from: the book answers "stale" and the call's entities are
compiled again. With LLMBILL_GUARDS_ORACLE=1 (the test suite sets it) every call the book admits is
planned the slow way too and their slots compared: the book must decide what the plan decides.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .auth import Principal
from .call_margin import at_cost
from .credits import calls as credits
from .entity_limits import entity_limits, member_entry, temp_increase
from .limits import money_units
from .upper_bound import UpperBound

if TYPE_CHECKING:
    from .state import ProxyState

ORACLE = os.environ.get("LLMBILL_GUARDS_ORACLE") == "1"
SLOW, STALE, REFUSED = 0, -1, -2  # what GuardBook.admit answers besides a handle

Entities = list[tuple[tuple[str, str], dict[str, Any] | None]]


def exact_units(amount: Any) -> int | None:
    """An amount in the core's units when it is a whole number of them (else the entity is not plain)."""
    value = Decimal(amount)
    up = money_units(value, up=True)
    return up if up == money_units(value, up=False) else None


def _timestamp(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _members_with_limits(team: Mapping[str, Any] | None) -> list[str]:
    """The users whose first entry in the team has a budget or rate limits (guards.entities_of's member)."""
    seen: set[str] = set()
    limited: list[str] = []
    for m in (team or {}).get("members_with_roles") or []:
        user = m.get("user_id")
        if not user or user in seen:
            continue
        seen.add(user)
        if member_entry(team, m) is not None:
            limited.append(user)
    return limited


def put(state: ProxyState, kind: str, ident: str, record: dict[str, Any] | None, generation: int) -> None:
    """One entity's entry, compiled from its record as the plan reads it."""
    r = record or {}
    limits = entity_limits(state.cache, state.config.max_end_user_budget_id, kind, record)
    plain = not r.get("blocked") and not (kind in ("customer", "team") and r.get("credits") == "lago")
    if kind == "customer":
        plain = plain and at_cost(state, ident)
    gate = state.credits
    if gate is not None and kind == gate.payer_kind:  # it pays this call with prepaid credits: held the slow way
        plain = plain and not credits.apply_to(state, ident)
    max_budget = None
    if limits.max_budget is not None:
        max_budget = exact_units(limits.max_budget)
        plain = plain and max_budget is not None
    held = state.cache.get(kind, ident)  # the stored spend as SpendTracker.spend reads it
    stored = exact_units(((held if held is not None else record) or {}).get("spend", 0))
    plain = plain and stored is not None
    valid_until = None
    if kind == "key" and limits.max_budget is not None and temp_increase(r):
        valid_until = _timestamp(r.get("temp_budget_expiry"))
    limited = sorted({*limits.model_max_budget, *limits.model_rpm, *limits.model_tpm})
    allowed = r.get("models") if kind == "customer" and r.get("models") else None
    state.guard_book.put(kind, ident, generation, max_budget, stored or 0, _timestamp(r.get("budget_reset_at")),
                         bool(limits.budget_duration), limits.rpm, limits.tpm, limits.parallel, limits.tpd,
                         valid_until, plain, limited, list(allowed) if allowed is not None else None,
                         _members_with_limits(record) if kind == "team" else [])


def admit(state: ProxyState, principal: Principal, customer: str, bound: UpperBound, model: str,
          entities: Callable[[], Entities]) -> int:
    """The call's handle in the book when it is plain and admitted; SLOW: the plan decides; REFUSED:
    a limit refuses it (the plan, on the same state, refuses it and says why). `entities`: the
    call's entities (guards.entities_of), for compiling them when the book's entries are stale."""
    spend = state.spend
    if (bound.units is None or state.redis is not None or spend.writing or spend.unwritten
            or state.config.margins.configured):
        return SLOW
    key = principal.key
    user, team = (key.get("user_id") or "", key.get("team_id") or "") if key is not None else ("", "")
    token = principal.token_hash if key is not None else ""
    book, now = state.guard_book, time.time()
    handle = book.admit(token, user, team, customer, model, bound.units, now, state.cache.generation)
    if handle == STALE:
        generation = state.cache.generation
        for (kind, ident), record in entities():
            if kind != "member":  # a member with limits makes the call slow (its team's entry says so)
                put(state, kind, ident, record, generation)
        handle = book.admit(token, user, team, customer, model, bound.units, now, generation)
    return handle
