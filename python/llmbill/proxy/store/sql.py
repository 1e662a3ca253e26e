"""The Store operations written once over a tiny transaction interface; the backends supply a Dialect
(column types, placeholders, value conversions), transactions and the spend increment.

Locking: every transaction that locks several entity rows takes them sorted by (kind, id), and the
`meta` version row last, so concurrent writers cannot deadlock one another.

Changes: a write takes the next version (`UPDATE meta ... RETURNING`, which holds the version row until
commit, so versions commit in order) and logs its (kind, id) rows in `changes` under it; a reader asks
for the versions after its own and checks that every one of them is there.
"""

from __future__ import annotations

import abc
import builtins
import asyncio
import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, Protocol

import orjson

from .base import DuplicateError, Record, RecordError, SpendBatch, SpendLog, Store, StoreError, member_id
from .codec import (RESET_FIELD, TABLES, EncodedRecord, Table, check_filters, decode_record, dumps, encode_record,
                    loads, money, now, spend_table, table, utc)
from .log_line import LOG_FIELDS, LOG_TYPES, encode_line
from .loop_share import LoopShare

SCHEMA_VERSION = 4
# Schema changes an existing database needs to reach each version (from the one before it); a fresh
# database gets the whole schema() instead.
UPGRADES: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE spend_logs ADD COLUMN response_id TEXT NOT NULL DEFAULT ''",),
    3: (),  # ui_sessions: a new table, created by schema()
    4: (),  # the reset_at column, member spend and the change log: _to_v4
}
# Admin UI sign-ins, shared by every worker and replica: the sha256 of the session id (the id itself
# is only in the browser's cookie), its CSRF token, its expiry in ms since the epoch.
UI_SESSIONS_DDL = ("CREATE TABLE IF NOT EXISTS ui_sessions (digest TEXT PRIMARY KEY, csrf TEXT NOT NULL, "
                   "expires_ms BIGINT NOT NULL)")
CHANGES_KEPT = 10_000  # versions the change log keeps; a reader further behind forgets its cache
CHUNK = 500  # ids per statement of the *_many operations
PING_TIMEOUT = 5.0
# A spend-log row made in Python is encoded as its line (log_line.py, a few µs) on the event loop, as
# is every row of a batch that goes row by row (converted for its columns); a row the core settled
# comes as its line. The flush gives the loop back after LOG_TURN_SECONDS of that work: a thousand
# calls' rows converted in one go held the loop ~15 ms, every request of that moment waiting for it,
# and 100 rows a turn still held it 0.5-0.9 ms on a cold loop (bench/README.md, "The spend flush and
# the c=1 p99"). A time budget holds whatever a row costs. On a busy loop a slice grows to
# LOG_TURN_SHARE of the loop's other work, up to LOG_TURN_MOST (loop_share.py).
LOG_TURN_SECONDS = 100e-6
LOG_TURN_SHARE = 0.25
LOG_TURN_MOST = 0.02
_turn_clock = time.perf_counter  # tests step it
LOG_FILTERS = frozenset({"api_key", "user", "team_id", "end_user", "model", "request_id", "response_id"})
_LOG_TYPES = LOG_TYPES
_LOG_INDEXED = ("start_time", "api_key", "team_id", "end_user", "user", "response_id")


def q(name: str) -> str:
    """A quoted identifier (`user` is reserved in PostgreSQL)."""
    return f'"{name}"'


_LOG_COLUMNS = ", ".join(map(q, LOG_FIELDS))


def json_log_insert(elements: str, casts: Mapping[str, str]) -> str:
    """The INSERT of a batch's spend-log lines bound as one JSON array (log_line.py's form): `elements`
    the table function over the array's elements (a column `value`), `casts[kind]` the expression
    turning a column of that kind out of its text (`{}`: the element's `value ->> i`; none: as it is)."""
    values = (casts.get(LOG_TYPES.get(name, "text"), "{}").format(f"value ->> {i}") for i, name in enumerate(LOG_FIELDS))
    return f"INSERT INTO spend_logs ({_LOG_COLUMNS}) SELECT {', '.join(values)} FROM {elements}"


