"""SQLite backend: a writing and a reading connection, each used by one worker thread, so the event
loop never blocks on disk.

Several processes may share the file: WAL lets readers run beside the one writer, every write is a
`BEGIN IMMEDIATE` transaction (it takes the write lock up front, so two read-modify-writes cannot
interleave), and a busy timeout makes a writer wait for the lock instead of failing. SQLite has no
decimal type: spend is TEXT holding a decimal string, added in Python with Decimal inside that
transaction — exact, and serialised across processes by SQLite's lock.

>>> store = SqliteStore("/tmp/llmbill.db")  # then: await store.open() ... await store.close()
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

from .base import DuplicateError, RecordError, StoreError
from .codec import Table, add_money, encode_record, from_micros, to_micros
from .sql import Dialect, SqlStore, Tx, json_log_insert, q

T = TypeVar("T")

SQLITE = Dialect(
    money_type="TEXT", time_type="INTEGER", json_type="TEXT",  # times: microseconds since the epoch
    seq_column="INTEGER PRIMARY KEY", for_update="", unlimited=-1, schema_lock=None,
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    placeholder=lambda i: "?", money_in=str, money_out=Decimal, time_in=to_micros, time_out=from_micros,
    time_cast="", json_text="data", notify=None,  # the other processes poll the change log
    # `->>` (3.38+) gives each column as its line holds it: SQLite's own storage
    json_log_insert=json_log_insert("json_each(?)", {}) if sqlite3.sqlite_version_info >= (3, 38) else None)


class _Lane:
    """One connection used by one worker thread: a transaction holds it (the lock) while it runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.executor: ThreadPoolExecutor | None = None
        self.conn: sqlite3.Connection | None = None
        self.lock = asyncio.Lock()

    async def call(self, fn: Callable[[], T]) -> T:
        if self.executor is None:
            raise StoreError("SQLite store is not open")
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llmbill-sqlite-{self.name}")
        self.conn = await self.call(connect)

    async def close(self) -> None:
        async with self.lock:
            conn, executor = self.conn, self.executor
            self.conn = self.executor = None
            if executor is None:
                return
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)


class _Tx:
    def __init__(self, lane: _Lane, conn: sqlite3.Connection) -> None:
        self._lane = lane
        self._conn = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return await self._lane.call(lambda: self._conn.execute(sql, args).fetchall())

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        rows = await self.fetch(sql, args)  # fetchall: a RETURNING statement runs to completion
        return rows[0] if rows else None

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        await self._lane.call(lambda: self._conn.execute(sql, args).close())

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._lane.call(lambda: self._conn.executemany(sql, rows).close())


class SqliteStore(SqlStore):
    """Store in one SQLite file (see the module docstring for the concurrency model)."""

    dialect = SQLITE

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        # Writes on one connection, reads on another: WAL lets a read run beside a write, so a record
        # a request needs is not queued behind a spend flush.
        self._writer = _Lane("write")
        self._reader = _Lane("read")

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; this module issues BEGIN/COMMIT itself.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            self._ensure_wal(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_wal(self, conn: sqlite3.Connection) -> None:
        """WAL is a property of the file, set once. Switching to it needs the file to itself and SQLite
        answers "database is locked" at once, without its busy timeout, while another worker holds a
        lock (creating the schema, say), so the switch is tried again until the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").close()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)  # in the connection's own thread, never on the event loop

    async def open(self) -> None:
        if self._writer.conn is not None:
            return
        try:
            try:
                await self._writer.open(self._connect)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
            await self._migrate()
            try:
                await self._reader.open(self._connect)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _transaction(self, write: bool) -> AsyncIterator[Tx]:
        lane = self._writer if write else self._reader
        async with lane.lock:
            conn = lane.conn
            if conn is None:
                raise StoreError(f"SQLite store {self.path} is not open")
            tx = _Tx(lane, conn)
            try:
                if write:
                    await tx.execute("BEGIN IMMEDIATE")
                yield tx
                if write:
                    await tx.execute("COMMIT")
            except BaseException as exc:
                if write:
                    await self._rollback(lane, conn)
                if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
                    raise DuplicateError(str(exc)) from exc
                if isinstance(exc, (sqlite3.DataError, sqlite3.IntegrityError)):
                    raise RecordError(f"SQLite {self.path}: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"SQLite {self.path}: {exc}") from exc
                raise

    async def _rollback(self, lane: _Lane, conn: sqlite3.Connection) -> None:
        try:
            await lane.call(conn.rollback)  # a no-op when BEGIN itself failed
        except sqlite3.Error:
            pass  # the original error is the one to report; a broken connection fails the next call

    async def _increment(self, tx: Tx, t: Table, items: list[tuple[str, Decimal]]) -> None:
        select = f"SELECT spend FROM {t.name} WHERE {q(t.id_col)} = ?"
        update = f"UPDATE {t.name} SET spend = ? WHERE {q(t.id_col)} = ?"
        for ident, amount in items:
            row = await tx.fetchone(select, (ident,))
            if row is not None:
                await tx.execute(update, (str(add_money(Decimal(row[0]), amount)), ident))
            elif t.upserted:
                await tx.execute(*self._insert_sql(t, encode_record(t, {t.id_col: ident, "spend": amount})))
