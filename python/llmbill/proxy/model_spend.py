"""Spend per (entity, model) in the current window of a per-model budget (`model_max_budget`).

The guards read it from memory. What it holds for each pair it was asked about: the spend of the
pair's spend-log rows in the database (read by `refresh`, off the request path) plus the calls this
process settled that those rows do not include yet, kept by request id — so a call is counted once
whether or not its row has been written. A pair's first call in this process waits for one database
read (`ensure`); later ones do not. Other processes' calls show up at the next refresh (every
`cache_refresh_interval`), the same delay as for every other budget.

A refresh sums the pair's rows since the window began, so its cost grows with the calls in a window;
it runs only for pairs that have a per-model budget and were called in this process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .store.base import Store

log = logging.getLogger("llmbill.proxy")

Pair = tuple[str, str, str]  # (entity kind, id, model)
# The spend-log column that names each kind of entity.
LOG_COLUMN = {"key": "api_key", "user": "user", "team": "team_id", "customer": "end_user"}
MAX_ROWS = 10_000_000


@dataclass
class _Window:
    start: datetime | None
    stored: Decimal = Decimal(0)  # the database's rows of this window, as last read
    loaded: bool = False
    local: dict[str, tuple[datetime, Decimal]] = field(default_factory=dict)  # request id → (start, cost)

    def total(self) -> Decimal:
        return self.stored + sum((cost for _, cost in self.local.values()), Decimal(0))


@dataclass
class ModelSpend:
    windows: dict[Pair, _Window] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refreshing: bool = False  # the background refresh has started (call_limits.load_model_spend)

    def _window(self, pair: Pair, start: datetime | None) -> _Window:
        w = self.windows.get(pair)
        if w is None or w.start != start:  # a new window: what the old one counted no longer counts
            kept = {} if w is None else {rid: v for rid, v in w.local.items() if start is None or v[0] >= start}
            w = self.windows[pair] = _Window(start, local=kept)
        return w

    def spend(self, pair: Pair, start: datetime | None) -> Decimal:
        return self._window(pair, start).total()

    def loaded(self, pair: Pair, start: datetime | None) -> bool:
        return self._window(pair, start).loaded

    def record(self, pair: Pair, start: datetime | None, request_id: str, at: datetime, cost: Decimal) -> None:
        if cost and (start is None or at >= start):
            self._window(pair, start).local[request_id] = (at, cost)

    async def load(self, store: Store, pairs: Iterable[Pair], strict: bool = True) -> None:
        """Reads each pair's rows of its current window from the database. A failed read raises when
        `strict` (a call waiting for it is answered 503), else is logged and retried next time."""
        async with self.lock:
            for pair in list(pairs):
                w = self.windows.get(pair)
                if w is None:
                    continue
                kind, ident, model = pair
                try:
                    rows = await store.spend_logs({LOG_COLUMN[kind]: ident, "model": model}, start=w.start,
                                                  limit=MAX_ROWS)
                except Exception as exc:  # keep what is known; the next refresh tries again
                    if strict:
                        raise
                    log.error("per-model spend of %s %s on %s not read: %s", kind, ident, model, exc)
                    continue
                current = self.windows.get(pair)
                if current is not w:
                    continue  # the window rolled over meanwhile: read again next time
                w.stored = sum((r.spend for r in rows), Decimal(0))
                written = {r.request_id for r in rows}
                for rid in [rid for rid in w.local if rid in written]:
                    del w.local[rid]
                w.loaded = True

    async def refresh(self, store: Store) -> None:
        await self.load(store, list(self.windows), strict=False)
