"""Spend tracking behind the reply: each call's exact cost goes into the C++ ledger at once (so
budgets see it), and a background flush writes the accumulated increments and the spend log rows to
the database in one transaction, every `spend_flush_interval` and at shutdown.

The spend a budget check sees = the record's spend as last read from the database + what this process
has recorded and not yet written. A write that fails with the database unreachable is kept and retried
first on the next flush; a retry refused as a duplicate was in fact applied by the attempt whose reply
was lost, and is dropped. A write the database refuses for its data (store.RecordError, or any failure
while the database answers) is split by calls and the halves written, down to the one call at fault,
which is dead-lettered (logged, counted, kept in `dead_letters`): one bad row never stops the others.
Parts are never merged again, so a duplicate always means "this very part was applied".

Team members: each call of a key with both a team and a user adds to that member's own spend record
(kind "member", store.member_id), which the member's budget in the team is checked against — the
ledger knows keys, users, teams and customers, so members are summed here from the calls.

Budget windows: the same loop starts each due window (windows.py, which only one process wins) before
it writes new spend, so spend recorded within one flush interval before `budget_reset_at` may count
towards the new window (never towards both). Read-side checks reset at the exact instant
(guards.window_spend).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._native import core
from . import metrics
from .cache import EntityCache
from .store.base import DuplicateError, RecordError, SpendBatch, SpendLog, Store, member_id
from .store.codec import add_money
from .windows import BudgetWindows, DurationOf

if TYPE_CHECKING:
    from .spend_journal import SpendJournal

log = logging.getLogger("llmbill.proxy")

PERSISTED = ("key", "user", "team", "customer")  # the ledger's kinds the flush writes (members: from the logs)
MAX_ATTEMPTS = 5  # failed writes of one call, the database answering, before it is dead-lettered
DEAD_LETTERS_KEPT = 1000  # the latest dead-lettered rows, kept for inspection (all are logged)
_APPLIED, _REFUSED, _FAILED, _DOWN = object(), object(), object(), object()



def member_of(row: SpendLog) -> str | None:
    """The team member a call's spend counts for, if its key has both a team and a user."""
    return member_id(row.team_id, row.user) if row.team_id and row.user else None


def calls_batch(logs: Sequence[SpendLog]) -> SpendBatch:
    """The batch of these calls alone: their rows and the increments they add (each call adds its cost
    to its key, user, team and customer, as the ledger did), summed exactly."""
    batch = SpendBatch(logs=list(logs))
    for row in logs:
        if not row.spend:
            continue
        for kind, ident in (("key", row.api_key), ("user", row.user), ("team", row.team_id),
                            ("customer", row.end_user)):
            if ident:
                batch.increments[(kind, ident)] = add_money(batch.increments.get((kind, ident), Decimal(0)), row.spend)
        member = member_of(row)
        if member is not None:
            batch.increments[("member", member)] = add_money(batch.increments.get(("member", member), Decimal(0)),
                                                             row.spend)
    return batch


