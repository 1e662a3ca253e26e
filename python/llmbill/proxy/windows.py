"""Budget windows of the records a process holds: started and reset on time, from a schedule.

Every record entering the cache (cache.on_record) is scheduled here when a duration governs its budget
(`duration_of`): by its `budget_reset_at`, or as a window to start when it has none. The spend flush
calls `apply(now)` first: what is due is written with one statement per kind (store.reset_windows,
store.start_windows; the reset is guarded by the stored time, so of several processes noticing the same
expiry one wins), then those records are read back. Nothing visits every record: a record not held
is checked when it is next read (its reset time is then past, so it is due at the next flush), and
until then the budget check counts only the spend recorded since (guards.window_spend).

Durations `s`, `m`, `h` roll from the last reset; `d`, `w`, `mo` keep their calendar boundaries: the
next reset is the first boundary after now, counted from the one that passed (durations.next_reset).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .cache import EntityCache
from .durations import next_reset
from .store.base import KINDS, WINDOWED, Store

# (kind, record) → the budget_duration that governs the record's window, or None.
DurationOf = Callable[[str, dict[str, Any]], str | None]
COMPACT_SLACK = 1000  # schedule entries beyond twice the held records before it is rebuilt


class BudgetWindows:
    def __init__(self, store: Store, cache: EntityCache, timezone_name: str, duration_of: DurationOf) -> None:
        self.store = store
        self.cache = cache
        self.timezone = timezone_name
        self.duration_of = duration_of
        self._schedule: list[tuple[datetime, str, str]] = []  # (reset_at, kind, id), earliest first
        self._unstarted: set[tuple[str, str]] = set()

    def track(self, kind: str, record: dict[str, Any]) -> None:
        """Schedules a record that entered the cache (or changed); a stale entry is skipped when due."""
        if kind not in WINDOWED or not self.duration_of(kind, record):
            return
        ident = record[KINDS[kind]]
        reset_at = record.get("budget_reset_at")
        if isinstance(reset_at, datetime):
            heapq.heappush(self._schedule, (reset_at, kind, ident))
            if len(self._schedule) > 2 * sum(len(self.cache.entries[k]) for k in WINDOWED) + COMPACT_SLACK:
                self._compact()
        else:
            self._unstarted.add((kind, ident))

    def _compact(self) -> None:
        """Duplicates pile up as records are read again; rebuilt from what is held (rarely)."""
        schedule = []
        for kind in WINDOWED:
            for record in self.cache.held(kind):
                reset_at = record.get("budget_reset_at")
                if isinstance(reset_at, datetime) and self.duration_of(kind, record):
                    schedule.append((reset_at, kind, record[KINDS[kind]]))
        heapq.heapify(schedule)
        self._schedule = schedule

    def next_due(self) -> datetime | None:
        return self._schedule[0][0] if self._schedule else None

    async def apply(self, now: datetime) -> None:
        """Starts the windows that never started and resets those due (see the module docstring)."""
        if not self._unstarted and (not self._schedule or self._schedule[0][0] > now):
            return
        starts: dict[str, dict[str, datetime]] = {}
        resets: dict[str, dict[str, datetime]] = {}
        unstarted, self._unstarted = self._unstarted, set()
        popped: list[tuple[datetime, str, str]] = []
        for kind, ident in unstarted:
            record = self.cache.get(kind, ident)
            duration = self.duration_of(kind, record) if record is not None else None
            if record is not None and duration and not isinstance(record.get("budget_reset_at"), datetime):
                starts.setdefault(kind, {})[ident] = next_reset(now, duration, self.timezone)
        while self._schedule and self._schedule[0][0] <= now:
            item = heapq.heappop(self._schedule)
            popped.append(item)
            reset_at, kind, ident = item
            record = self.cache.get(kind, ident)
            if record is None or record.get("budget_reset_at") != reset_at:
                continue  # read again (or dropped) since it was scheduled
            duration = self.duration_of(kind, record)
            if not duration:
                continue
            following = next_reset(reset_at, duration, self.timezone)
            while following <= now:
                following = next_reset(following, duration, self.timezone)
            resets.setdefault(kind, {})[ident] = following
        try:
            for kind in sorted(set(starts) | set(resets)):
                if kind in starts:
                    await self.store.start_windows(kind, starts[kind])
                if kind in resets:
                    await self.store.reset_windows(kind, resets[kind], now)
                fresh = await self.store.get_many(kind, [*starts.get(kind, {}), *resets.get(kind, {})])
                for record in fresh.values():
                    self.cache.remember(kind, record)  # scheduled again through cache.on_record
        except BaseException:
            self._unstarted |= unstarted  # tried again at the next flush
            for item in popped:
                heapq.heappush(self._schedule, item)
            raise
