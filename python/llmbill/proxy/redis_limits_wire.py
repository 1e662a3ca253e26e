"""How the limit scripts of redis_limits.py reach Redis: EVALSHA packed once per call and sent on a
connection of a redis-py pool of their own, the last idle connections kept for the next call.

Why not redis-py's command path (`Script.__call__` → `execute_command`): at concurrency 1 it cost
more than the script itself (bench/README.md, "Shared limits in Redis"): each argument encoded one by
one, a pool checkout behind a condition, a lock and a readability probe, and each write under
`asyncio.wait_for`, which starts a task per command before Python 3.12. Here a command is packed as
bytes (the caller packs what does not change once), written and read on a redis-py connection with
no socket timeout — one patrol task times every checkout and exchange (Wire._arm) — and a connection
that answered is kept for the next call unless someone waits for one.

The pool is a BlockingConnectionPool (MAX_CONNECTIONS, a call waits at most `timeout` for a free
connection): with more calls in flight than connections, a script waits instead of failing with
"Too many connections" (which read as Redis down). A kept connection stays counted by the pool, and
goes back to it as soon as a call waits there, so the pool's bound and wait hold as before.

A kept connection that Redis closed meanwhile (a restart) fails on first use: the call is sent once
more on a fresh one from the pool — which is what the pool's own readability probe did before a
checkout. That is the only retry: a timeout is not retried (Redis may be hung), nor is anything on a
fresh connection. Should the closed connection have lost the reply of a script that ran, the resend
finds the call already in its entities' indexes (lua/entity.lua enters a call once): its request or
tokens may count twice in their minute, its reservation and parallel slot never.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError  # redis-py's, not the builtins

MAX_CONNECTIONS = 64  # per process; scripts are short, so calls in flight share them
KEPT = 4  # idle connections kept out of the pool for the next calls


class Script:
    """A Lua script, run by EVALSHA with no KEYS: its packed head (command, sha, 0) made once."""

    def __init__(self, text: str) -> None:
        self.text = text
        sha = hashlib.sha1(text.encode()).hexdigest().encode()
        self.head = b"$7\r\nEVALSHA\r\n$40\r\n" + sha + b"\r\n$1\r\n0\r\n"


def bulk(value: bytes) -> bytes:
    """One argument as RESP packs it."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def integer(value: int) -> bytes:
    return bulk(b"%d" % value)


class Wire:
    def __init__(self, pool: aioredis.ConnectionPool, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self._kept: list[aioredis.Connection] = []
        self._waiting = 0  # calls waiting for a connection in the pool
        self._deadlines: dict[asyncio.Task[Any], float] = {}  # tasks in a checkout or an exchange
        self._patrol: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, timeout: float, max_connections: int = MAX_CONNECTIONS) -> Wire:
        # No socket timeout on the connections: the patrol times each checkout and each exchange instead.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout,
                                                        socket_timeout=None, socket_connect_timeout=timeout)
        return cls(pool, timeout)

    async def run(self, script: Script, count: int, args: bytes) -> Any:
        """EVALSHA of `script` with `count` arguments, `args` packed (bulk, integer); Redis's reply."""
        packed = b"*%d\r\n%s%s" % (3 + count, script.head, args)
        if self._kept:
            conn = self._kept.pop()
            try:
                return await self._exchange(conn, script, packed)
            except ConnectionError:
                pass  # closed while kept (Redis restarted): once more, on a connection from the pool
        self._waiting += 1
        task = self._arm()
        try:
            # The wait for a free connection, and a connect with its handshake (no socket timeout here).
            conn = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            if self._disarm(task):
                self._late(task)
            raise
        finally:
            self._waiting -= 1
            self._disarm(task)
        return await self._exchange(conn, script, packed)

    async def _exchange(self, conn: aioredis.Connection, script: Script, packed: bytes) -> Any:
        task = self._arm()
        try:
            try:
                await conn.send_packed_command(packed)
                try:
                    reply = await conn.read_response()
                except NoScriptError:  # Redis restarted (or flushed its scripts) since: load it, run it again
                    await conn.send_command("SCRIPT", "LOAD", script.text)
                    await conn.read_response()
                    await conn.send_packed_command(packed)
                    reply = await conn.read_response()
            finally:
                late = self._disarm(task)
        except ResponseError:  # the reply was read whole: the connection is fine
            await self._done(conn)
            raise
        except BaseException as exc:
            # A reply may still be on its way (timeout, cancellation): the connection is not reusable.
            await conn.disconnect(nowait=True)
            await self.pool.release(conn)
            if late and isinstance(exc, asyncio.CancelledError):
                self._late(task)
            raise
        await self._done(conn)
        return reply

    def _arm(self) -> asyncio.Task[Any]:
        """Gives the current task `timeout` seconds: the patrol cancels it if it is still here then.
        One timer for all (checked every quarter of the timeout), where a timer per call cost more
        than the rest of the wire; a call that hangs fails within 1¼ × timeout."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + self.timeout
        if self._patrol is None:
            self._patrol = loop.create_task(self._watch())
        return task

    def _disarm(self, task: asyncio.Task[Any]) -> bool:
        """True when the patrol got there first (and cancelled the task)."""
        return self._deadlines.pop(task, None) is None

    def _late(self, task: asyncio.Task[Any]) -> None:
        """The patrol's cancellation as the timeout it stands for (unless the task is being cancelled
        for another reason as well)."""
        if sys.version_info < (3, 11) or task.uncancel() == 0:
            raise TimeoutError(f"Redis did not answer within {self.timeout:g} s") from None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.timeout / 4)
            now = loop.time()
            for task in [t for t, deadline in self._deadlines.items() if deadline <= now]:
                del self._deadlines[task]
                task.cancel()

    async def _done(self, conn: aioredis.Connection) -> None:
        if self._waiting or len(self._kept) >= KEPT:
            await self.pool.release(conn)
        else:
            self._kept.append(conn)

    async def close(self) -> None:
        if self._patrol is not None:
            self._patrol.cancel()
            await asyncio.gather(self._patrol, return_exceptions=True)
            self._patrol = None
        while self._kept:
            await self.pool.release(self._kept.pop())
        await self.pool.disconnect()
