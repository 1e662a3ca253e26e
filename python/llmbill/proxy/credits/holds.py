"""Open holds in this process: money set aside for calls in flight, per payer (LocalLedger's, and
RedisLedger's fallback while Redis is down under fail_open)."""

from __future__ import annotations

import itertools
from decimal import Decimal


class LocalHolds:
    """This process's holds, in memory. Check-and-take is one step because the event loop never
    switches between the gate's check and `take` (no await in between)."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[str, Decimal]] = {}
        self._totals: dict[str, Decimal] = {}
        self._ids = itertools.count(1)

    def take(self, payer: str, amount: Decimal) -> int:
        hold_id = next(self._ids)
        self._open[hold_id] = (payer, amount)
        self._totals[payer] = self._totals.get(payer, Decimal(0)) + amount
        return hold_id

    def drop(self, hold_id: int) -> Decimal:
        found = self._open.pop(hold_id, None)
        if found is None:
            return Decimal(0)
        payer, amount = found
        left = self._totals[payer] - amount
        if left:
            self._totals[payer] = left
        else:
            del self._totals[payer]  # memory follows the payers with calls in flight
        return amount

    def held(self, payer: str) -> Decimal:
        return self._totals.get(payer, Decimal(0))
