"""The entity cache's reload never undoes what this process wrote while the reload was reading."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmbill.proxy.cache import EntityCache
from llmbill.proxy.store import open_store


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
