"""Per-entity limits on the request path, in this process's memory: reservations of an upper-bound
cost for calls in flight, requests and tokens per minute, and parallel requests — counted by the
core's limiter (cpp/include/llmbill/limiter.hpp), which the guard book (guards.py's plain calls)
checks in the same step, so that both ways of admitting a call hold against one set of counts.

The overspend bound. A call is admitted only while spend + reserved < max_budget for every entity on
it, and reserves an upper bound of its own cost (upper_bound.py) until it settles. So within one
process the final spend stays below max_budget + the upper-bound cost of one call. With R processes
sharing a database and no Redis the bound is R such calls, plus what the other processes spent in the
last cache refresh interval (1 s by default) before a process saw it; with Redis (redis_limits.py)
the reservations are shared, so it is one call again (see there).

The interface both implementations offer (`SharedLimits`): `admit(slots)` checks every slot of a call
and takes all of them or none, `release(slots, tokens)` gives them back. A slot is one entity's share
of a call: what it checks (budget headroom, rpm, tpm, parallel, tpd) and what it holds (an amount).

Rate windows are fixed minutes (UTC), counted per process; `tpd_limit` counts tokens per UTC day the
same way. Per-model limits use the same counters under a per-model entity (`per_model`). Spend per
model for per-model budgets: model_spend.py. An entity's minute is dropped once a later minute has
begun (at the first call of each new minute, in one pass), and its day once a later day has, so
memory follows the entities active lately, not every customer id ever seen; reservations and
in-flight counts are dropped when they reach zero.
"""

from __future__ import annotations

import decimal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from .._native import core
from .model_spend import ModelSpend


Entity = tuple[str, str]


