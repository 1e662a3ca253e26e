"""The entity cache (proxy/cache.py): unknown keys — what unauthenticated callers send — cost a
bounded number of database lookups; start-up reads no table and memory holds at most max_entries
records a kind; a change made elsewhere reaches what is held through the change log; the timer reads
the spend of active records alone; a re-read never undoes what this process wrote meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmbill import _core
from llmbill.proxy import cache as cache_module
from llmbill.proxy.cache import MISS_LOOKUPS_PER_SECOND, NEGATIVE_TTL, EntityCache
from llmbill.proxy.spend import SpendTracker
from llmbill.proxy.store import SpendBatch, SpendLog, Store, open_store
from llmbill.proxy.store.sql import CHANGES_KEPT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(store: Store) -> list[tuple[str, str]]:
    real = store.get
    asked: list[tuple[str, str]] = []

    async def get(kind: str, ident: str) -> Any:
        asked.append((kind, ident))
        return await real(kind, ident)

    store.get = get  # type: ignore[method-assign]
    return asked


async def counted_cache(tmp_path: Path) -> tuple[Store, Clock, EntityCache, list[tuple[str, str]]]:
    """A fresh SQLite store, a cache on it with a test clock, and the single reads it asks for."""
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    clock = Clock()
    cache = EntityCache(store, clock)
    await cache.load()
    return store, clock, cache, counting(store)


def test_a_repeated_unknown_key_costs_one_lookup_per_ttl(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, clock, cache, asked = await counted_cache(tmp_path)
        for _ in range(50):
            assert await cache.get_or_fetch("key", "garbage") is None
        assert asked == [("key", "garbage")]
        clock.now += NEGATIVE_TTL
        assert await cache.get_or_fetch("key", "garbage") is None
        assert len(asked) == 2
        # Made by another process meanwhile: found once the miss expires or the cache reloads.
        await store.insert("key", {"token_hash": "garbage"})
        assert await cache.get_or_fetch("key", "garbage") is None
        await cache.load()
        assert await cache.get_or_fetch("key", "garbage") is not None
        # Made by this process: put() forgets the miss at once.
        assert await cache.get_or_fetch("key", "fresh") is None
        cache.put("key", {"token_hash": "fresh"})
        assert await cache.get_or_fetch("key", "fresh") == {"token_hash": "fresh"}
        # Customers' misses are remembered too (most end users have no record); other kinds' are not.
        before = len(asked)
        assert await cache.get_or_fetch("customer", "c1") is None
        assert await cache.get_or_fetch("customer", "c1") is None
        assert await cache.get_or_fetch("user", "u1") is None
        assert await cache.get_or_fetch("user", "u1") is None
        assert len(asked) == before + 3
        await store.close()

    asyncio.run(scenario())


def test_a_flood_of_distinct_unknown_keys_is_bounded_per_second(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(cache_module, "NEGATIVE_MAX", 500)

    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert("key", {"token_hash": "real"})
        clock = Clock()
        cache = EntityCache(store, clock)
        asked = counting(store)
        for second in range(3):
            for i in range(1000):
                assert await cache.get_or_fetch("key", f"junk-{second}-{i}") is None
            assert len(asked) == MISS_LOOKUPS_PER_SECOND * (second + 1)
            assert len(cache.missing) <= 500
            clock.now += 1
        # Past the flood, an unknown key is looked up again.
        assert await cache.get_or_fetch("key", "real") == {"token_hash": "real", "spend": 0}
        await store.close()

    asyncio.run(scenario())


def _batch(*increments: tuple[str, str, str]) -> SpendBatch:
    batch = SpendBatch()
    for kind, ident, amount in increments:
        batch.add(kind, ident, Decimal(amount))
    return batch


def counting_reads(store: Store) -> dict[str, list[Any]]:
    """Counts every read the cache can make (what it asked for, by method)."""
    asked: dict[str, list[Any]] = {"get": [], "get_many": [], "spends_of": [], "list": [], "spends": []}
    for name in asked:
        real = getattr(store, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            asked[_name].append(args)
            return _real(*args, **kw)

        setattr(store, name, wrapper)
    return asked


def test_start_reads_no_table_and_memory_is_bounded_per_kind(tmp_path: Path) -> None:
    """Before issue 16 every process read every record at start and every second; now it holds what
    requests read, at most max_entries per kind, the least recently used going first."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert_many("customer", [{"user_id": f"c{i}"} for i in range(1000)])
        await store.insert("budget", {"budget_id": "tier"})
        asked = counting_reads(store)
        clock = Clock()
        cache = EntityCache(store, clock, max_entries=100)
        await cache.load()
        assert asked["list"] == [("budget",)] and not asked["get"] and not asked["get_many"]
        assert cache.get("budget", "tier") == {"budget_id": "tier"}  # tiers are held in full
        await cache.ensure([("customer", f"c{i}") for i in range(150)])
        assert len(cache.entries["customer"]) == 100
        assert cache.get("customer", "c0") is None and cache.get("customer", "c149") is not None
        await cache.ensure([("customer", "c50")])  # used again: the newest
        await cache.ensure([("customer", f"n{i}") for i in range(99)])  # absent ids hold nothing
        await cache.ensure([("customer", f"c{i}") for i in range(150, 249)])
        assert cache.get("customer", "c50") is not None and cache.get("customer", "c51") is None
        with pytest.raises(ValueError):
            cache.all("customer")  # held in part: lists come from the store
        with pytest.raises(ValueError):
            EntityCache(store, max_entries=10)
        await store.close()

    asyncio.run(scenario())


