"""Entity records served from memory on the request path, kept fresh from the database.

Every process loads keys, teams, users, customers and budgets at start, and reloads them whenever the
store's version moves (another process changed something) or on a timer (other processes' spend).
A key unknown here is looked up once in the database before the caller is refused, so a key made by
another process works at once.
"""

from __future__ import annotations

from typing import Any

from .store.base import KINDS, Store

CACHED_KINDS = ("key", "team", "user", "customer", "budget")


class EntityCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.records: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in CACHED_KINDS}
        self.version = -1
        self._touched: set[tuple[str, str]] | None = None  # (kind, id) this process wrote during a load

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

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        return self.records[kind].get(ident)

    async def get_or_fetch(self, kind: str, ident: str) -> dict[str, Any] | None:
        record = self.records[kind].get(ident)
        if record is None:
            record = await self.store.get(kind, ident)
            if record is not None:
                self.records[kind][ident] = record
        return record

    def put(self, kind: str, record: dict[str, Any]) -> None:
        self.records[kind][record[KINDS[kind]]] = record
        if self._touched is not None:
            self._touched.add((kind, record[KINDS[kind]]))

    def drop(self, kind: str, ident: str) -> None:
        self.records[kind].pop(ident, None)
        if self._touched is not None:
            self._touched.add((kind, ident))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.records[kind].values())
