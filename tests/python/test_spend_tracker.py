"""SpendTracker in-process: spend stays whole while a flush is being written, and a failed write is
kept and retried without losing or doubling anything."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import llmbill
from llmbill.proxy.cache import EntityCache
from llmbill.proxy.spend import SpendTracker
from llmbill.proxy.store.base import SpendBatch, SpendLog
from llmbill.proxy.store.sqlite import SqliteStore


class SlowStore(SqliteStore):
    """A real SQLite store whose spend writes wait for a signal (or fail once when told to)."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.gate = asyncio.Event()
        self.fail_next = False

    async def apply_spend(self, batch: SpendBatch) -> None:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database went away")
        await super().apply_spend(batch)


def log_row(request_id: str, cost: Decimal) -> SpendLog:
    now = datetime.now(timezone.utc)
    return SpendLog(request_id=request_id, call_type="chat_completion", model="gpt-4o-mini", api_key="k",
                    user="", team_id="t", end_user="", spend=cost, prompt_tokens=7, completion_tokens=3,
                    cached_tokens=0, reasoning_tokens=0, start_time=now, end_time=now, status="success")


def test_spend_is_whole_during_a_flush_and_after_a_failed_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SlowStore(tmp_path / "db.sqlite")
        await store.open()
        await store.insert("team", {"team_id": "t"})
        await store.insert("key", {"token_hash": "k", "team_id": "t"})
        cache = EntityCache(store)
        await cache.load()
        tracker = SpendTracker(store, cache)
        usage = llmbill.Usage(prompt_tokens=7, completion_tokens=3)
        cost = llmbill.default_prices().cost("gpt-4o-mini", usage)
        tracker.record(usage, cost, log_row("r1", cost.total), model="gpt-4o-mini")
        expected = cost.total

        flushing = asyncio.create_task(tracker.flush())
        await asyncio.sleep(0.05)  # the flush drained the ledger and waits on the database
        assert tracker.spend("team", "t") == expected and tracker.spend("key", "k") == expected
        store.fail_next = True
        store.gate.set()
        assert await flushing is False
        assert tracker.spend("team", "t") == expected  # the failed batch still counts
        tracker.record(usage, cost, log_row("r2", cost.total), model="gpt-4o-mini")
        assert await tracker.flush() is True
        assert tracker.spend("team", "t") == 2 * expected
        assert (await store.get("team", "t") or {})["spend"] == 2 * expected
        assert len(await store.spend_logs()) == 2
        await store.close()

    asyncio.run(scenario())