def test_a_change_made_by_another_process_reaches_what_is_held(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        other = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")  # another process
        await other.open()
        await other.insert("key", {"token_hash": "k1", "team_id": "t1"})
        await other.insert("team", {"team_id": "t1", "blocked": False})
        await other.insert("team", {"team_id": "t2"})
        cache = EntityCache(store, Clock())
        await cache.load()
        assert await cache.get_or_fetch("key", "k1") is not None
        assert cache.get("team", "t1") == {"team_id": "t1", "blocked": False, "spend": 0}  # the key's team
        assert await cache.get_or_fetch("key", "k2") is None  # a miss, remembered
        await other.update("team", "t1", {"blocked": True})
        await other.delete("key", ["k1"])
        await other.insert("key", {"token_hash": "k2"})
        await other.update("team", "t2", {"blocked": True})  # not held here: nothing to read
        asked = counting_reads(store)
        await cache.sync()
        assert (cache.get("team", "t1") or {}).get("blocked") is True
        assert cache.get("key", "k1") is None and cache.get("team", "t2") is None
        assert ("key", "k2") not in cache.missing
        assert sorted(a[0] for a in asked["get_many"]) == ["key", "team"]  # one read a kind held, t2 not
        assert await cache.get_or_fetch("key", "k2") is not None
        await other.insert("budget", {"budget_id": "b"})
        await cache.sync()
        assert cache.get("budget", "b") == {"budget_id": "b"}
        # Fallen too far behind the change log: everything held is read again.
        version = cache.version
        cache.version = version - CHANGES_KEPT - 1
        await other.update("team", "t1", {"blocked": False})
        await cache.sync()
        assert cache.version == version + 1 and (cache.get("team", "t1") or {}).get("blocked") is False
        await other.close()
        await store.close()

    asyncio.run(scenario())


def test_real_keys_not_held_yet_are_read_however_many(tmp_path: Path) -> None:
    """Keys are read on first use, so a fresh process meets hundreds of real keys in its first second:
    the flood gate counts lookups that found nothing, not lookups."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert_many("key", [{"token_hash": f"real-{i}"} for i in range(5 * MISS_LOOKUPS_PER_SECOND)])
        cache = EntityCache(store, Clock())  # one second for all of it
        await cache.load()
        for i in range(5 * MISS_LOOKUPS_PER_SECOND):
            assert await cache.get_or_fetch("key", f"real-{i}") is not None, i
        await store.close()

    asyncio.run(scenario())


def test_the_timer_reads_the_spend_of_active_records_alone(tmp_path: Path) -> None:
    """An idle process reads nothing but the change log; a record idle for longer than stale_after is
    read again when next needed, so its spend (another process's calls) is current then."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        other = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await other.open()
        clock = Clock()
        cache = EntityCache(store, clock, stale_after=2.0)
        await cache.load()
        await cache.ensure([("customer", "idle")])  # absent: nothing held, the miss remembered
        await other.apply_spend(_batch(("customer", "idle", "1"), ("customer", "hot", "1")))
        clock.now += cache_module.NEGATIVE_TTL  # another process's first call created it: seen after the TTL
        await cache.ensure([("customer", "idle"), ("customer", "hot")])
        clock.now += 3  # "idle" is not used again; "hot" is
        await cache.ensure([("customer", "hot")])
        await other.apply_spend(_batch(("customer", "idle", "1"), ("customer", "hot", "1")))
        asked = counting_reads(store)
        await cache.refresh()
        assert asked["spends_of"] == [("customer", ["hot"])] and not asked["get_many"] and not asked["spends"]
        assert (cache.get("customer", "hot") or {})["spend"] == Decimal(2)
        assert (cache.get("customer", "idle") or {})["spend"] == Decimal(1)  # stale, not read
        await cache.ensure([("customer", "idle")])
        assert (cache.get("customer", "idle") or {})["spend"] == Decimal(2)  # read again once needed
        clock.now += 10
        asked["spends_of"].clear()
        await cache.refresh()
        assert asked["spends_of"] == []  # nothing used lately: nothing read
        await other.close()
        await store.close()

    asyncio.run(scenario())


def test_a_write_made_during_a_reread_survives_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        for ident in ("u1", "u2"):
            await store.insert("user", {"user_id": ident, "blocked": False})
        cache = EntityCache(store)
        await cache.load()
        await cache.ensure([("user", "u1"), ("user", "u2")])
        reading, release = asyncio.Event(), asyncio.Event()
        real_get_many = store.get_many

        async def slow_get_many(kind: str, idents: Sequence[str]) -> dict[str, dict[str, Any]]:
            rows = await real_get_many(kind, idents)
            if kind == "user":  # the re-read has read the users; now a request writes
                reading.set()
                await release.wait()
            return rows

        store.get_many = slow_get_many  # type: ignore[method-assign]
        reread = asyncio.create_task(cache.load())
        await reading.wait()
        blocked = await store.update("user", "u1", {"blocked": True})
        assert blocked is not None
        cache.put("user", blocked)
        await store.delete("user", ["u2"])
        cache.drop("user", "u2")
        release.set()
        await reread
        assert (cache.get("user", "u1") or {}).get("blocked") is True
        assert cache.get("user", "u2") is None
        await cache.load()  # with nothing written meanwhile, a re-read takes what the database holds
        assert (cache.get("user", "u1") or {}).get("blocked") is True
        await store.close()

    asyncio.run(scenario())


def test_a_read_overtaken_by_applied_spend_is_read_again(tmp_path: Path) -> None:
    """A record read while a flush commits its spend would miss it (the flush credits only held
    records, and the read saw the store before the commit): such a read is repeated."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        await store.apply_spend(_batch(("customer", "c", "1")))
        cache = EntityCache(store)
        await cache.load()
        real_get = store.get
        reads = []

        async def get(kind: str, ident: str) -> Any:
            found = await real_get(kind, ident)
            reads.append(found)
            if len(reads) == 1:  # a flush applies and credits while this read is in flight
                await store.apply_spend(_batch(("customer", "c", "1")))
                cache.credited()
            return found

        store.get = get  # type: ignore[method-assign]
        record = await cache.get_or_fetch("customer", "c")
        assert len(reads) == 2 and record is not None and record["spend"] == Decimal(2)
        await store.close()

    asyncio.run(scenario())


def test_requests_needing_a_record_being_read_share_its_read(tmp_path: Path) -> None:
    """A hot key gone stale with 256 requests in flight was read 256 times, one after the other on the
    store's one reading connection (seconds of p99 at c=256): now one read serves them all, and a
    write that overtakes it still has it read again."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert("key", {"token_hash": "hot"})
        clock = Clock()
        cache = EntityCache(store, clock)
        await cache.load()
        asked = counting(store)
        assert await cache.get_or_fetch("key", "hot") is not None
        clock.now += cache.stale_after + 1  # stale: the next requests read it again
        found = await asyncio.gather(*(cache.get_or_fetch("key", "hot") for _ in range(50)))
        assert len(asked) == 2 and all(f == {"token_hash": "hot", "spend": 0} for f in found)
        # A caller cancelled while waiting leaves the others' read alone.
        clock.now += cache.stale_after + 1
        first = asyncio.ensure_future(cache.get_or_fetch("key", "hot"))
        second = asyncio.ensure_future(cache.get_or_fetch("key", "hot"))
        await asyncio.sleep(0)
        first.cancel()
        assert await second == {"token_hash": "hot", "spend": 0} and len(asked) == 3
        # A read this process's write overtakes is repeated for every caller waiting on it.
        clock.now += cache.stale_after + 1
        real_get = store.get

        async def overtaken(kind: str, ident: str) -> Any:
            found = await real_get(kind, ident)
            if len(asked) == 4:
                await store.update("key", "hot", {"key_alias": "new"})
                cache.credited()
            return found

        store.get = overtaken  # type: ignore[method-assign]
        found = await asyncio.gather(*(cache.get_or_fetch("key", "hot") for _ in range(3)))
        assert all(f is not None and f["key_alias"] == "new" for f in found)
        await store.close()

    asyncio.run(scenario())


def test_an_end_user_without_a_record_costs_one_read_per_ttl_and_its_first_flush_shows_it(tmp_path: Path) -> None:
    """Most `user` values have no customer record: remembered as misses (not on the key gate), and
    forgotten when the spend flush creates the record, so its spend is read at once."""
    async def scenario() -> None:
        store, _, cache, asked = await counted_cache(tmp_path)
        for _ in range(20):
            await cache.ensure([("customer", "end-user-1")])
        assert asked == [("customer", "end-user-1")]
        for i in range(MISS_LOOKUPS_PER_SECOND + 5):  # customer misses never close the key gate
            await cache.ensure([("customer", f"other-{i}")])
        await store.insert("key", {"token_hash": "real"})
        assert await cache.get_or_fetch("key", "real") is not None
        # The first call's spend creates the customer's record: the flush forgets the miss.
        tracker = SpendTracker(store, cache)
        moment = datetime(2026, 8, 6, tzinfo=timezone.utc)
        usage = _core.Usage(prompt_tokens=10, completion_tokens=5)
        tracker.record(usage, Decimal("0.5"), SpendLog("r1", "chat_completion", "m", "real", "", "", "end-user-1",
                                                       Decimal("0.5"), 10, 5, 0, 0, moment, moment, "success"), model="m")
        assert await tracker.flush()
        asked.clear()
        await cache.ensure([("customer", "end-user-1")])
        assert asked == [("customer", "end-user-1")]
        record = cache.get("customer", "end-user-1")
        assert record is not None and Decimal(record["spend"]) == Decimal("0.5")
        await store.close()

    asyncio.run(scenario())


def test_what_is_held_fresh_needs_no_read_and_what_is_not_is_listed(tmp_path: Path) -> None:
    """unheld() is ensure() without the read: the request path awaits only when it lists something."""
    async def scenario() -> None:
        store, clock, cache, asked = await counted_cache(tmp_path)
        await store.insert_many("customer", [{"user_id": "c1"}, {"user_id": "c2"}])
        wanted: list[tuple[str, str | None]] = [("customer", "c1"), ("customer", "c2"), ("user", None)]
        assert cache.unheld(wanted) == {"customer": ["c1", "c2"]}
        assert asked == []  # listing reads nothing
        await cache.ensure(wanted)
        assert cache.unheld(wanted) == {}
        clock.now += cache.stale_after + 1  # stale: listed again, to be read again
        assert cache.unheld([("customer", "c1")]) == {"customer": ["c1"]}
        await store.close()

    asyncio.run(scenario())


def test_a_fresh_key_is_answered_from_memory_only_with_its_user_and_team_fresh(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, clock, cache, asked = await counted_cache(tmp_path)
        await store.insert_many("user", [{"user_id": "u1"}])
        await store.insert_many("key", [{"token_hash": "h1", "user_id": "u1"}])
        assert cache.fresh_key("h1") is None  # not held yet: get_or_fetch reads it
        record = await cache.get_or_fetch("key", "h1")
        assert record is not None and cache.fresh_key("h1") is record
        reads = len(asked)
        clock.now += cache.stale_after + 1
        assert cache.fresh_key("h1") is None and len(asked) == reads  # stale: no answer, and no read here
        await store.close()

    asyncio.run(scenario())