class SpendTracker:
    def __init__(self, store: Store, cache: EntityCache, timezone_name: str = "UTC") -> None:
        self.store = store
        self.cache = cache
        self.timezone = timezone_name
        self.ledger = core.Ledger()
        self.logs: list[SpendLog] = []
        self.unwritten: list[SpendBatch] = []  # parts whose write failed, retried first, never merged
        self.writing: list[SpendBatch] = []  # the parts of the write in progress, not yet applied
        self.lock = asyncio.Lock()  # flush, resets and cache refresh never interleave
        self.flush_failures = 0
        self.dead_letters: deque[tuple[SpendLog, str]] = deque(maxlen=DEAD_LETTERS_KEPT)
        self._attempts: dict[str, int] = {}  # request_id of a one-call part → failed writes, database up
        self._members: dict[str, Decimal] = {}  # member → spend of the calls in self.logs
        self.duration_of: DurationOf = lambda kind, record: record.get("budget_duration")
        self.windows = BudgetWindows(store, cache, timezone_name, lambda kind, record: self.duration_of(kind, record))
        cache.on_record = self.windows.track
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.journal: SpendJournal | None = None  # settle appends each row; see recover()

    def record(self, usage: core.Usage, cost: core.Cost | Decimal | None, log_row: SpendLog, *, model: str) -> None:
        # cost None: an unpriced model, counted in requests and tokens with no money; a Decimal: billed with a margin.
        self.ledger.record(usage, cost, model=model, key=log_row.api_key, user=log_row.user,
                           team=log_row.team_id, customer=log_row.end_user)
        self.note(log_row)

    def note(self, log_row: SpendLog) -> None:
        """A call the ledger has already recorded: its row, for the flush."""
        self.note_settled(log_row, log_row.spend, log_row.user, log_row.team_id)

    def note_settled(self, log_row: SpendLog, spend: Decimal, user: str, team: str) -> None:
        """note() of a call core.settle_call recorded, given what its row holds (its spend, its key's
        user and team) so that the row, a LineLog, need not be read."""
        self.logs.append(log_row)
        if team and user and spend:  # member_of
            member = member_id(team, user)
            self._members[member] = add_money(self._members.get(member, Decimal(0)), spend)

    def pending(self, kind: str, ident: str) -> Decimal:
        """Recorded here and not yet in the cached records: the ledger, the parts being written (they
        left the ledger before the write and join the records only once applied), failed parts."""
        amount: Decimal = self._members.get(ident, Decimal(0)) if kind == "member" else self.ledger.spend(kind, ident)
        for parts in (self.writing, self.unwritten):
            for batch in parts:
                amount += batch.increments.get((kind, ident), Decimal(0))
        return amount

    def spend(self, kind: str, ident: str, record: dict[str, Any] | None = None) -> Decimal:
        """The stored spend (of the held record, else of `record` when the caller read it from the store)
        plus what is pending here."""
        held = self.cache.get(kind, ident)
        source = held if held is not None else record
        base = source.get("spend", Decimal(0)) if source else Decimal(0)
        return Decimal(base) + self.pending(kind, ident)

    async def _write(self, parts: list[SpendBatch]) -> bool:
        """Writes `parts` one transaction each. A part the database refuses is split by calls and its
        halves written, down to one call, which is dead-lettered: one bad row never holds back the
        others. False when the database is unreachable; what was not applied waits in `unwritten`."""
        queue = self.writing = list(parts)  # pending() counts each part until it is applied
        try:
            while queue:
                part = queue[0]
                outcome, reason = await self._apply(part)
                queue.pop(0)  # no await from here to the next write: pending() stays exact
                if outcome is _APPLIED:
                    self._credit(part)
                elif outcome is _DOWN:
                    self.unwritten += [part, *queue]
                    queue.clear()
                    return False
                elif len(part.logs) > 1:
                    half = len(part.logs) // 2
                    queue[0:0] = [calls_batch(part.logs[:half]), calls_batch(part.logs[half:])]
                elif outcome is _REFUSED or self._attempts_of(part) >= MAX_ATTEMPTS:
                    self._dead_letter(part, reason)
                else:
                    self.unwritten.append(part)  # an unexplained failure of one call: retried next time
            return True
        finally:
            self.unwritten += queue  # cancelled mid-write: the parts not yet applied are kept
            self.writing = []

    async def _apply(self, part: SpendBatch) -> tuple[object, str]:
        """One transaction: (outcome, why it failed)."""
        try:
            await self.store.apply_spend(part)
        except DuplicateError:
            log.warning("spend batch already applied by an earlier attempt; not applied twice")
        except RecordError as exc:
            self.flush_failures += 1
            if len(part.logs) > 1:
                log.warning("spend flush of %d calls refused (isolating the bad one): %s", len(part.logs), exc)
            return _REFUSED, str(exc)
        except Exception as exc:
            self.flush_failures += 1
            if not await self.store.ping():
                log.error("spend flush failed, the database is unreachable (will retry): %s", exc)
                return _DOWN, str(exc)
            log.error("spend flush of %d call(s) failed with the database up (isolating them): %s",
                      len(part.logs), exc)
            if len(part.logs) == 1:
                rid = part.logs[0].request_id
                self._attempts[rid] = self._attempts.get(rid, 0) + 1
            return _FAILED, str(exc)
        if self._attempts:  # only calls that failed alone are counted; reading a row's id reads its line
            for row in part.logs:
                self._attempts.pop(row.request_id, None)
        return _APPLIED, ""

    def _attempts_of(self, part: SpendBatch) -> int:
        return self._attempts.get(part.logs[0].request_id, 0) if part.logs else MAX_ATTEMPTS

    def _credit(self, part: SpendBatch) -> None:
        """The applied amounts join the held records. A record not held is read with them when next
        needed (a customer or member the flush created, too); a read in flight is read again."""
        self.cache.credited()
        for (kind, ident), amount in part.increments.items():
            record = self.cache.get(kind, ident)
            if record is not None:
                record["spend"] = Decimal(record.get("spend", 0)) + amount
            else:  # a customer's first call created its record: a remembered miss would hide it
                self.cache.forget_miss(kind, ident)

    def _dead_letter(self, part: SpendBatch, reason: str) -> None:
        if not part.logs:
            log.error("spend increments %s cannot be stored and are dropped: %s", part.increments, reason)
        for row in part.logs:
            self._attempts.pop(row.request_id, None)
            self.dead_letters.append((row, reason))
            metrics.SPEND_DEAD_LETTERS.inc()
            log.error("spend of call %s (%s USD, key %s, customer %r, model %r) cannot be stored and is left out "
                      "of the spend tables: %s (its Lago event is unaffected; `llmbill reconcile` lists it)",
                      row.request_id, format(row.spend, "f"), row.api_key or "master", row.end_user[:80],
                      row.model[:80], reason)

    async def flush(self) -> bool:
        """Writes what failed before, then what was recorded since; True when nothing is left unwritten."""
        async with self.lock:
            await self._reset_due_windows()
            retry, self.unwritten = self.unwritten, []
            if retry and not await self._write(retry):
                return False  # the database is down: new spend waits in the ledger
            # Every row drained below is in a journal file up to `mark` (no await in between).
            mark = self.journal.mark() if self.journal is not None else None
            batch = SpendBatch()
            for kind, ident, totals in self.ledger.drain():
                if kind in PERSISTED and totals.spend_units:
                    batch.add(kind, ident, totals.spend)
            for member, amount in self._members.items():
                batch.add("member", member, amount)
            batch.logs.extend(self.logs)
            self.logs, self._members = [], {}
            if batch:
                await self._write([batch])
            if self.journal is not None:
                # Applied or dead-lettered: the journal's cursor passes them. Unlinks and the next
                # file's creation in a thread: filesystem journal operations stall the loop's callers.
                await asyncio.to_thread(self.journal.tidy, mark if not self.unwritten else None)
            return not self.unwritten

    async def recover(self, journal: SpendJournal) -> int:
        """Called once at start, before the first call: the calls a killed process journaled and
        did not flush are written now (the rows whose request_id is already in spend_logs were
        flushed just before the kill and are skipped). Returns how many calls were applied; what
        the database cannot take now stays in `unwritten`, and its journal files with it."""
        self.journal = journal
        rows, mark = journal.recovered()
        if not rows:
            journal.release(mark)
            return 0
        async with self.lock:
            logged = await self.store.logged_request_ids([row.request_id for row in rows])
            fresh: dict[str, SpendLog] = {}
            for row in rows:
                if row.request_id not in logged:
                    fresh.setdefault(row.request_id, row)
            if fresh:
                await self._write([calls_batch(list(fresh.values()))])
            if not self.unwritten:
                journal.release(mark)
        log.warning("spend journal: %d call(s) of a stopped process recovered (%d were already stored)",
                    len(fresh), len(rows) - len(fresh))
        return len(fresh)

    async def _reset_due_windows(self) -> None:
        await self.windows.apply(self.clock())

    async def refresh_cache(self) -> None:
        async with self.lock:
            await self.cache.refresh()

    async def run(self, interval: float, refresh_interval: float) -> None:
        """The background loops: flush every `interval`, refresh the cache every `refresh_interval`, each
        on its own timer (they take turns on `lock`). One after the other, a flush that ran long made the
        refresh late: at 256 connections each of a flush's statements waits out a turn of the busy loop,
        so the refresh came every 2-3 s instead of 1, the records in use went stale (2 x the refresh
        interval) and every request waited for their re-read behind the flush (bench/README.md)."""
        await asyncio.gather(_every(interval, self.flush, "spend flush loop: %s"),
                             _every(refresh_interval, self.refresh_cache, "cache refresh failed: %s"))


async def _every(interval: float, work: Callable[[], Awaitable[object]], failure: str) -> None:
    """`work()` every `interval` seconds after the last one ended; a failure is logged, the loop goes on."""
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except Exception as exc:
            log.error(failure, exc)
