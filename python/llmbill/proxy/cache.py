"""Entity records served from memory on the request path: read on demand, bounded, kept fresh by the
store's change log — what a process holds follows its traffic, not the size of the database.

A key, team, user, customer or team member's spend record is read when a request first needs it and
kept in a per-kind LRU of `max_entries` records (general_settings.cache_max_entries). Start-up reads
the budgets alone (pricing tiers: few, and every customer check reads one); nothing ever reads a
whole table again. `get()` answers from memory only, so code that reads a record synchronously
ensures it first in the same request: authentication ensures the key with its user and team
(`get_or_fetch("key", ...)`), the call's admission its customer (`ensure`).

Freshness:
- Changes: every insert, update and delete logs its (kind, id) under a new store version
  (store/base.py). `sync()` reads what changed since this process's version — PostgreSQL wakes it by
  NOTIFY, SQLite is polled every `cache_sync_interval` — re-reads the changed records held here
  (batched) and forgets their misses. A gap in the log (this process fell CHANGES_KEPT versions
  behind) re-reads everything held.
- Spend: other processes' spend reaches a record when its spend is re-read. The timer (`refresh`)
  re-reads the spend of the records used in the last `stale_after` seconds, batched, and every
  SAFETY_EVERY-th time those records whole (a write made behind the store's back). A record idle for
  longer is re-read when next ensured. So an idle process reads nothing but the change log.
- Races: a read that a write of this process (put, drop, applied spend) or a change overtook is read
  again (`_epoch`), and a re-read never replaces a record put after the read began.

A miss of a key or a customer is remembered (NEGATIVE_TTL seconds, at most NEGATIVE_MAX ids,
forgotten when the id is stored here, its change is seen, or — customers — a spend flush creates it):
an end user the proxy has no record of (most `user` values) costs one read per NEGATIVE_TTL, not one
per call. Unknown keys are what unauthenticated callers send, so their lookups are also bounded: once MISS_LOOKUPS_PER_SECOND lookups found nothing in a second, or while
MAX_KEY_LOOKUPS_IN_FLIGHT are under way, a key not held is refused from memory until the next second.
Keys that exist are not held either until first used, so the gate counts misses, not lookups: a
fresh process serving thousands of real keys reads each once. The price: during a flood of made-up
keys, a real key this process does not hold yet may be refused for the rest of that second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .store.base import KINDS, Store

log = logging.getLogger("llmbill.proxy")

HELD_KINDS = ("key", "team", "user", "customer", "member")  # on demand, bounded
NEGATIVE_KINDS = ("key",)  # looked up for every caller, signed in or not: lookups rate-gated
MISSES_KEPT = ("key", "customer")  # kinds whose misses are remembered for NEGATIVE_TTL
NEGATIVE_TTL = 2.0
NEGATIVE_MAX = 10_000
MISS_LOOKUPS_PER_SECOND = 100  # lookups of keys that found nothing
MAX_KEY_LOOKUPS_IN_FLIGHT = 1000
DEFAULT_MAX_ENTRIES = 50_000  # per kind
MIN_MAX_ENTRIES = 100  # below this a request's own records could evict each other
STALE_AFTER = 2.0  # seconds; ProxyState sets twice the refresh interval
SAFETY_EVERY = 60  # every 60th refresh re-reads the active records whole
PUSHED_POLL = 5.0  # seconds between polls of the change log while PostgreSQL pushes changes
READ_TRIES = 3  # a read overtaken by a write is repeated at most this often

Record = dict[str, Any]


class _Entry:
    __slots__ = ("record", "read_at", "used_at", "stamp")

    def __init__(self, record: Record, now: float, stamp: int) -> None:
        self.record = record
        self.read_at = now  # when the record (or its spend) was last read from the store, or put
        self.used_at = now  # when a request last ensured it (the LRU order)
        self.stamp = stamp  # the cache's write count when the record was installed


class EntityCache:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = DEFAULT_MAX_ENTRIES, stale_after: float = STALE_AFTER) -> None:
        if max_entries < MIN_MAX_ENTRIES:
            raise ValueError(f"cache_max_entries must be at least {MIN_MAX_ENTRIES}, not {max_entries}")
        self.store = store
        self.clock = clock
        self.max_entries = max_entries
        self.stale_after = stale_after
        self.entries: dict[str, OrderedDict[str, _Entry]] = {k: OrderedDict() for k in HELD_KINDS}
        self.budgets: dict[str, Record] = {}
        self.version = -1
        self.missing: dict[tuple[str, str], float] = {}  # (kind, id) → when the miss is forgotten
        self._misses = 0  # key lookups that found nothing in the current second
        self._second = -1
        self._in_flight = 0  # key lookups under way
        self._reading: dict[tuple[str, str], asyncio.Future[Record | None]] = {}  # _read_one's reads under way
        self._epoch = 0  # moves with every write of this process and every change seen
        self._stamp = 0  # counts installed records: a re-read keeps a record installed after it began
        self._refreshes = 0
        # Moves with every record installed, replaced or forgotten and every spend written into one:
        # what the guard book compiled from the records is current only at the generation it saw.
        self.generation = 0
        # Called with every record that enters or is replaced (spend.py tracks budget windows with it).
        self.on_record: Callable[[str, Record], None] = lambda kind, record: None

    # -- start, and the background work ---------------------------------------------------------

    async def load(self) -> None:
        """Start-up (the budgets and the store's version), and re-synchronisation after a gap in the
        change log: everything held is read again, batched; misses are forgotten."""
        version = await self.store.version()
        self.budgets = {r[KINDS["budget"]]: r for r in await self.store.list("budget")}
        self.generation += 1
        self.missing.clear()
        self._epoch += 1
        for kind in HELD_KINDS:
            await self._reread(kind, list(self.entries[kind]))
        self.version = version

    async def sync(self) -> None:
        """Applies the changes other processes (and this one) logged since the last sync."""
        version, changed = await self.store.changes(self.version)
        if changed is None:
            log.warning("the change log no longer reaches this process's version; re-reading what it holds")
            await self.load()
            return
        if changed:
            self._epoch += 1
            by_kind: dict[str, set[str]] = {}
            for kind, ident in changed:
                by_kind.setdefault(kind, set()).add(ident)
            for kind, idents in by_kind.items():
                await self._changed(kind, idents)
        self.version = version

    async def _changed(self, kind: str, idents: set[str]) -> None:
        everything = "*" in idents
        if everything:
            self.missing = {k: v for k, v in self.missing.items() if k[0] != kind}
        else:
            for ident in idents:
                self.missing.pop((kind, ident), None)
        if kind == "budget":
            wanted = list(self.budgets) if everything else sorted(idents)
            fresh = await self.store.get_many(kind, wanted)
            self.generation += 1
            if everything:
                self.budgets = {r[KINDS[kind]]: r for r in await self.store.list("budget")}
                self.generation += 1
                return
            for ident in wanted:
                if ident in fresh:
                    self.budgets[ident] = fresh[ident]
                else:
                    self.budgets.pop(ident, None)
            return
        held = self.entries.get(kind)
        if held is None:
            return
        await self._reread(kind, list(held) if everything else [i for i in idents if i in held])

    async def _reread(self, kind: str, idents: list[str]) -> None:
        """Re-reads held records (batched); those gone from the store are dropped. A record put while
        the read ran is newer than what the read saw, so it stays."""
        if not idents:
            return
        mark = self._stamp
        fresh = await self.store.get_many(kind, idents)
        held = self.entries[kind]
        now = self.clock()
        for ident in idents:
            entry = held.get(ident)
            if entry is None or entry.stamp > mark:
                continue
            record = fresh.get(ident)
            self.generation += 1
            if record is None:
                del held[ident]
                continue
            self._stamp += 1
            entry.record, entry.read_at, entry.stamp = record, now, self._stamp
            self.on_record(kind, record)

    async def refresh(self) -> None:
        """The timer: the spend of every record used in the last `stale_after` seconds (other processes'
        spend), and every SAFETY_EVERY-th time those records whole, plus the budgets."""
        self._refreshes += 1
        whole = self._refreshes % SAFETY_EVERY == 0
        cutoff = self.clock() - self.stale_after
        for kind in HELD_KINDS:
            held = self.entries[kind]
            active = []
            for ident in reversed(held):  # most recently used first
                if held[ident].used_at < cutoff:
                    break
                active.append(ident)
            if whole:
                await self._reread(kind, active)
            elif active:
                await self._reread_spend(kind, active)
        if whole:
            self.budgets = {r[KINDS["budget"]]: r for r in await self.store.list("budget")}
            self.generation += 1

    async def _reread_spend(self, kind: str, idents: list[str]) -> None:
        mark = self._stamp
        spends = await self.store.spends_of(kind, idents)
        held = self.entries[kind]
        now = self.clock()
        for ident, spend in spends.items():
            entry = held.get(ident)
            if entry is not None and entry.stamp <= mark:
                self.generation += 1
                entry.record["spend"] = spend
                entry.read_at = now

    async def watch(self, interval: float, lock: asyncio.Lock) -> None:
        """The background task applying changes: at once when PostgreSQL pushes one, every `interval`
        seconds otherwise. Under `lock` (the spend tracker's), so a re-read never interleaves with a
        spend flush crediting the records it replaces."""
        wake = asyncio.Event()
        retry_listen = 0.0  # a failed LISTEN connection is tried again after PUSHED_POLL seconds
        while True:
            pushed = False
            if self.clock() >= retry_listen:
                pushed = await self.store.listen(wake.set)
                retry_listen = 0.0 if pushed else self.clock() + PUSHED_POLL
            if pushed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), PUSHED_POLL)
                wake.clear()
            else:
                await asyncio.sleep(interval)
            try:
                async with lock:
                    await self.sync()
            except Exception as exc:
                log.error("cache sync failed (will retry): %s", exc)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, kind: str, ident: str) -> Record | None:
        """From memory only: None when absent or not read yet (see the module docstring)."""
        if kind == "budget":
            return self.budgets.get(ident)
        entry = self.entries[kind].get(ident)
        return None if entry is None else entry.record

    def held(self, kind: str) -> list[Record]:
        """The records of `kind` in memory now (budgets: all of them)."""
        if kind == "budget":
            return list(self.budgets.values())
        return [e.record for e in self.entries[kind].values()]

    def all(self, kind: str) -> list[Record]:
        """Every budget. Other kinds are held only in part: list them from the store."""
        if kind != "budget":
            raise ValueError(f"{kind} records are held only in part; list them from the store")
        return list(self.budgets.values())

    def fresh_key(self, token_hash: str) -> Record | None:
        """The key's record when get_or_fetch("key", …) would answer it from memory as it is, its user
        and team fresh too; None when that needs a read (then get_or_fetch)."""
        record = self._hit("key", token_hash, self.clock())
        if record is None or self.unheld([("user", record.get("user_id")), ("team", record.get("team_id"))]):
            return None
        return record

    async def get_or_fetch(self, kind: str, ident: str) -> Record | None:
        """The record, read when absent or stale; a key comes with its user and team ensured."""
        if kind == "budget":
            found = self.budgets.get(ident)
            if found is None and (found := await self.store.get(kind, ident)) is not None:
                self.budgets[ident] = found
                self.generation += 1
            return found
        record = await self._fresh(kind, ident)
        if kind == "key" and record is not None:
            await self.ensure([("user", record.get("user_id")), ("team", record.get("team_id"))])
        return record

    async def ensure(self, wanted: Iterable[tuple[str, str | None]]) -> None:
        """Makes each (kind, id) readable by get(): read when absent or stale, one statement per kind."""
        need = self.unheld(wanted)
        if need:
            await self.read(need)

    def unheld(self, wanted: Iterable[tuple[str, str | None]]) -> dict[str, list[str]]:
        """What ensure(wanted) would read, by kind — empty when get() answers every one fresh now, so
        the request path awaits nothing (a coroutine per layer is ~1 µs at concurrency 1)."""
        now = self.clock()
        need: dict[str, list[str]] = {}
        for kind, ident in wanted:
            if not ident or kind == "budget":
                continue
            if self._hit(kind, ident, now) is None and ident not in need.get(kind, ()):
                if kind in MISSES_KEPT and ident not in self.entries[kind] and not self._may_look_up(kind, ident):
                    continue
                need.setdefault(kind, []).append(ident)
        return need

    async def read(self, need: dict[str, list[str]]) -> None:
        """Reads what unheld() listed."""
        for kind, idents in need.items():
            if len(idents) == 1:
                await self._read_one(kind, idents[0])
            else:
                await self._read_many(kind, idents)

    def _hit(self, kind: str, ident: str, now: float) -> Record | None:
        held = self.entries[kind]
        entry = held.get(ident)
        if entry is None or now - entry.read_at > self.stale_after:
            return None
        entry.used_at = now
        held.move_to_end(ident)
        return entry.record

    async def _fresh(self, kind: str, ident: str) -> Record | None:
        found = self._hit(kind, ident, self.clock())
        if found is not None:
            return found
        if kind in MISSES_KEPT and ident not in self.entries[kind] and not self._may_look_up(kind, ident):
            return None
        return await self._read_one(kind, ident)

    async def _read_one(self, kind: str, ident: str) -> Record | None:
        """One read of a record at a time: a request that needs it while it is read waits for that read,
        which is repeated if a write overtakes it (`_read_once`), so it is as fresh as a read of its own.
        Without this a hot key gone stale sent every request in flight to the store at once (256 reads
        queued on one SQLite connection at 256 connections: a p99 of seconds, bench/README.md)."""
        pending = self._reading.get((kind, ident))
        if pending is None:
            pending = self._reading[(kind, ident)] = asyncio.ensure_future(self._read_once(kind, ident))
            pending.add_done_callback(lambda done: self._read_done(kind, ident, done))
        return await asyncio.shield(pending)  # a caller cancelled does not cancel the others' read

    def _read_done(self, kind: str, ident: str, done: asyncio.Future[Record | None]) -> None:
        if self._reading.get((kind, ident)) is done:
            del self._reading[(kind, ident)]
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have been cancelled meanwhile

    async def _read_once(self, kind: str, ident: str) -> Record | None:
        record: Record | None = None
        started = self._stamp
        gated = 1 if kind in NEGATIVE_KINDS else 0
        self._in_flight += gated
        try:
            for _ in range(READ_TRIES):
                epoch, started = self._epoch, self._stamp
                record = await self.store.get(kind, ident)
                if self._epoch == epoch:
                    break
        finally:
            self._in_flight -= gated
        if record is None:
            self.generation += 1
            self.entries[kind].pop(ident, None)  # deleted meanwhile
            if kind in MISSES_KEPT:
                self._remember_miss(kind, ident)
            return None
        return self._install(kind, record, started)

    async def _read_many(self, kind: str, idents: list[str]) -> None:
        fresh: dict[str, Record] = {}
        started = self._stamp
        gated = len(idents) if kind in NEGATIVE_KINDS else 0
        self._in_flight += gated
        try:
            for _ in range(READ_TRIES):
                epoch, started = self._epoch, self._stamp
                fresh = await self.store.get_many(kind, idents)
                if self._epoch == epoch:
                    break
        finally:
            self._in_flight -= gated
        for ident in idents:
            record = fresh.get(ident)
            if record is not None:
                self._install(kind, record, started)
            else:
                self.generation += 1
                self.entries[kind].pop(ident, None)
                if kind in MISSES_KEPT:
                    self._remember_miss(kind, ident)

    def _install(self, kind: str, record: Record, started: int | None) -> Record:
        """Holds `record` as the most recently used. With `started` (the install count when its read
        began), a record installed since is newer and is kept instead."""
        ident = record[KINDS[kind]]
        held = self.entries[kind]
        now = self.clock()
        entry = held.get(ident)
        if entry is not None:
            held.move_to_end(ident)
            entry.used_at = now
            if started is not None and entry.stamp > started:
                return entry.record
            self.generation += 1
            self._stamp += 1
            entry.record, entry.read_at, entry.stamp = record, now, self._stamp
        else:
            self.generation += 1
            self._stamp += 1
            held[ident] = _Entry(record, now, self._stamp)
            while len(held) > self.max_entries:
                held.popitem(last=False)
        self.missing.pop((kind, ident), None)
        self.on_record(kind, record)
        return record

    def _may_look_up(self, kind: str, ident: str) -> bool:
        now = self.clock()
        until = self.missing.get((kind, ident))
        if until is not None:
            if now < until:
                return False
            del self.missing[(kind, ident)]
        if kind not in NEGATIVE_KINDS:
            return True
        self._this_second(now)
        return self._misses < MISS_LOOKUPS_PER_SECOND and self._in_flight < MAX_KEY_LOOKUPS_IN_FLIGHT

    def _this_second(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._second, self._misses = second, 0

    def _remember_miss(self, kind: str, ident: str) -> None:
        if kind in NEGATIVE_KINDS:  # only key lookups count toward the gate
            self._this_second(self.clock())
            self._misses += 1
        while len(self.missing) >= NEGATIVE_MAX:  # one TTL for all: the first entry expires first
            del self.missing[next(iter(self.missing))]
        self.missing[(kind, ident)] = self.clock() + NEGATIVE_TTL

    # -- this process's writes ------------------------------------------------------------------

    def put(self, kind: str, record: Record) -> None:
        """A record this process just wrote (or read): held as the newest."""
        self._epoch += 1
        self.generation += 1
        if kind == "budget":
            self.budgets[record[KINDS[kind]]] = record
            return
        self._install(kind, record, None)

    def remember(self, kind: str, record: Record) -> None:
        """put() for the spend flush (window resets)."""
        self.put(kind, record)

    def credited(self) -> None:
        """Spend was applied to the store (the caller adds it to the held records, in place): a read
        begun before it is read again."""
        self._epoch += 1
        self.generation += 1

    def forget_miss(self, kind: str, ident: str) -> None:
        self.missing.pop((kind, ident), None)

    def drop(self, kind: str, ident: str) -> None:
        self._epoch += 1
        self.generation += 1
        if kind == "budget":
            self.budgets.pop(ident, None)
            return
        self.entries[kind].pop(ident, None)
