"""Spend stays visible while a flush writes it: drained from the in-memory ledger and not yet in the
cached records, it must still count for budgets and /key/info (a race the end-to-end tests hit).
A row the database refuses is isolated and dead-lettered; the rest keeps flowing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmbill import _core
from llmbill.proxy.cache import EntityCache
from llmbill.proxy.spend import MAX_ATTEMPTS, SpendTracker, calls_batch
from llmbill.proxy.store import RecordError, SpendBatch, SpendLog, Store, StoreError, open_store

MOMENT = datetime(2026, 8, 6, tzinfo=timezone.utc)


def test_spend_being_written_still_counts_and_a_failed_write_is_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        await store.insert("key", {"token_hash": "k1"})
        cache = EntityCache(store)
        await cache.load()
        await cache.ensure([("key", "k1")])  # a call's key is held (authentication read it)
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


# -- one bad row never stops the others (issue 13, item 7) ---------------------------------------

PRICES = _core.PriceTable.from_json(['{"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}'])
USAGE = _core.Usage(prompt_tokens=1000, completion_tokens=100)
COST = PRICES.cost("m", USAGE)  # 0.0012 USD a call


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'llmbill.db'}"
    from tests.python.pg import create_database

    return create_database(str(request.getfixturevalue("postgres_url")), f"f_{uuid.uuid4().hex[:12]}")


def call(tracker: SpendTracker, request_id: str, customer: str = "c", key: str = "k1") -> None:
    row = SpendLog(request_id, "chat_completion", "m", key, "", "t1", customer, COST.total, 1000, 100, 0, 0,
                   MOMENT, MOMENT, "success")
    tracker.record(USAGE, COST, row, model="m")


async def opened(url: str) -> tuple[Store, SpendTracker]:
    store = open_store(url)
    await store.open()
    await store.insert("key", {"token_hash": "k1"})
    await store.insert("team", {"team_id": "t1"})
    cache = EntityCache(store)
    await cache.load()
    await cache.ensure([("key", "k1"), ("team", "t1")])  # a call's key and team are held
    return store, SpendTracker(store, cache)


def refusing(store: Store, bad: set[str], error: type[Exception] = RecordError) -> list[int]:
    """Makes `store` refuse every batch holding one of the `bad` request ids; returns the sizes (in
    calls) of the batches it was asked to write."""
    real = store.apply_spend
    sizes: list[int] = []

    async def apply(batch: SpendBatch) -> None:
        sizes.append(len(batch.logs))
        if any(row.request_id in bad for row in batch.logs):
            raise error("refused: " + ", ".join(sorted(bad)))
        await real(batch)

    store.apply_spend = apply  # type: ignore[method-assign]
    return sizes


def test_a_refused_row_is_dead_lettered_and_the_others_are_written(db_url: str) -> None:
    async def scenario() -> None:
        store, tracker = await opened(db_url)
        sizes = refusing(store, {"r5"})
        for i in range(10):
            call(tracker, f"r{i}", customer=f"c{i % 3}")
        before = tracker.spend("team", "t1")
        assert before == 10 * COST.total
        assert await tracker.flush() is True
        assert sizes[0] == 10 and len(sizes) <= 1 + 2 * 4  # a bisection, not a row-by-row retry
        assert [row.request_id for row, _ in tracker.dead_letters] == ["r5"]
        assert "refused: r5" in tracker.dead_letters[0][1]
        logs = await store.spend_logs()
        assert sorted(r.request_id for r in logs) == sorted(f"r{i}" for i in range(10) if i != 5)
        team = await store.get("team", "t1")
        assert team is not None and team["spend"] == 9 * COST.total
        assert tracker.spend("team", "t1") == 9 * COST.total and not tracker.unwritten
        customers = {c["user_id"]: c["spend"] for c in await store.list("customer")}
        assert customers == {"c0": 4 * COST.total, "c1": 3 * COST.total, "c2": 2 * COST.total}  # r5 was c2's
        # Later calls flow on: nothing of the bad row is retried.
        call(tracker, "r10")
        sizes.clear()
        assert await tracker.flush() is True and sizes == [1]
        assert len(await store.spend_logs()) == 10
        await store.close()

    asyncio.run(scenario())


def test_a_row_postgres_cannot_store_does_not_poison_the_flush(postgres_url: str) -> None:
    """The real failure: NUL in a customer id (SQLite stores it; PostgreSQL refuses the transaction)."""
    from tests.python.pg import create_database

    async def scenario() -> None:
        store, tracker = await opened(create_database(postgres_url, f"n_{uuid.uuid4().hex[:12]}"))
        call(tracker, "good-1")
        call(tracker, "bad", customer="a\x00b")
        call(tracker, "good-2")
        assert await tracker.flush() is True
        assert [row.request_id for row, _ in tracker.dead_letters] == ["bad"]
        assert sorted(r.request_id for r in await store.spend_logs()) == ["good-1", "good-2"]
        key = await store.get("key", "k1")
        assert key is not None and key["spend"] == 2 * COST.total
        call(tracker, "good-3")
        assert await tracker.flush() is True
        assert len(await store.spend_logs()) == 3
        await store.close()

    asyncio.run(scenario())


def test_an_unreachable_database_keeps_the_whole_batch(db_url: str) -> None:
    async def scenario() -> None:
        store, tracker = await opened(db_url)
        real_apply = store.apply_spend
        sizes = refusing(store, {"r0"}, StoreError)
        real_ping = store.ping
        up = [False]

        async def ping() -> bool:
            return up[0] and await real_ping()

        store.ping = ping  # type: ignore[method-assign]
        for i in range(4):
            call(tracker, f"r{i}")
        for _ in range(3):
            assert await tracker.flush() is False
        assert sizes == [4, 4, 4] and not tracker.dead_letters  # kept whole, not split, not dropped
        call(tracker, "r4")  # recorded while the database is down: waits in the ledger
        assert tracker.spend("key", "k1") == 5 * COST.total
        store.apply_spend = real_apply  # type: ignore[method-assign]
        up[0] = True
        assert await tracker.flush() is True
        key = await store.get("key", "k1")
        assert key is not None and key["spend"] == 5 * COST.total
        assert len(await store.spend_logs()) == 5 and tracker.spend("key", "k1") == 5 * COST.total
        await store.close()

    asyncio.run(scenario())


def test_an_unexplained_failure_of_one_call_is_retried_then_dead_lettered(db_url: str) -> None:
    """Any failure while the database answers isolates the call at fault; others are not held back."""
    async def scenario() -> None:
        store, tracker = await opened(db_url)
        refusing(store, {"odd"}, StoreError)
        call(tracker, "odd")
        call(tracker, "fine")
        for attempt in range(1, MAX_ATTEMPTS):
            assert await tracker.flush() is False  # kept for another try
            assert not tracker.dead_letters and len(tracker.unwritten) == 1
            call(tracker, f"next-{attempt}")
        assert await tracker.flush() is True
        assert [row.request_id for row, _ in tracker.dead_letters] == ["odd"]
        assert len(await store.spend_logs()) == MAX_ATTEMPTS  # "fine" and every "next-*"
        key = await store.get("key", "k1")
        assert key is not None and key["spend"] == MAX_ATTEMPTS * COST.total
        await store.close()

    asyncio.run(scenario())


def test_budgets_see_every_part_while_a_refused_batch_is_split(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, tracker = await opened(f"sqlite:///{tmp_path / 'llmbill.db'}")
        real = store.apply_spend
        seen: list[Decimal] = []

        async def apply(batch: SpendBatch) -> None:
            seen.append(tracker.spend("key", "k1"))  # mid-write, from the request path's point of view
            if any(row.request_id == "r2" for row in batch.logs):
                raise RecordError("no")
            await real(batch)

        store.apply_spend = apply  # type: ignore[method-assign]
        for i in range(6):
            call(tracker, f"r{i}")
        await tracker.flush()
        # Neither lost nor doubled while splitting: all six until r2 is dead-lettered, then five.
        assert seen == [6 * COST.total] * 6 + [5 * COST.total]
        assert tracker.spend("key", "k1") == 5 * COST.total  # the dead letter left pending spend
        await store.close()

    asyncio.run(scenario())


def test_a_cancelled_flush_keeps_what_it_had_not_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, tracker = await opened(f"sqlite:///{tmp_path / 'llmbill.db'}")
        real = store.apply_spend
        started, never = asyncio.Event(), asyncio.Event()

        async def stuck(batch: SpendBatch) -> None:
            started.set()
            await never.wait()

        store.apply_spend = stuck  # type: ignore[method-assign]
        call(tracker, "r0")
        flush = asyncio.create_task(tracker.flush())
        await started.wait()
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        assert tracker.spend("key", "k1") == COST.total and len(tracker.unwritten) == 1
        store.apply_spend = real  # type: ignore[method-assign]
        assert await tracker.flush() is True
        assert [r.request_id for r in await store.spend_logs()] == ["r0"]
        await store.close()

    asyncio.run(scenario())


def test_calls_batch_adds_what_the_ledger_added() -> None:
    tracker = SpendTracker(open_store("sqlite:///unused.db"), EntityCache(open_store("sqlite:///unused.db")))
    for i in range(7):
        call(tracker, f"r{i}", customer=f"c{i % 2}", key=f"k{i % 3}")
    rows = list(tracker.logs)
    drained = SpendBatch()
    for kind, ident, totals in tracker.ledger.drain():
        if kind in ("key", "user", "team", "customer") and totals.spend_units:
            drained.add(kind, ident, totals.spend)
    assert calls_batch(rows).increments == drained.increments


def test_budget_windows_follow_a_schedule_not_a_scan(tmp_path: Path) -> None:
    """Before issue 16 a flush visited every cached record to find due windows (every customer ever
    seen). Now a record is scheduled when it enters the cache; a flush looks at what is due alone."""
    async def scenario() -> None:
        store, tracker = await opened(f"sqlite:///{tmp_path / 'llmbill.db'}")
        for i in range(1000):
            call(tracker, f"r{i}", customer=f"c{i}")
        visits: list[str] = []

        def duration_of(kind: str, record: dict[str, Any]) -> str | None:
            visits.append(kind)
            return record.get("budget_duration")

        tracker.duration_of = duration_of
        now = datetime.now(timezone.utc)
        tracker.clock = lambda: now
        assert await tracker.flush()  # creates the 1000 customers, none with a window
        await tracker.cache.ensure([("customer", f"c{i}") for i in range(1000)])
        visits.clear()
        for _ in range(3):
            assert await tracker.flush()
        assert visits == []
        due = now + timedelta(hours=1)
        updated = await store.update("key", "k1", {"budget_duration": "1h", "budget_reset_at": due})
        assert updated is not None
        tracker.cache.put("key", updated)  # scheduled: one look at the record
        assert visits == ["key"]
        visits.clear()
        assert await tracker.flush()
        assert visits == []  # nothing due
        now = due
        call(tracker, "r-late")
        assert await tracker.flush()
        key = await store.get("key", "k1")
        assert key is not None and key["budget_reset_at"] == due + timedelta(hours=1)
        assert key["spend"] == COST.total  # the old window's spend went; the call after the reset stays
        assert tracker.cache.get("key", "k1") == key
        assert visits == ["key", "key"]  # the due record, and its new window scheduled
        await store.close()

    asyncio.run(scenario())


def test_the_cache_refresh_keeps_its_own_timer_while_a_flush_runs_long(tmp_path: Path) -> None:
    """run(): the refresh is not queued behind the flush loop. A flush that never ends (here: its
    write waits for ever, the lock free) must not stop the refresh, which keeps the records in use
    fresh; one after the other, a slow flush under load left them to go stale and be re-read on the
    request path."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        tracker = SpendTracker(store, EntityCache(store))
        flushing, refreshed = asyncio.Event(), asyncio.Event()
        refreshes = 0

        async def stuck_flush() -> bool:
            flushing.set()
            await asyncio.Event().wait()  # never set
            return True

        async def counted_refresh() -> None:
            nonlocal refreshes
            refreshes += 1
            if refreshes == 3:
                refreshed.set()

        tracker.flush = stuck_flush  # type: ignore[method-assign]
        tracker.refresh_cache = counted_refresh  # type: ignore[method-assign]
        loops = asyncio.create_task(tracker.run(0.001, 0.001))
        try:
            await asyncio.wait_for(flushing.wait(), 5)
            await asyncio.wait_for(refreshed.wait(), 5)  # three refreshes while the flush is stuck
        finally:
            loops.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loops
            await store.close()

    asyncio.run(scenario())


