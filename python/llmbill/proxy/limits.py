"""Per-entity limits on the request path, in this process's memory: reservations of an upper-bound
cost for calls in flight, requests and tokens per minute, and parallel requests.

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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from .model_spend import ModelSpend


Entity = tuple[str, str]


@dataclass(slots=True)
class Slot:
    """One entity's share of a call: refused when what calls in flight hold reaches `headroom`
    (max_budget − spend; None: no budget) or a rate limit is reached; holds `amount` until released.
    Not frozen: made once an entity a call, and a frozen dataclass's __init__ costs ~3x (each field
    set through object.__setattr__); never changed once made."""

    entity: Entity
    amount: Decimal = Decimal(0)
    headroom: Decimal | None = None
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None
    tpd: int | None = None


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


@dataclass
class _Minute:
    minute: int = -1
    requests: int = 0
    tokens: int = 0


@dataclass
class Limiter:
    reserved: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    inflight: dict[tuple[str, str], int] = field(default_factory=dict)
    minutes: dict[tuple[str, str], _Minute] = field(default_factory=dict)
    pruned_at: int = -1  # the minute whose first call last swept out the older minutes
    days: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # entity → (UTC day, tokens)
    pruned_day: int = -1  # the UTC day whose first count last swept out the older days
    model_spend: ModelSpend = field(default_factory=ModelSpend)

    def reserved_for(self, entity: tuple[str, str]) -> Decimal:
        return self.reserved.get(entity, Decimal(0))

    def _minute(self, entity: tuple[str, str], now: float) -> _Minute:
        current = int(now // 60)
        if current > self.pruned_at:
            self.pruned_at = current
            self.minutes = {e: m for e, m in self.minutes.items() if m.minute >= current}
        m = self.minutes.get(entity)
        if m is None or m.minute != current:
            m = self.minutes[entity] = _Minute(current)
        return m

    def count_request(self, entity: tuple[str, str], now: float | None = None) -> None:
        """One request in the entity's minute (a deployment's own rpm)."""
        self._minute(entity, time.time() if now is None else now).requests += 1

    def count_tokens(self, entity: tuple[str, str], tokens: int, now: float | None = None) -> None:
        """Tokens in the entity's minute (a deployment's own tpm)."""
        self._minute(entity, time.time() if now is None else now).tokens += tokens

    def rate_check(self, entity: tuple[str, str], rpm: int | None, tpm: int | None, parallel: int | None,
                   now: float | None = None) -> tuple[str, float] | None:
        """None when the entity may make one more request; else (which limit, seconds to wait)."""
        now = time.time() if now is None else now
        m = self._minute(entity, now)
        wait = 60 - (now % 60)
        if rpm is not None and m.requests >= rpm:
            return f"rpm limit {rpm}", wait
        if tpm is not None and m.tokens >= tpm:
            return f"tpm limit {tpm}", wait
        if parallel is not None and self.inflight.get(entity, 0) >= parallel:
            return f"max_parallel_requests {parallel}", 1.0
        return None

    def admit(self, entity: tuple[str, str], upper_bound: Decimal, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._minute(entity, now).requests += 1
        self.inflight[entity] = self.inflight.get(entity, 0) + 1
        if upper_bound:
            self.reserved[entity] = self.reserved_for(entity) + upper_bound

    def release(self, entity: tuple[str, str], upper_bound: Decimal, tokens: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._minute(entity, now).tokens += tokens
        left = self.inflight.get(entity, 1) - 1
        if left:
            self.inflight[entity] = left
        else:
            self.inflight.pop(entity, None)
        if upper_bound:
            rest = self.reserved_for(entity) - upper_bound
            if rest > 0:
                self.reserved[entity] = rest
            else:
                self.reserved.pop(entity, None)

    def try_admit(self, slots: Sequence[Slot], now: float | None = None) -> Refusal | None:
        """Checks every slot, then takes all of them (no await: one step for the event loop) or none."""
        now = time.time() if now is None else now
        for i, slot in enumerate(slots):
            reserved = self.reserved_for(slot.entity)
            if slot.headroom is not None and reserved >= slot.headroom:
                return Refusal(i, "budget", reserved, 0.0)
            if slot.rpm is None and slot.tpm is None and slot.parallel is None:
                refused = None  # no rate limit to check (the common slot): its minute is counted by admit()
            else:
                refused = self.rate_check(slot.entity, slot.rpm, slot.tpm, slot.parallel, now)
            if refused is not None:
                what = refused[0]
                kind = "parallel" if what.startswith("max_parallel") else what.split()[0]
                return Refusal(i, kind, reserved, refused[1])
            if slot.tpd is not None and self.day_tokens(slot.entity, now) >= slot.tpd:
                return Refusal(i, "tpd", reserved, 86400 - now % 86400)
        for slot in slots:
            self.admit(slot.entity, slot.amount, now)
        return None

    def release_slots(self, slots: Sequence[Slot], tokens: int, now: float | None = None) -> None:
        now = time.time() if now is None else now  # one clock read for every slot of the call
        for slot in slots:
            self.release(slot.entity, slot.amount, tokens, now)
            if slot.tpd is not None:
                self.add_day_tokens(slot.entity, tokens, now)

    def day_tokens(self, entity: tuple[str, str], now: float | None = None) -> int:
        day, tokens = self.days.get(entity, (-1, 0))
        return tokens if day == int((time.time() if now is None else now) // 86400) else 0

    def add_day_tokens(self, entity: tuple[str, str], tokens: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        today = int(now // 86400)
        if today > self.pruned_day:  # yesterday's counts are over: memory follows today's entities
            self.pruned_day = today
            self.days = {e: d for e, d in self.days.items() if d[0] >= today}
        self.days[entity] = (today, self.day_tokens(entity, now) + tokens)


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
