"""Spend tracking behind the reply: each call's exact cost goes into the C++ ledger at once (so
budgets see it), and a background flush writes the accumulated increments and the spend log rows to
the database in one transaction, every `spend_flush_interval` and at shutdown.

The spend a budget check sees = the record's spend as last read from the database + what this process
has recorded and not yet written. A failed write is kept and retried first on the next flush; a retry
refused as a duplicate was in fact applied by the attempt whose reply was lost, and is dropped.

Budget windows: the same loop starts each due window (store.reset_spend, which only one process wins)
before it writes new spend, so spend recorded within one flush interval before `budget_reset_at`
may count towards the new window (never towards both). Read-side checks reset at the exact instant
(guards.window_spend).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .._native import core
from .cache import EntityCache
from .durations import next_reset
from .store.base import KINDS, DuplicateError, SpendBatch, SpendLog, Store

log = logging.getLogger("llmbill.proxy")

PERSISTED = ("key", "user", "team", "customer")

# (kind, record) → the budget_duration that governs the record's window, or None.
DurationOf = Callable[[str, dict[str, Any]], str | None]


class SpendTracker:
    def __init__(self, store: Store, cache: EntityCache, timezone_name: str = "UTC") -> None:
        self.store = store
        self.cache = cache
        self.timezone = timezone_name
        self.ledger = core.Ledger()
        self.logs: list[SpendLog] = []
        self.unwritten: SpendBatch | None = None  # a batch whose write failed, retried first
        self.writing: SpendBatch | None = None  # the batch being written right now
        self.lock = asyncio.Lock()  # flush, resets and cache refresh never interleave
        self.flush_failures = 0
        self.duration_of: DurationOf = lambda kind, record: record.get("budget_duration")

    def record(self, usage: core.Usage, cost: core.Cost | None, log_row: SpendLog, *, model: str) -> None:
        # cost None: an unpriced model, counted in requests and tokens with no money.
        self.ledger.record(usage, cost, model=model, key=log_row.api_key, user=log_row.user,
                           team=log_row.team_id, customer=log_row.end_user)
        self.logs.append(log_row)

    def pending(self, kind: str, ident: str) -> Decimal:
        """Recorded here and not yet in the cached records: the ledger, the batch being written (it
        left the ledger before the write and joins the records only after it), a failed batch."""
        amount: Decimal = self.ledger.get(kind, ident).spend
        for batch in (self.writing, self.unwritten):
            if batch is not None:
                amount += batch.increments.get((kind, ident), Decimal(0))
        return amount

    def spend(self, kind: str, ident: str) -> Decimal:
        record = self.cache.get(kind, ident)
        base = record.get("spend", Decimal(0)) if record else Decimal(0)
        return Decimal(base) + self.pending(kind, ident)

    async def _write(self, batch: SpendBatch) -> bool:
        self.writing = batch  # still counted by pending() while the write is awaited
        try:
            await self.store.apply_spend(batch)
        except DuplicateError:
            log.warning("spend batch already applied by an earlier attempt; not applied twice")
        except Exception as exc:
            self.unwritten = batch
            self.flush_failures += 1
            log.error("spend flush failed (will retry): %s", exc)
            return False
        finally:
            self.writing = None
        # No await from here on: the amounts move from `writing` into the records in one step.
        for (kind, ident), amount in batch.increments.items():
            record = self.cache.get(kind, ident)
            if record is None and kind == "customer":
                record = {KINDS[kind]: ident, "spend": Decimal(0)}
                self.cache.put(kind, record)
            if record is not None:
                record["spend"] = Decimal(record.get("spend", 0)) + amount
        return True

    async def flush(self) -> bool:
        async with self.lock:
            await self._reset_due_windows()
            if self.unwritten is not None:
                retry, self.unwritten = self.unwritten, None
                if not await self._write(retry):
                    return False
            batch = SpendBatch()
            for kind, ident, totals in self.ledger.drain():
                if kind in PERSISTED and totals.spend_units:
                    batch.add(kind, ident, totals.spend)
            batch.logs.extend(self.logs)
            self.logs = []
            return await self._write(batch) if batch else True

    async def _reset_due_windows(self) -> None:
        now = datetime.now(timezone.utc)
        for kind in PERSISTED:
            for record in list(self.cache.all(kind)):
                duration = self.duration_of(kind, record)
                if not duration:
                    continue
                reset_at = record.get("budget_reset_at")
                ident = record[KINDS[kind]]
                if not isinstance(reset_at, datetime):
                    # A window that never started (a customer upserted by a call, on a tier): start it.
                    fields = {"budget_reset_at": next_reset(now, duration, self.timezone)}
                    updated = await self.store.update(kind, ident, fields)
                    if updated is not None:
                        self.cache.put(kind, updated)
                    continue
                if reset_at > now:
                    continue
                following = next_reset(reset_at, duration, self.timezone)
                while following <= now:
                    following = next_reset(following, duration, self.timezone)
                updated = await self.store.reset_spend(kind, ident, following)
                if updated is not None:
                    self.cache.put(kind, updated)

    async def refresh_cache(self) -> None:
        async with self.lock:
            await self.cache.load()

    async def run(self, interval: float, refresh_interval: float) -> None:
        """The background loop: flush often, reload the cache now and then."""
        since_refresh = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception as exc:
                log.error("spend flush loop: %s", exc)
            since_refresh += interval
            if since_refresh >= refresh_interval:
                since_refresh = 0.0
                try:
                    await self.refresh_cache()
                except Exception as exc:
                    log.error("cache refresh failed: %s", exc)
