"""Entity records served from memory on the request path, kept fresh from the database.

Every process loads keys, teams, users, customers and budgets at start, and reloads them whenever the
store's version moves (another process changed something). On the timer in between only the spend
columns are read (other processes' spend): a full reload decodes every record, and with 100k
customers that was half a second of the event loop every second. `generation` counts the changes
of the records other than spend (a reload, a put, a drop), so the spend flush rescans budget windows
only when something changed.

A key unknown here is looked up in the database before the caller is refused, so a key made by
another process works at once.

Unknown keys are what unauthenticated callers send, so their misses are bounded: a miss is
remembered (NEGATIVE_TTL seconds, at most NEGATIVE_MAX ids, forgotten at every reload and whenever
the id is stored), and at most MISS_LOOKUPS_PER_SECOND unknown keys go to the database each second —
past that a key is refused from memory. The price: during a flood of made-up keys, a key made by
another process in the last reload interval may be refused until the next reload (1 s by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .store.base import KINDS, Store

CACHED_KINDS = ("key", "team", "user", "customer", "budget")
SPEND_KINDS = ("key", "team", "user", "customer")
NEGATIVE_KINDS = ("key",)  # looked up for every caller, signed in or not
NEGATIVE_TTL = 2.0
NEGATIVE_MAX = 10_000
MISS_LOOKUPS_PER_SECOND = 100


class EntityCache:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.records: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in CACHED_KINDS}
        self.version = -1
        self._touched: set[tuple[str, str]] | None = None  # (kind, id) this process wrote during a load
        self.clock = clock
        self.generation = 0
        self.missing: dict[tuple[str, str], float] = {}  # (kind, id) → when the miss is forgotten
        self._lookups = 0  # database lookups of unknown ids in the current second
        self._second = -1

    async def load(self) -> None:
        self._touched = set()  # a write made while the load reads is newer than what the load read
        version = await self.store.version()
        fresh: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in CACHED_KINDS:
            id_field = KINDS[kind]
            fresh[kind] = {r[id_field]: r for r in await self.store.list(kind)}
        # Else a block, a revocation or a new member made meanwhile would be undone until the next load.
        for kind, ident in self._touched:
            if (record := self.records[kind].get(ident)) is None:
                fresh[kind].pop(ident, None)
            else:
                fresh[kind][ident] = record
        self._touched = None
        self.records = fresh
        self.version = version
        self.generation += 1
        self.missing.clear()

    async def refresh(self) -> None:
        """The timer's reload: in full when the store's version moved, else every record's spend."""
        if await self.store.version() != self.version:
            await self.load()
            return
        for kind in SPEND_KINDS:
            spends = await self.store.spends(kind)
            records = self.records[kind]
            if len(spends) != len(records) or not spends.keys() <= records.keys():
                await self.load()  # records another process added with spend alone (customers)
                return
            for ident, spend in spends.items():
                records[ident]["spend"] = spend

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        return self.records[kind].get(ident)

    async def get_or_fetch(self, kind: str, ident: str) -> dict[str, Any] | None:
        record = self.records[kind].get(ident)
        if record is not None:
            return record
        if kind in NEGATIVE_KINDS and not self._may_look_up(kind, ident):
            return None
        record = await self.store.get(kind, ident)
        if record is not None:
            self.records[kind][ident] = record
        elif kind in NEGATIVE_KINDS:
            self._remember_miss(kind, ident)
        return record

    def _may_look_up(self, kind: str, ident: str) -> bool:
        now = self.clock()
        until = self.missing.get((kind, ident))
        if until is not None:
            if now < until:
                return False
            del self.missing[(kind, ident)]
        second = int(now)
        if second != self._second:
            self._second, self._lookups = second, 0
        self._lookups += 1
        return self._lookups <= MISS_LOOKUPS_PER_SECOND

    def _remember_miss(self, kind: str, ident: str) -> None:
        while len(self.missing) >= NEGATIVE_MAX:  # one TTL for all: the first entry expires first
            del self.missing[next(iter(self.missing))]
        self.missing[(kind, ident)] = self.clock() + NEGATIVE_TTL

    def put(self, kind: str, record: dict[str, Any]) -> None:
        self.remember(kind, record)
        self.generation += 1

    def remember(self, kind: str, record: dict[str, Any]) -> None:
        """put() for a record the caller accounts for itself (the spend flush): no new generation."""
        self.records[kind][record[KINDS[kind]]] = record
        self.missing.pop((kind, record[KINDS[kind]]), None)
        if self._touched is not None:
            self._touched.add((kind, record[KINDS[kind]]))

    def drop(self, kind: str, ident: str) -> None:
        self.records[kind].pop(ident, None)
        self.generation += 1
        if self._touched is not None:
            self._touched.add((kind, ident))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.records[kind].values())