@dataclass(frozen=True)
class Dialect:
    money_type: str
    time_type: str
    json_type: str
    seq_column: str  # an increasing key: list() returns records in creation order
    for_update: str  # row lock for read-modify-write ("" where the transaction already is exclusive)
    unlimited: int | None  # the LIMIT value meaning "no limit"
    schema_lock: str | None  # serialises concurrent schema creation
    table_exists: str  # a row when the table named by the one parameter exists
    placeholder: Callable[[int], str]  # 1-based parameter number -> placeholder text
    money_in: Callable[[Decimal], Any]
    money_out: Callable[[Any], Decimal]
    time_in: Callable[[datetime], Any]
    time_out: Callable[[Any], datetime]
    time_cast: str  # makes a time parameter's type explicit where nothing else says it (PostgreSQL)
    json_text: str  # the data column as text, for LIKE
    notify: str | None  # a statement taking the new version: wakes the other processes at commit
    # Spend-log rows go in as their lines, one JSON array bound to one statement (json_log_insert): a
    # SQLite writer thread, which takes the GIL back after every statement, then does so once a flush,
    # not once a row (bench/README.md, "The spend flush's GIL hand-offs"), and no row is converted.
    # None: a statement a row.
    json_log_insert: str | None = None


class Params:
    """Collects query parameters: `p(value)` returns the placeholder for the value."""

    def __init__(self, dialect: Dialect) -> None:
        self.values: list[Any] = []
        self._dialect = dialect

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self._dialect.placeholder(len(self.values))


def schema(d: Dialect) -> list[str]:
    """Idempotent DDL: every statement may run again on an existing schema."""
    out = ["CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)"]
    for t in TABLES.values():
        cols = [f"seq {d.seq_column}", f"{q(t.id_col)} TEXT NOT NULL UNIQUE",
                *(f"{q(c)} TEXT" for c in t.indexed), f"data {d.json_type} NOT NULL"]
        if t.has_spend:
            cols.append(f"spend {d.money_type} NOT NULL")
        if t.windowed:
            cols.append(f"reset_at {d.time_type}")
        cols.append(f"created_at {d.time_type} NOT NULL")
        out.append(f"CREATE TABLE IF NOT EXISTS {t.name} ({', '.join(cols)})")
        out += [f"CREATE INDEX IF NOT EXISTS {t.name}_{c} ON {t.name} ({q(c)})" for c in t.indexed]
    types = {"money": d.money_type, "time": d.time_type, "json": d.json_type, "int": "BIGINT", "text": "TEXT"}
    cols = [f"{q(n)} {types[_LOG_TYPES.get(n, 'text')]} NOT NULL" for n in LOG_FIELDS]
    cols[0] += " PRIMARY KEY"  # request_id
    out.append(f"CREATE TABLE IF NOT EXISTS spend_logs ({', '.join(cols)})")
    out += [f"CREATE INDEX IF NOT EXISTS spend_logs_{c} ON spend_logs ({q(c)})" for c in _LOG_INDEXED]
    out.append(UI_SESSIONS_DDL)
    out.append("CREATE TABLE IF NOT EXISTS changes (seq BIGINT NOT NULL, kind TEXT NOT NULL, ident TEXT NOT NULL)")
    out.append("CREATE INDEX IF NOT EXISTS changes_seq ON changes (seq)")
    out += [f"INSERT INTO meta (name, value) VALUES ('{name}', {value}) ON CONFLICT (name) DO NOTHING"
            for name, value in (("version", 0), ("schema", SCHEMA_VERSION))]
    return out


def log_converters(d: Dialect) -> tuple[Callable[[Any], Any], ...]:
    """The conversion to the column's value of each spend_logs column, in order."""
    convert: dict[str, Callable[[Any], Any]] = {
        "money": lambda v: d.money_in(money(v)), "time": d.time_in, "json": lambda v: dumps(dict(v)),
        "int": int, "text": str}
    return tuple(convert[_LOG_TYPES.get(n, "text")] for n in LOG_FIELDS)


_LOG_VALUES = attrgetter(*LOG_FIELDS)
# operator.call (3.11+) applies each converter in C; on 3.10 a Python function does the same.
_apply: Callable[..., Any] = getattr(operator, "call", lambda convert, value: convert(value))


