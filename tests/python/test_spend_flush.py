"""Spend stays visible while a flush writes it: drained from the in-memory ledger and not yet in the
cached records, it must still count for budgets and /key/info (a race the end-to-end tests hit)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from llmbill import _core
from llmbill.proxy.cache import EntityCache
from llmbill.proxy.spend import SpendTracker
from llmbill.proxy.store import SpendBatch, SpendLog, open_store

MOMENT = datetime(2026, 8, 6, tzinfo=timezone.utc)


def test_spend_being_written_still_counts_and_a_failed_write_is_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        await store.insert("key", {"token_hash": "k1"})
        cache = EntityCache(store)
        await cache.load()
        tracker = SpendTracker(store, cache)
        writing, release = asyncio.Event(), asyncio.Event()
        real_apply = store.apply_spend
        failures = [False, True]

        async def slow_apply(batch: SpendBatch) -> None:
            writing.set()
            await release.wait()
            if failures.pop():
                raise OSError("disk full")
            await real_apply(batch)

        store.apply_spend = slow_apply  # type: ignore[method-assign]
        usage = _core.Usage(prompt_tokens=1000, completion_tokens=100)
        cost = _core.PriceTable.from_json(['{"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}']
                                          ).cost("m", usage)
        log = SpendLog("r1", "chat_completion", "m", "k1", "", "", "", cost.total, 1000, 100, 0, 0, MOMENT, MOMENT,
                       "success")
        tracker.record(usage, cost, log, model="m")
        assert tracker.spend("key", "k1") == Decimal("0.0012")
        for expect_ok in (False, True):  # a failed write, then its retry
            writing.clear()
            release.clear()
            flush = asyncio.create_task(tracker.flush())
            await writing.wait()
            assert tracker.spend("key", "k1") == Decimal("0.0012")  # mid-write: neither lost nor doubled
            release.set()
            assert await flush is expect_ok
            assert tracker.spend("key", "k1") == Decimal("0.0012")
        assert (await store.get("key", "k1"))["spend"] == Decimal("0.0012")  # type: ignore[index]
        await store.close()

    asyncio.run(scenario())