def test_rows_the_core_settled_are_flushed_without_being_read(db_url: str) -> None:
    """A call core.settle_call billed comes with its row as a line (LineLog): the flush binds the lines
    as they are — it must not read a row (each read parses its line: 4,000 of them held the loop
    ~10 ms a flush at c=1) — and the rows, spend and member spend come out as for rows made in Python."""
    from llmbill.proxy.store.log_line import LineLog

    async def scenario() -> None:
        store, tracker = await opened(db_url)
        await store.insert("user", {"user_id": "u1"})
        rows = []
        for i in range(50):
            _, error, line = _core.settle_call(tracker.ledger, None, PRICES.find("m"), USAGE, f"r{i}", 1786000000000,
                                               "m", "k1", "", "u1", "t1", f"c{i % 3}", "chat_completion",
                                               1786000000000123, f"chatcmpl-{i}", "")
            assert error == "" and line is not None
            rows.append(LineLog(line))
            tracker.note_settled(rows[-1], COST.total, "u1", "t1")
        assert await tracker.flush()
        assert all(list(row.__dict__) == ["line"] for row in rows)
        stored = sorted(await store.spend_logs(limit=100), key=lambda r: int(r.request_id[1:]))
        assert stored == rows and stored[7].response_id == "chatcmpl-7" and stored[7].end_user == "c1"
        assert stored[7].start_time == datetime.fromtimestamp(1786000000, timezone.utc) + timedelta(microseconds=123)
        for kind, ident in (("key", "k1"), ("user", "u1"), ("team", "t1"), ("member", '["t1","u1"]')):
            assert (await store.get(kind, ident) or {}).get("spend") == 50 * COST.total, (kind, ident)
        await store.close()

    asyncio.run(scenario())
