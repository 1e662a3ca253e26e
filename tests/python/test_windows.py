"""Budget windows from a schedule (proxy/windows.py): a record read with its reset time past is reset
at the next flush (it was not held when the time came); a window that never started starts when its
record is read; two processes noticing one expiry reset it once; a record never read is left alone."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from llmbill.proxy.cache import EntityCache
from llmbill.proxy.entity_limits import entity_limits
from llmbill.proxy.spend import SpendTracker
from llmbill.proxy.store import SpendBatch, Store, member_id, open_store

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
PAST = NOW - timedelta(days=2)


def spend(*items: tuple[str, str, str]) -> SpendBatch:
    batch = SpendBatch()
    for kind, ident, amount in items:
        batch.add(kind, ident, Decimal(amount))
    return batch


async def tracker_on(store: Store) -> SpendTracker:
    cache = EntityCache(store)
    await cache.load()
    tracker = SpendTracker(store, cache)
    tracker.clock = lambda: NOW
    return tracker


def test_a_record_read_after_its_reset_time_is_reset_at_the_next_flush(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert("customer", {"user_id": "late", "budget_duration": "1d", "budget_reset_at": PAST})
        await store.insert("customer", {"user_id": "unread", "budget_duration": "1d", "budget_reset_at": PAST})
        await store.insert("customer", {"user_id": "fresh", "budget_duration": "1d"})
        await store.apply_spend(spend(("customer", "late", "5"), ("customer", "unread", "5"), ("customer", "fresh", "5")))
        one, two = await tracker_on(store), await tracker_on(store)  # two processes
        for t in (one, two):
            await t.cache.ensure([("customer", "late"), ("customer", "fresh")])
        await one.flush()
        await store.apply_spend(spend(("customer", "late", "1")))  # a call in the new window
        await two.flush()  # the same expiry seen by another process: nothing reset twice
        late = await store.get("customer", "late")
        assert late is not None and late["spend"] == Decimal(1)
        assert late["budget_reset_at"] == datetime(2026, 3, 11, tzinfo=timezone.utc)  # the next midnight
        assert (two.cache.get("customer", "late") or {})["budget_reset_at"] == late["budget_reset_at"]
        fresh = await store.get("customer", "fresh")  # its window started when it was read
        assert fresh is not None and fresh["spend"] == Decimal(5)
        assert fresh["budget_reset_at"] == datetime(2026, 3, 11, tzinfo=timezone.utc)
        unread = await store.get("customer", "unread")  # never read: checked when next read
        assert unread is not None and unread["spend"] == Decimal(5) and unread["budget_reset_at"] == PAST
        assert one.windows.next_due() == datetime(2026, 3, 11, tzinfo=timezone.utc)
        await store.close()

    asyncio.run(scenario())


def test_a_failed_reset_is_tried_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert("key", {"token_hash": "k", "budget_duration": "1h", "budget_reset_at": PAST})
        await store.apply_spend(spend(("key", "k", "2")))
        tracker = await tracker_on(store)
        await tracker.cache.ensure([("key", "k")])
        real = store.reset_windows
        calls = []

        async def down(*args: object) -> None:
            calls.append(args)
            raise OSError("database unreachable")

        store.reset_windows = down  # type: ignore[method-assign]
        try:
            await tracker.flush()
        except OSError:
            pass
        store.reset_windows = real  # type: ignore[method-assign]
        await tracker.flush()
        key = await store.get("key", "k")
        assert len(calls) == 1 and key is not None and key["spend"] == 0 and key["budget_reset_at"] > NOW
        await store.close()

    asyncio.run(scenario())


def test_a_member_record_runs_in_its_teams_member_budget_windows(tmp_path: Path) -> None:
    """A member's spend record takes its team's `team_member_budget_duration`: its window starts when
    it is read, and it resets at the window's end like a key; a member of a team without one never."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert("team", {"team_id": "t", "team_member_budget_duration": "1d"})
        await store.insert("team", {"team_id": "plain"})
        windowed, plain = member_id("t", "u"), member_id("plain", "u")
        await store.apply_spend(spend(("member", windowed, "5"), ("member", plain, "5")))  # their first calls
        tracker = await tracker_on(store)
        tracker.duration_of = lambda kind, record: entity_limits(tracker.cache, None, kind, record).budget_duration
        await tracker.cache.ensure([("team", "t"), ("team", "plain"), ("member", windowed), ("member", plain)])
        await tracker.flush()
        started = await store.get("member", windowed)
        midnight = datetime(2026, 3, 11, tzinfo=timezone.utc)
        assert started == {"member_id": windowed, "spend": Decimal(5), "budget_reset_at": midnight}
        assert tracker.windows.next_due() == midnight
        tracker.clock = lambda: midnight + timedelta(hours=1)
        await tracker.flush()
        reset = await store.get("member", windowed)
        assert reset == {"member_id": windowed, "spend": Decimal(0), "budget_reset_at": midnight + timedelta(days=1)}
        assert (tracker.cache.get("member", windowed) or {})["budget_reset_at"] == midnight + timedelta(days=1)
        assert await store.get("member", plain) == {"member_id": plain, "spend": Decimal(5)}
        await store.close()

    asyncio.run(scenario())
