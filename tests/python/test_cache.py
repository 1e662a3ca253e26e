"""The entity cache (proxy/cache.py): unknown keys — what unauthenticated callers send — cost a
bounded number of database lookups, a key stored or reloaded is found again at once, and the
timer's refresh reads spend alone while nothing else changed; a reload never undoes what this process
wrote while the reload was reading."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from llmbill.proxy import cache as cache_module
from llmbill.proxy.cache import MISS_LOOKUPS_PER_SECOND, NEGATIVE_TTL, EntityCache
from llmbill.proxy.store import SpendBatch, Store, open_store


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


def test_a_repeated_unknown_key_costs_one_lookup_per_ttl(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        clock = Clock()
        cache = EntityCache(store, clock)
        await cache.load()
        asked = counting(store)
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
        # Other kinds are not remembered as missing (a customer appears with its first flushed call).
        before = len(asked)
        assert await cache.get_or_fetch("customer", "c1") is None
        assert await cache.get_or_fetch("customer", "c1") is None
        assert len(asked) == before + 2
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


def test_the_timer_reads_spend_alone_unless_records_changed(tmp_path: Path) -> None:
    """A full reload decodes every record (half a second of the event loop for 100k customers); the
    timer's refresh reads only the spend columns while the store's version has not moved."""
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        await store.insert("key", {"token_hash": "k1", "key_alias": "a"})
        cache = EntityCache(store)
        await cache.load()
        generation, key = cache.generation, cache.get("key", "k1")
        other = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")  # another process
        await other.open()
        await other.apply_spend(_batch(("key", "k1", "0.5")))
        await cache.refresh()
        assert cache.get("key", "k1") is key and key is not None and key["spend"] == Decimal("0.5")
        assert cache.generation == generation  # nothing but spend changed
        await other.apply_spend(_batch(("customer", "new-c", "0.1")))  # a customer another process upserted
        await cache.refresh()
        assert cache.get("customer", "new-c") == {"user_id": "new-c", "spend": Decimal("0.1")}
        assert cache.generation == generation + 1
        await other.update("key", "k1", {"key_alias": "b"})  # a change: the version moves
        await cache.refresh()
        assert cache.get("key", "k1") == {"token_hash": "k1", "key_alias": "b", "spend": Decimal("0.5")}
        assert cache.generation == generation + 2
        cache.remember("customer", {"user_id": "c2", "spend": Decimal(0)})
        assert cache.generation == generation + 2
        cache.put("customer", {"user_id": "c3", "spend": Decimal(0)})
        assert cache.generation == generation + 3
        await other.close()
        await store.close()

    asyncio.run(scenario())


def _batch(*increments: tuple[str, str, str]) -> SpendBatch:
    batch = SpendBatch()
    for kind, ident, amount in increments:
        batch.add(kind, ident, Decimal(amount))
    return batch


def test_a_write_made_during_a_reload_survives_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        for ident in ("u1", "u2"):
            await store.insert("user", {"user_id": ident, "blocked": False})
        cache = EntityCache(store)
        await cache.load()
        reading, release = asyncio.Event(), asyncio.Event()
        real_list = store.list

        async def slow_list(kind: str, filters: Mapping[str, Any] | None = None, offset: int = 0,
                            limit: int | None = None) -> list[dict[str, Any]]:
            rows = await real_list(kind, filters, offset, limit)
            if kind == "user":  # the reload has read the users; now a request writes
                reading.set()
                await release.wait()
            return rows

        store.list = slow_list  # type: ignore[method-assign]
        reload = asyncio.create_task(cache.load())
        await reading.wait()
        blocked = await store.update("user", "u1", {"blocked": True})
        assert blocked is not None
        cache.put("user", blocked)
        await store.delete("user", ["u2"])
        cache.drop("user", "u2")
        release.set()
        await reload
        assert (cache.get("user", "u1") or {}).get("blocked") is True
        assert cache.get("user", "u2") is None
        await cache.load()  # with nothing written meanwhile, a reload takes what the database holds
        assert (cache.get("user", "u1") or {}).get("blocked") is True
        await store.close()

    asyncio.run(scenario())
