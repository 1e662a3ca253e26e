"""Spend tracking behind the reply: each call's exact cost goes into the C++ ledger at once (so
budgets see it), and a background flush writes the accumulated increments and the spend log rows to
the database in one transaction, every `spend_flush_interval` and at shutdown.

The spend a budget check sees = the record's spend as last read from the database + what this process
has recorded and not yet written. A failed write is kept and retried first on the next flush.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from .._native import core
from .cache import EntityCache
from .store.base import KINDS, SpendBatch, SpendLog, Store

log = logging.getLogger("llmbill.proxy")

PERSISTED = ("key", "user", "team", "customer")


class SpendTracker:
    def __init__(self, store: Store, cache: EntityCache) -> None:
        self.store = store
        self.cache = cache
        self.ledger = core.Ledger()
        self.logs: list[SpendLog] = []
        self.unwritten: SpendBatch | None = None  # a batch whose write failed, retried first
        self.lock = asyncio.Lock()  # flush and cache refresh never interleave
        self.flush_failures = 0

    def record(self, usage: core.Usage, cost: core.Cost | None, log_row: SpendLog, *, model: str) -> None:
        # cost None: an unpriced model, counted in requests and tokens with no money.
        self.ledger.record(usage, cost, model=model, key=log_row.api_key, user=log_row.user,
                           team=log_row.team_id, customer=log_row.end_user)
        self.logs.append(log_row)

    def pending(self, kind: str, ident: str) -> Decimal:
        amount: Decimal = self.ledger.get(kind, ident).spend
        if self.unwritten is not None:
            amount += self.unwritten.increments.get((kind, ident), Decimal(0))
        return amount

    def spend(self, kind: str, ident: str) -> Decimal:
        record = self.cache.get(kind, ident)
        base = record.get("spend", Decimal(0)) if record else Decimal(0)
        return Decimal(base) + self.pending(kind, ident)

    async def flush(self) -> bool:
        async with self.lock:
            batch = self.unwritten or SpendBatch()
            self.unwritten = None
            for kind, ident, totals in self.ledger.drain():
                if kind in PERSISTED and totals.spend_units:
                    batch.add(kind, ident, totals.spend)
            batch.logs.extend(self.logs)
            self.logs = []
            if not batch:
                return True
            # Counted as pending while it is written: drained from the ledger and not yet in the
            # cached records, it would otherwise be invisible to budgets and /key/info meanwhile.
            self.unwritten = batch
            try:
                await self.store.apply_spend(batch)
            except Exception as exc:  # keep it; the next flush retries it first
                self.flush_failures += 1
                log.error("spend flush failed (will retry): %s", exc)
                return False
            self.unwritten = None  # from here to the end no await: the records take it over at once
            for (kind, ident), amount in batch.increments.items():
                record = self.cache.get(kind, ident)
                if record is None and kind == "customer":
                    record = {KINDS[kind]: ident, "spend": Decimal(0), "blocked": False}
                    self.cache.put(kind, record)
                if record is not None:
                    record["spend"] = Decimal(record.get("spend", 0)) + amount
            return True

    async def refresh_cache(self) -> None:
        async with self.lock:
            await self.cache.load()

    async def run(self, interval: float, refresh_interval: float) -> None:
        """The background loop: flush often, reload the cache now and then."""
        since_refresh = 0.0
        while True:
            await asyncio.sleep(interval)
            await self.flush()
            since_refresh += interval
            if since_refresh >= refresh_interval:
                since_refresh = 0.0
                try:
                    await self.refresh_cache()
                except Exception as exc:
                    log.error("cache refresh failed: %s", exc)