@dataclass(slots=True)
class Slot:
    """One entity's share of a call: refused when what calls in flight hold reaches `headroom`
    (max_budget − spend; None: no budget) or a rate limit is reached; holds `amount` until released.
    Not frozen: made once an entity a call, and a frozen dataclass's __init__ costs ~3x (each field
    set through object.__setattr__); never changed once made, except `core`: the slot as the core's
    limiter takes it, made at admission and used again at release."""

    entity: Entity
    amount: Decimal = Decimal(0)
    headroom: Decimal | None = None
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None
    tpd: int | None = None
    core: core.LimitSlot | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: the first slot (in the call's order) over a limit."""

    index: int
    limit: str  # "budget", "rpm", "tpm", "parallel" or "tpd"
    reserved: Decimal  # what calls in flight held on that slot's entity
    wait: float  # seconds until the limit may let a call through


class SharedLimits(Protocol):
    """Where a call's slots are checked and held: this process (Limiter) or Redis (RedisLimiter)."""

    async def admit(self, call_id: str, slots: Sequence[Slot]) -> Refusal | None: ...

    def release(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal = Decimal(0)) -> None:
        """`cost`: what a settled call cost (0: failed) — Redis holds it until the database shows it."""


def refusal_message(limit: str, slot: Slot) -> str:
    """The limit's name as a 429 names it ("rpm limit 10", "max_parallel_requests 2")."""
    value = {"rpm": slot.rpm, "tpm": slot.tpm, "parallel": slot.parallel, "tpd": slot.tpd}.get(limit)
    return f"max_parallel_requests {value}" if limit == "parallel" else f"{limit} limit {value}"


# Exact conversions to the core's units (1e-19 USD) for any amount a slot carries (28 digits, the
# default context, would round a budget's headroom past ~1e9 USD).
_EXACT = decimal.Context(prec=80)


def money_units(amount: Decimal, *, up: bool) -> int:
    """USD → integer units of 1e-19 USD; a finer amount is rounded towards refusing (an amount held
    up, a headroom down), so the limiter never lets through what the exact figure would not."""
    scaled = amount.scaleb(core.MONEY_DECIMALS, _EXACT)
    whole = int(scaled)
    if whole == scaled:
        return whole
    return int(scaled.to_integral_value(decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR))


def usd_of_units(units: int) -> Decimal:
    """Units of 1e-19 USD → USD, written as the core writes money (0.0025, 100: no exponent)."""
    return core.units_to_usd(units)


def entity_key(entity: Entity) -> str:
    """An entity as the core's limiter and guard book name it: kind, a unit separator, id."""
    return f"{entity[0]}\x1f{entity[1]}"


def core_slot(slot: Slot) -> core.LimitSlot:
    """A Slot as the core's limiter takes it (amounts in its units, rounded towards refusing)."""
    if slot.core is None:
        headroom = None if slot.headroom is None else money_units(slot.headroom, up=False)
        slot.core = (entity_key(slot.entity), money_units(slot.amount, up=True), headroom, slot.rpm, slot.tpm,
                     slot.parallel, slot.tpd)
    return slot.core


class Limiter:
    """This process's limiter (the core's: llmbill/limiter.hpp, which the guard book checks a plain
    call against in the same step), taking Slots; and the per-model spend the budgets read."""

    def __init__(self) -> None:
        self.core = core.Limiter()
        self.model_spend = ModelSpend()

    def try_admit(self, slots: Sequence[Slot], now: float | None = None) -> Refusal | None:
        """Checks every slot, then takes all of them (one step for the event loop) or none."""
        refused = self.core.try_admit([core_slot(s) for s in slots], time.time() if now is None else now)
        return None if refused is None else Refusal(refused[0], refused[1], usd_of_units(refused[2]), refused[3])

    def release_slots(self, slots: Sequence[Slot], tokens: int, now: float | None = None) -> None:
        self.core.release([core_slot(s) for s in slots], tokens, time.time() if now is None else now)

    def rate_check(self, entity: Entity, rpm: int | None, tpm: int | None, parallel: int | None,
                   now: float | None = None) -> tuple[str, float] | None:
        """None when the entity may make one more request; else (which limit, seconds to wait)."""
        refused = self.core.rate_check(entity_key(entity), rpm, tpm, parallel, time.time() if now is None else now)
        if refused is None:
            return None
        limit, wait = refused
        value = {"rpm": rpm, "tpm": tpm, "parallel": parallel}[limit]
        return (f"max_parallel_requests {value}" if limit == "parallel" else f"{limit} limit {value}"), wait

    def count_request(self, entity: Entity, now: float | None = None) -> None:
        """One request in the entity's minute (a deployment's own rpm)."""
        self.core.count_request(entity_key(entity), time.time() if now is None else now)

    def count_tokens(self, entity: Entity, tokens: int, now: float | None = None) -> None:
        """Tokens in the entity's minute (a deployment's own tpm)."""
        self.core.count_tokens(entity_key(entity), tokens, time.time() if now is None else now)

    def reserved_for(self, entity: Entity) -> Decimal:
        return usd_of_units(self.core.reserved_for(entity_key(entity)))

    def in_flight(self, entity: Entity) -> int:
        return self.core.in_flight(entity_key(entity))

    def minute_of(self, entity: Entity) -> tuple[int, int, int]:
        """(minute, requests, tokens) as last counted; minute -1 when none."""
        return self.core.minute_of(entity_key(entity))

    def day_tokens(self, entity: Entity, now: float | None = None) -> int:
        return self.core.day_tokens(entity_key(entity), time.time() if now is None else now)


def per_model(entity: tuple[str, str], model: str) -> tuple[str, str]:
    """The limiter entity of `entity`'s calls to one model (per-model rate limits and reservations)."""
    return f"{entity[0]}@model", f"{entity[1]}\x00{model}"


@dataclass
class InProcess:
    """SharedLimits in this process's memory: exact for one process, per process with several."""

    limiter: Limiter

    async def admit(self, call_id: str, slots: Sequence[Slot]) -> Refusal | None:
        return self.limiter.try_admit(slots)

    def release(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal = Decimal(0)) -> None:
        self.limiter.release_slots(slots, tokens)  # the cost is in this process's ledger already
