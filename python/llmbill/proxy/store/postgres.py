"""PostgreSQL backend (asyncpg pool): the store many proxy processes and hosts share.

Spend is NUMERIC (exact) and grows by `spend = spend + $1` in the database, so concurrent writers
never lose an increment; a first call of a new customer upserts it with `INSERT ... ON CONFLICT DO
UPDATE`. Schema creation runs under a transaction-scoped advisory lock, so processes starting together
do not race on `CREATE TABLE IF NOT EXISTS`.

>>> store = PostgresStore("postgresql://llmbill@db/llmbill")  # then: await store.open() ... close()
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from .base import DuplicateError, RecordError, StoreError
from .codec import Table, encode_record, redact_url, utc
from .sql import Dialect, SqlStore, Tx, json_log_insert, q

CHANNEL = "llmbill_changes"  # NOTIFY channel: the payload is the new version
# A fixed advisory-lock key ("llmbill" in ASCII) that serialises schema creation between processes.
_SCHEMA_LOCK_KEY = 0x6C6C6D62696C6C

POSTGRES = Dialect(
    money_type="NUMERIC", time_type="TIMESTAMPTZ",
    json_type="JSON",  # JSON keeps the text as written; JSONB would turn 1e20 into an integer
    seq_column="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", for_update=" FOR UPDATE", unlimited=None,
    schema_lock=f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})",
    table_exists="SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1", placeholder=lambda i: f"${i}",
    money_in=lambda v: v, money_out=lambda v: v, time_in=utc, time_out=lambda v: v,
    time_cast="::timestamptz", json_text="data::text", notify=f"SELECT pg_notify('{CHANNEL}', $1)",
    # Each line's text cast to its column; a time from its microseconds (a whole number times an
    # interval: exact where a float of seconds would not be).
    json_log_insert=json_log_insert("json_array_elements($1::json)", {
        "money": "({})::numeric", "int": "({})::bigint", "json": "({})::json",
        "time": "(timestamptz 'epoch' + ({})::bigint * interval '1 microsecond')"}))

# A value the database cannot store (NUL in text, a number out of range, an index entry over ~2.7 kB,
# a NOT NULL or CHECK violation): the same data fails again, unlike the errors below.
_DATA_ERRORS = (asyncpg.DataError, asyncpg.ProgramLimitExceededError, asyncpg.IntegrityConstraintViolationError)
# What asyncpg raises when the database is unreachable or refuses a statement.
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
           asyncio.TimeoutError)


class _Tx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        return await self._conn.fetchrow(sql, *args)

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class PostgresStore(SqlStore):
    """Store in a PostgreSQL database reached through a connection pool."""

    dialect = POSTGRES

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> None:
        self.url = url
        self._pool_args = {"min_size": min_size, "max_size": max_size, "timeout": timeout}
        self._pool: Any = None
        self._listener: Any = None  # the connection that LISTENs (outside the pool: it stays open)

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(self.url, **self._pool_args)
        except _ERRORS as exc:
            raise StoreError(f"cannot connect to PostgreSQL {redact_url(self.url)}: {exc}") from exc
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                await listener.close()
            except _ERRORS:
                pass  # the connection is gone already
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def listen(self, wake: Callable[[], None]) -> bool:
        """LISTEN on a connection of its own; called again after it dropped (the caller polls anyway)."""
        if self._listener is not None and not self._listener.is_closed():
            return True
        if self._pool is None:
            return False
        try:
            conn = await asyncpg.connect(self.url, timeout=self._pool_args["timeout"])
        except _ERRORS:
            return False
        try:
            await conn.add_listener(CHANNEL, lambda *_: wake())
        except _ERRORS:
            await conn.close()
            return False
        self._listener = conn
        return True

    @asynccontextmanager
    async def _transaction(self, write: bool) -> AsyncIterator[Tx]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {redact_url(self.url)} is not open")
        try:
            async with pool.acquire() as conn:
                if write:
                    async with conn.transaction():
                        yield _Tx(conn)
                else:
                    yield _Tx(conn)
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateError(f"{exc} {exc.detail or ''}".strip()) from exc
        except _DATA_ERRORS as exc:
            raise RecordError(f"PostgreSQL refused a value: {exc}") from exc
        except _ERRORS as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def _increment(self, tx: Tx, t: Table, items: list[tuple[str, Decimal]]) -> None:
        if t.upserted:
            rows = []
            for ident, amount in items:
                sql, values = self._insert_sql(t, encode_record(t, {t.id_col: ident, "spend": amount}))
                rows.append(values)
            await tx.executemany(f"{sql} ON CONFLICT ({q(t.id_col)}) DO UPDATE "
                                 f"SET spend = {t.name}.spend + EXCLUDED.spend", rows)
        else:
            await tx.executemany(f"UPDATE {t.name} SET spend = spend + $1 WHERE {q(t.id_col)} = $2",
                                 [(amount, ident) for ident, amount in items])
