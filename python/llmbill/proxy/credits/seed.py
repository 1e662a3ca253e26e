"""Where a payer's unapplied usage starts: what Lago already has of it and has not invoiced.

A process that starts (or a Redis that lost the shared ledger) knows nothing of the calls settled
before, yet Lago has not applied them to the wallets until it invoices them. The durable record we
chose is Lago's own: `GET /customers/:id/current_usage` (the period's usage of our metric, priced as
the invoice will price it), read just before the wallets, once the process's spool has delivered
what it holds (a process killed with undelivered events recovers them at start: they reach Lago
before the first seed is read, or the read fails and the credits stay closed).

Why not the proxy's own spend log: it knows every call exactly, but not which of them Lago has
already invoiced (that needs the period boundary from Lago anyway), and summing a busy payer's rows
for the period at its first call costs a scan per payer and process; current_usage is one request,
in the money the wallets will actually be debited.

What it misses: an event Lago accepted but has not aggregated yet (real Lago aggregates behind the
reply, usually within a second), events other processes have not delivered yet (without Redis each
process only counts its own calls after its first read anyway), and usage of a previous period whose
invoice is still a draft (grace period). Reading current_usage before the wallets makes a period
ending in between count twice (refusing early), never zero times.

The shared tally in Redis is made only from a seed read after Redis was found without it (one read
earlier misses what other processes counted in the lost tally since), and counts on top of it the
calls settled after that read (credits/tally.py): hence the read's time, with the usage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from ...lago.reader import LagoReadError
from .reader import WalletReader

log = logging.getLogger("llmbill.proxy")


class Seeder:
    def __init__(self, reader: WalletReader, metric: str, currency: str,
                 drain: Callable[[], bool] | None = None, wall: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.metric = metric
        self.currency = currency
        self.drain = drain  # delivers the spool's backlog to Lago: True once it is all delivered
        self.wall = wall  # when the usage was read: a shared tally made from it counts what was settled after
        self._drained = False
        self._lock = asyncio.Lock()

    async def usage(self, payer: str, again: bool = False) -> Decimal:
        return (await self.seed(payer, again))[0]

    async def seed(self, payer: str, again: bool = False) -> tuple[Decimal, float]:
        """The payer's uninvoiced usage in Lago, and when it was read. The spool is drained first at
        the process's first seed (the backlog a restart recovered) and when `again` (the shared
        ledger is re-seeded: this process's own recent calls must be in Lago first)."""
        if self.drain is not None and (again or not self._drained):
            async with self._lock:
                if again or not self._drained:
                    if not await asyncio.to_thread(self.drain):
                        raise LagoReadError("the billing spool has events Lago has not received yet; the credits "
                                            "are checked once they are delivered")
                    self._drained = True
        read_at = self.wall()
        return await asyncio.to_thread(self.reader.current_usage, payer, self.metric, self.currency), read_at
