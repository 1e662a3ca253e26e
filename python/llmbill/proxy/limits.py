"""Per-entity limits on the request path, in this process's memory: reservations of an upper-bound
cost for calls in flight, requests and tokens per minute, and parallel requests.

The overspend bound. A call is admitted only while spend + reserved < max_budget for every entity on
it, and reserves an upper bound of its own cost (upper_bound.py) until it settles. So within one
process the final spend stays below max_budget + the upper-bound cost of one call. With R processes
sharing a database the bound is R such calls, plus what the other processes spent in the last
cache refresh interval (1 s by default) before a process saw it.

Rate windows are fixed minutes (UTC), counted per process; `tpd_limit` counts tokens per UTC day the
same way. Per-model limits use the same counters under a per-model entity (`per_model`). Spend per
model for per-model budgets: model_spend.py. An entity's minute is dropped once a later minute has
begun (at the first call of each new minute, in one pass), and its day once a later day has, so
memory follows the entities active lately, not every customer id ever seen; reservations and
in-flight counts are dropped when they reach zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

from .model_spend import ModelSpend


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