def log_row(d: Dialect, log: SpendLog, converters: tuple[Callable[[Any], Any], ...] | None = None
            ) -> tuple[Any, ...]:
    # map and operator.call loop in C (3.11+): a Python frame only for the money, time and JSON columns.
    return tuple(map(_apply, converters or log_converters(d), _LOG_VALUES(log)))


def log_from_row(d: Dialect, row: Sequence[Any]) -> SpendLog:
    convert: dict[str, Callable[[Any], Any]] = {
        "money": d.money_out, "time": d.time_out, "json": loads, "int": int, "text": str}
    return SpendLog(**{n: convert[_LOG_TYPES.get(n, "text")](row[i]) for i, n in enumerate(LOG_FIELDS)})


class Tx(Protocol):
    """One connection, inside a transaction for writes. Rows are indexable by column position."""

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None: ...

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class SqlStore(Store):
    """Store over SQL; subclasses connect, run transactions and add spend."""

    dialect: Dialect

    @abc.abstractmethod
    def _transaction(self, write: bool) -> AbstractAsyncContextManager[Tx]:
        """A connection; with `write`, inside one transaction that commits on exit and rolls back on an
        exception. Raises StoreError (DuplicateError on a unique violation) for database failures."""

    @abc.abstractmethod
    async def _increment(self, tx: Tx, t: Table, items: list[tuple[str, Decimal]]) -> None:
        """Adds each amount to the record's spend, exactly; missing records are skipped, or created
        with that spend when `t.upserted`. `items` are sorted by id."""

    # -- helpers for the backends ---------------------------------------------------------------

    async def _migrate(self) -> None:
        """Creates the schema unless it is current. DDL runs only then: even `CREATE INDEX IF NOT
        EXISTS` locks its table, and would deadlock with processes already adding spend."""
        d = self.dialect
        async with self._transaction(True) as tx:
            if d.schema_lock:
                await tx.execute(d.schema_lock)
            found = None
            existing = await tx.fetchone(d.table_exists, ("meta",)) is not None
            if existing:
                row = await tx.fetchone("SELECT value FROM meta WHERE name = 'schema'")
                found = None if row is None else int(row[0])
            # A database from before the schema was numbered has version 1's tables.
            at = found if found is not None else 1 if existing else SCHEMA_VERSION
            if existing and at < 4:
                for t in TABLES.values():
                    # A table version 4 created (members) does not exist yet: schema() makes it whole below.
                    if t.windowed and await tx.fetchone(d.table_exists, (t.name,)) is not None:
                        await tx.execute(f"ALTER TABLE {t.name} ADD COLUMN reset_at {d.time_type}")
            if at < SCHEMA_VERSION:
                for version in range(at + 1, SCHEMA_VERSION + 1):
                    for statement in UPGRADES.get(version, ()):
                        await tx.execute(statement)
            if found is None or found < SCHEMA_VERSION:
                for statement in schema(d):
                    await tx.execute(statement)
                await tx.execute(f"UPDATE meta SET value = {SCHEMA_VERSION} WHERE name = 'schema'")
            if existing and at < 4:
                await self._to_v4(tx)
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(f"the database schema ({found}) is newer than this llmbill's ({SCHEMA_VERSION})")

    async def _to_v4(self, tx: Tx) -> None:
        """Reset times move from the records' data to their column; each team member's spend starts as
        the spend of the member's keys in the team (what the budget check summed before)."""
        d = self.dialect
        ph = d.placeholder
        for t in TABLES.values():
            if not t.windowed:
                continue
            rows = await tx.fetch(f"SELECT {q(t.id_col)}, data FROM {t.name} WHERE {d.json_text} LIKE {ph(1)}",
                                  (f'%"{RESET_FIELD}":{{%',))
            for ident, data in rows:
                record = loads(data)
                at = record.get(RESET_FIELD)
                if isinstance(at, datetime):
                    record[RESET_FIELD] = None
                    await tx.execute(f"UPDATE {t.name} SET reset_at = {ph(1)}{d.time_cast}, data = {ph(2)} "
                                     f"WHERE {q(t.id_col)} = {ph(3)}", (d.time_in(at), dumps(record), ident))
        sums: dict[str, Decimal] = {}
        rows = await tx.fetch("SELECT team_id, user_id, spend FROM keys WHERE team_id IS NOT NULL AND user_id IS NOT NULL")
        for team_id, user_id, spend in rows:
            ident = member_id(team_id, user_id)
            sums[ident] = sums.get(ident, Decimal(0)) + d.money_out(spend)
        t = TABLES["member"]
        for ident, total in sorted(sums.items()):
            await tx.execute(*self._insert_sql(t, encode_record(t, {t.id_col: ident, "spend": total})))

    def _insert_sql(self, t: Table, rec: EncodedRecord) -> tuple[str, list[Any]]:
        d = self.dialect
        p = Params(d)
        cols = [t.id_col, *t.indexed, "data"]
        vals = [p(rec.ident), *(p(v) for v in rec.indexed), p(rec.data)]
        if t.has_spend:
            cols.append("spend")
            vals.append(p(d.money_in(rec.spend if rec.spend is not None else Decimal(0))))
        if t.windowed:
            cols.append("reset_at")
            vals.append(p(None if rec.reset_at is None else d.time_in(rec.reset_at)) + d.time_cast)
        cols.append("created_at")
        vals.append(p(d.time_in(now())))
        return f"INSERT INTO {t.name} ({', '.join(map(q, cols))}) VALUES ({', '.join(vals)})", p.values

    def _select(self, t: Table) -> str:
        return f"SELECT data{', spend' if t.has_spend else ''}{', reset_at' if t.windowed else ''} FROM {t.name}"

    def _record(self, t: Table, row: Sequence[Any], rec: EncodedRecord | None = None) -> Record:
        """The record of a `_select` row; with `rec`, the row's spend with `rec`'s data and reset time."""
        d = self.dialect
        spend = d.money_out(row[1]) if t.has_spend else None
        if rec is not None:
            return decode_record(t, rec.data, spend, rec.reset_at)
        raw_reset = row[2 if t.has_spend else 1] if t.windowed else None
        return decode_record(t, row[0], spend, None if raw_reset is None else d.time_out(raw_reset))

    async def _locked(self, tx: Tx, t: Table, ident: str) -> Any | None:
        where = f" WHERE {q(t.id_col)} = {self.dialect.placeholder(1)}{self.dialect.for_update}"
        return await tx.fetchone(self._select(t) + where, (ident,))

    async def _changed(self, tx: Tx, kind: str, idents: Sequence[str]) -> None:
        """The next version, with the ids it changed, in the caller's transaction (see the module doc)."""
        d = self.dialect
        ph = d.placeholder
        row = await tx.fetchone("UPDATE meta SET value = value + 1 WHERE name = 'version' RETURNING value")
        if row is None:
            raise StoreError("the meta table has no version row")
        version = int(row[0])
        await tx.executemany(f"INSERT INTO changes (seq, kind, ident) VALUES ({ph(1)}, {ph(2)}, {ph(3)})",
                             [(version, kind, ident) for ident in idents])
        await tx.execute(f"DELETE FROM changes WHERE seq <= {ph(1)}", (version - CHANGES_KEPT,))
        if d.notify:
            await tx.execute(d.notify, (str(version),))

    def _in(self, p: Params, idents: Sequence[str]) -> str:
        return ", ".join(p(i) for i in idents)

    # -- Store ----------------------------------------------------------------------------------

    async def ping(self) -> bool:
        async def probe() -> bool:
            async with self._transaction(False) as tx:
                row = await tx.fetchone("SELECT 1")
            return row is not None and row[0] == 1

        try:
            return await asyncio.wait_for(probe(), PING_TIMEOUT)
        except (StoreError, asyncio.TimeoutError):
            return False

    async def insert(self, kind: str, record: Record) -> Record:
        t = table(kind)
        rec = encode_record(t, record)
        sql, values = self._insert_sql(t, rec)
        try:
            async with self._transaction(True) as tx:
                await tx.execute(sql, values)
                await self._changed(tx, kind, [rec.ident])
        except DuplicateError as exc:
            raise DuplicateError(f"{kind} {rec.ident!r} already exists") from exc
        return decode_record(t, rec.data, rec.spend, rec.reset_at)

    async def insert_many(self, kind: str, records: Sequence[Record]) -> int:
        t = table(kind)
        encoded = [self._insert_sql(t, encode_record(t, r)) for r in records]
        if not encoded:
            return 0
        async with self._transaction(True) as tx:
            for start in range(0, len(encoded), CHUNK * 10):
                part = encoded[start:start + CHUNK * 10]
                await tx.executemany(part[0][0], [values for _, values in part])
            await self._changed(tx, kind, ["*"])
        return len(encoded)

    async def get(self, kind: str, ident: str) -> Record | None:
        t = table(kind)
        async with self._transaction(False) as tx:
            row = await tx.fetchone(f"{self._select(t)} WHERE {q(t.id_col)} = {self.dialect.placeholder(1)}",
                                    (ident,))
        return None if row is None else self._record(t, row)

    async def get_many(self, kind: str, idents: Sequence[str]) -> dict[str, Record]:
        t = table(kind)
        wanted = list(dict.fromkeys(idents))
        out: dict[str, Record] = {}
        for start in range(0, len(wanted), CHUNK):
            p = Params(self.dialect)
            sql = f"{self._select(t)} WHERE {q(t.id_col)} IN ({self._in(p, wanted[start:start + CHUNK])})"
            async with self._transaction(False) as tx:
                rows = await tx.fetch(sql, p.values)
            for row in rows:
                record = self._record(t, row)
                out[record[t.id_col]] = record
        return out

    async def update(self, kind: str, ident: str, fields: Mapping[str, Any]) -> Record | None:
        t = table(kind)
        if t.has_spend and "spend" in fields:
            raise ValueError(f"update() cannot set a {kind}'s spend (use apply_spend or reset_spend)")
        if t.id_col in fields and fields[t.id_col] != ident:
            raise ValueError(f"update() cannot change a {kind}'s {t.id_col}")
        async with self._transaction(True) as tx:
            row = await self._locked(tx, t, ident)
            if row is None:
                return None
            record = self._record(t, row)
            record.pop("spend", None)
            record.update(fields)
            rec = encode_record(t, record)
            await tx.execute(*self._rewrite(t, ident, rec))
            await self._changed(tx, kind, [ident])
        return self._record(t, row, rec)

    def _rewrite(self, t: Table, ident: str, rec: EncodedRecord, zero_spend: bool = False) -> tuple[str, list[Any]]:
        """UPDATE of a record's data, indexed columns and reset time (and spend to 0)."""
        d = self.dialect
        p = Params(d)
        sets = [f"{q(c)} = {p(v)}" for c, v in zip(t.indexed, rec.indexed)] + [f"data = {p(rec.data)}"]
        if t.windowed:
            sets.append(f"reset_at = {p(None if rec.reset_at is None else d.time_in(rec.reset_at))}{d.time_cast}")
        if zero_spend:
            sets.append(f"spend = {p(d.money_in(Decimal(0)))}")
        return f"UPDATE {t.name} SET {', '.join(sets)} WHERE {q(t.id_col)} = {p(ident)}", p.values

    async def delete(self, kind: str, idents: Sequence[str]) -> list[str]:
        t = table(kind)
        if isinstance(idents, str):
            raise TypeError("delete() takes a sequence of ids, not one string")
        wanted = list(dict.fromkeys(idents))
        sql = (f"DELETE FROM {t.name} WHERE {q(t.id_col)} = {self.dialect.placeholder(1)} "
               f"RETURNING {q(t.id_col)}")
        gone: set[str] = set()
        async with self._transaction(True) as tx:
            for ident in sorted(wanted):
                if await tx.fetchone(sql, (ident,)) is not None:
                    gone.add(ident)
            if gone:
                await self._changed(tx, kind, sorted(gone))
        return [ident for ident in wanted if ident in gone]

    async def list(self, kind: str, filters: Mapping[str, Any] | None = None, offset: int = 0,
                   limit: int | None = None) -> list[Record]:
        t = table(kind)
        p = Params(self.dialect)
        where = self._where(p, check_filters(t.indexed, filters, f"{kind} records"))
        sql = f"{self._select(t)}{where} ORDER BY seq"
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must not be negative")
        if offset or limit is not None:
            sql += f" LIMIT {p(self.dialect.unlimited if limit is None else limit)} OFFSET {p(offset)}"
        async with self._transaction(False) as tx:
            rows = await tx.fetch(sql, p.values)
        return [self._record(t, row) for row in rows]

    async def count(self, kind: str, filters: Mapping[str, Any] | None = None) -> int:
        t = table(kind)
        p = Params(self.dialect)
        where = self._where(p, check_filters(t.indexed, filters, f"{kind} records"))
        async with self._transaction(False) as tx:
            row = await tx.fetchone(f"SELECT COUNT(*) FROM {t.name}{where}", p.values)
        return int(row[0]) if row is not None else 0

    @staticmethod
    def _where(p: Params, conds: Sequence[tuple[str, Any]], extra: Sequence[str] = ()) -> str:
        terms = [f"{q(c)} IS NULL" if v is None else f"{q(c)} = {p(v)}" for c, v in conds]
        terms += extra
        return f" WHERE {' AND '.join(terms)}" if terms else ""

    async def apply_spend(self, batch: SpendBatch) -> None:
        if not batch:
            return
        for kind, _ in batch.increments:
            spend_table(kind)  # a caller's mistake (ValueError), not a value the database refused
        try:
            groups: dict[str, list[tuple[str, Decimal]]] = {}
            for (kind, ident), amount in sorted(batch.increments.items()):
                groups.setdefault(kind, []).append((ident, money(amount)))
            turns = LoopShare(_turn_clock, LOG_TURN_SECONDS, LOG_TURN_SHARE, LOG_TURN_MOST)
            joined = await self._joined_lines(batch.logs, turns) if self.dialect.json_log_insert else None
            rows: list[tuple[Any, ...]] = []
            if joined is None:  # a statement a row
                converters = log_converters(self.dialect)
                for log in batch.logs:
                    rows.append(log_row(self.dialect, log, converters))
                    if turns.used_up():
                        await turns.turn()
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RecordError(f"a value of this spend batch cannot be stored: {exc}") from exc
        try:
            async with self._transaction(True) as tx:
                for kind, items in groups.items():
                    await self._increment(tx, TABLES[kind], items)
                if joined is not None:
                    assert self.dialect.json_log_insert is not None
                    await tx.execute(self.dialect.json_log_insert, (joined.decode(),))
                elif rows:
                    marks = ", ".join(self.dialect.placeholder(i + 1) for i in range(len(LOG_FIELDS)))
                    await tx.executemany(f"INSERT INTO spend_logs ({_LOG_COLUMNS}) VALUES ({marks})", rows)
        except DuplicateError as exc:
            raise DuplicateError(f"a spend log of this batch is already stored; nothing applied ({exc})") from exc
        except (ValueError, TypeError, ArithmeticError) as exc:  # an exact sum that overflowed, a bad id
            raise RecordError(f"a value of this spend batch cannot be stored: {exc}") from exc

    @staticmethod
    async def _joined_lines(logs: Sequence[SpendLog], turns: LoopShare) -> bytes | None:
        """The rows' lines as one JSON array; None when they cannot go that way (no rows, too)."""
        lines: list[bytes] = []
        for log in logs:
            try:
                lines.append(encode_line(log, strict=True))  # a row the core settled is its line already
            except orjson.JSONEncodeError:  # an integer past 2**53, which SQLite's JSON may not keep
                return None  # exact (from 2**63 it reads a float)
            if turns.used_up():
                await turns.turn()
        joined = b"[" + b",".join(lines) + b"]"
        # NUL ends SQLite's JSON text, and PostgreSQL will not make text of it
        return joined if lines and b"\\u0000" not in joined else None

    async def reset_spend(self, kind: str, ident: str, next_reset_at: datetime | None) -> Record | None:
        t = spend_table(kind)
        if next_reset_at is not None:
            next_reset_at = utc(next_reset_at)
        async with self._transaction(True) as tx:
            row = await self._locked(tx, t, ident)
            if row is None:
                return None
            record = self._record(t, row)
            current = record.get(RESET_FIELD)
            if isinstance(current, datetime) and current > now():
                return record  # another process already started this window
            record.pop("spend", None)
            record[RESET_FIELD] = next_reset_at
            rec = encode_record(t, record)
            await tx.execute(*self._rewrite(t, ident, rec, zero_spend=True))
        return decode_record(t, rec.data, Decimal(0), rec.reset_at)

    async def reset_windows(self, kind: str, due: Mapping[str, datetime], now: datetime) -> None:
        d = self.dialect
        for t, p, changes, chosen in self._window_updates(kind, due, zero_spend=True):
            sql = (f"UPDATE {t.name} SET {changes} WHERE {chosen} AND reset_at IS NOT NULL "
                   f"AND reset_at <= {p(d.time_in(utc(now)))}{d.time_cast}")
            async with self._transaction(True) as tx:
                await tx.execute(sql, p.values)

    async def start_windows(self, kind: str, starts: Mapping[str, datetime]) -> None:
        for t, p, changes, chosen in self._window_updates(kind, starts, zero_spend=False):
            async with self._transaction(True) as tx:
                await tx.execute(f"UPDATE {t.name} SET {changes} WHERE {chosen} AND reset_at IS NULL", p.values)

    def _window_updates(self, kind: str, times: Mapping[str, datetime],
                        zero_spend: bool) -> Iterator[tuple[Table, Params, str, str]]:
        """Per CHUNK of ids: the statement's parameters, its SET list (`reset_at = CASE id WHEN … END`
        giving each id its time, after `spend = 0` with `zero_spend`) and the condition choosing those ids;
        a caller appends its guard on the stored time. Parameters are taken in the order the text
        names them (SQLite's placeholders are positional)."""
        t = spend_table(kind)
        if not t.windowed:
            raise ValueError(f"{kind} records have no budget window")
        d = self.dialect
        items = sorted(times.items())
        for start in range(0, len(items), CHUNK):
            part = items[start:start + CHUNK]
            p = Params(d)
            spend = f"spend = {p(d.money_in(Decimal(0)))}, " if zero_spend else ""
            cases = " ".join(f"WHEN {p(i)} THEN {p(d.time_in(utc(at)))}{d.time_cast}" for i, at in part)
            changes = f"{spend}reset_at = CASE {q(t.id_col)} {cases} END"
            yield t, p, changes, f"{q(t.id_col)} IN ({self._in(p, [i for i, _ in part])})"

    async def set_spend(self, kind: str, ident: str, amount: Decimal) -> Record | None:
        t = spend_table(kind)
        async with self._transaction(True) as tx:
            row = await self._locked(tx, t, ident)
            if row is None:
                return None
            p = Params(self.dialect)
            await tx.execute(f"UPDATE {t.name} SET spend = {p(self.dialect.money_in(money(amount)))} "
                             f"WHERE {q(t.id_col)} = {p(ident)}", p.values)
            await self._changed(tx, kind, [ident])  # other processes re-read the record, spend included
        return {**self._record(t, row), "spend": money(amount)}

    async def spend_logs(self, filters: Mapping[str, Any] | None = None, start: datetime | None = None,
                         end: datetime | None = None, limit: int = 1000) -> builtins.list[SpendLog]:
        d = self.dialect
        p = Params(d)
        window = []
        if start is not None:
            window.append(f"start_time >= {p(d.time_in(start))}")
        if end is not None:
            window.append(f"start_time < {p(d.time_in(end))}")
        where = self._where(p, check_filters(LOG_FILTERS, filters, "spend logs"), window)
        if limit < 0:
            raise ValueError("limit must not be negative")
        sql = (f"SELECT {_LOG_COLUMNS} FROM spend_logs{where} "
               f"ORDER BY start_time DESC, request_id DESC LIMIT {p(limit)}")
        async with self._transaction(False) as tx:
            rows = await tx.fetch(sql, p.values)
        return [log_from_row(d, row) for row in rows]

    async def logged_request_ids(self, request_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(request_ids))
        for start in range(0, len(ids), 500):  # well under SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            p = Params(self.dialect)
            marks = ", ".join(p(rid) for rid in chunk)
            async with self._transaction(False) as tx:
                rows = await tx.fetch(f"SELECT request_id FROM spend_logs WHERE request_id IN ({marks})", p.values)
            found.update(str(row[0]) for row in rows)
        return found

    async def put_ui_session(self, digest: str, csrf: str, expires_ms: int, now_ms: int, keep: int) -> None:
        p = Params(self.dialect)
        async with self._transaction(True) as tx:
            await tx.execute(f"DELETE FROM ui_sessions WHERE expires_ms <= {p(now_ms)}", p.values)
            row = await tx.fetchone("SELECT COUNT(*) FROM ui_sessions")
            excess = int(row[0]) - keep + 1 if row is not None else 0
            if excess > 0:  # bounded: the sessions closest to expiry (the oldest) go first
                p = Params(self.dialect)
                await tx.execute(f"DELETE FROM ui_sessions WHERE digest IN (SELECT digest FROM ui_sessions "
                                 f"ORDER BY expires_ms, digest LIMIT {p(excess)})", p.values)
            p = Params(self.dialect)
            await tx.execute(f"INSERT INTO ui_sessions (digest, csrf, expires_ms) "
                             f"VALUES ({p(digest)}, {p(csrf)}, {p(expires_ms)})", p.values)

    async def ui_session(self, digest: str) -> tuple[str, int] | None:
        p = Params(self.dialect)
        async with self._transaction(False) as tx:
            row = await tx.fetchone(f"SELECT csrf, expires_ms FROM ui_sessions WHERE digest = {p(digest)}", p.values)
        return None if row is None else (str(row[0]), int(row[1]))

    async def end_ui_session(self, digest: str) -> None:
        p = Params(self.dialect)
        async with self._transaction(True) as tx:
            await tx.execute(f"DELETE FROM ui_sessions WHERE digest = {p(digest)}", p.values)

    async def count_ui_sessions(self, now_ms: int) -> int:
        p = Params(self.dialect)
        async with self._transaction(False) as tx:
            row = await tx.fetchone(f"SELECT COUNT(*) FROM ui_sessions WHERE expires_ms > {p(now_ms)}", p.values)
        return 0 if row is None else int(row[0])

    async def spends(self, kind: str) -> dict[str, Decimal]:
        t = spend_table(kind)
        async with self._transaction(False) as tx:
            rows = await tx.fetch(f"SELECT {q(t.id_col)}, spend FROM {t.name}")
        money_out = self.dialect.money_out
        return {row[0]: money_out(row[1]) for row in rows}

    async def spends_of(self, kind: str, idents: Sequence[str]) -> dict[str, Decimal]:
        t = spend_table(kind)
        wanted = list(dict.fromkeys(idents))
        money_out = self.dialect.money_out
        out: dict[str, Decimal] = {}
        for start in range(0, len(wanted), CHUNK):
            p = Params(self.dialect)
            sql = f"SELECT {q(t.id_col)}, spend FROM {t.name} WHERE {q(t.id_col)} IN ({self._in(p, wanted[start:start + CHUNK])})"
            async with self._transaction(False) as tx:
                rows = await tx.fetch(sql, p.values)
            out.update((row[0], money_out(row[1])) for row in rows)
        return out

    async def version(self) -> int:
        async with self._transaction(False) as tx:
            row = await tx.fetchone("SELECT value FROM meta WHERE name = 'version'")
        if row is None:
            raise StoreError("the meta table has no version row")
        return int(row[0])

    async def changes(self, since: int) -> tuple[int, builtins.list[tuple[str, str]] | None]:
        ph = self.dialect.placeholder
        async with self._transaction(False) as tx:
            row = await tx.fetchone("SELECT value FROM meta WHERE name = 'version'")
            if row is None:
                raise StoreError("the meta table has no version row")
            version = int(row[0])
            if version == since:
                return version, []
            if version < since or version - since > CHANGES_KEPT:
                return version, None
            rows = await tx.fetch(f"SELECT seq, kind, ident FROM changes WHERE seq > {ph(1)} AND seq <= {ph(2)} "
                                  "ORDER BY seq", (since, version))
        if {int(r[0]) for r in rows} != set(range(since + 1, version + 1)):
            return version, None  # pruned, or written by a process that logs no changes
        return version, [(str(r[1]), str(r[2])) for r in rows]
