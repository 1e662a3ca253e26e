"""The upstream client's connection pool: keep-alive connections per (tls, host, port) for
httpclient.py's exchanges, checked just before reuse, and a spare opened ahead of a burst."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from .httpclient import ConnectFailed, Reply, Target, Connection


class WaitObserver(Protocol):
    """Told when a request is written and when its reply's headers came (the proxy's idle poll:
    idle_poll.py times that wait and may poll through the next)."""

    def written(self) -> None: ...

    def replied(self) -> None: ...


class Client:
    """Keep-alive connections per (tls, host, port), reused most recent first; one idle longer than
    idle_seconds is closed rather than reused (a peer or a NAT in between may have forgotten it).

    With `spare`, a request that leaves no idle connection to its host starts opening one more in the
    background (one at a time per host), so the next request there finds it ready: a burst of new
    calls (scenario 4: 1,000 streams arriving over 2 s, each holding a connection) otherwise waits for
    a connect — and, to a provider, a TLS handshake — on every call's path.

    `waits` is told of each request written and of its reply's headers (the proxy's idle poll)."""

    def __init__(self, max_idle_per_host: int = 256, idle_seconds: float = 60.0, spare: bool = False,
                 waits: WaitObserver | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle: dict[tuple[bool, str, int], list[Connection]] = {}
        self._spare = spare
        self._opening: dict[tuple[bool, str, int], asyncio.Task[Connection]] = {}
        self._max_idle = max_idle_per_host
        self._idle_seconds = idle_seconds
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._waits = waits
        self._clock = clock  # idle times: a plain monotonic clock, no running-loop lookup (tests step it)

    async def _connect(self, target: Target) -> Connection:
        loop = asyncio.get_running_loop()
        if target.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            _, conn = await loop.create_connection(Connection, target.host, target.port,
                                                   ssl=self._ssl if target.tls else None,
                                                   server_hostname=target.host if target.tls else None)
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {target.host}:{target.port}: {exc.strerror or exc}") from None
        return conn

    def _get_idle(self, target: Target) -> Connection | None:
        idle = self._idle.get(target.key)
        if not idle:
            return None
        oldest_usable = self._clock() - self._idle_seconds
        while idle:
            conn = idle.pop()
            if conn.idle_since >= oldest_usable and conn.can_take_request():
                return conn
            conn.close()  # never written to: nothing of a request was lost on it
        return None

    def _put(self, key: tuple[bool, str, int], conn: Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if self._closed or len(idle) >= self._max_idle:
            conn.close()
        else:
            conn.idle_since = self._clock()
            idle.append(conn)

    async def post(self, target: Target, body: bytes) -> Reply:
        """Sends the request once and waits for the reply's status and headers (not its body)."""
        data = target.head + str(len(body)).encode() + b"\r\n\r\n" + body
        conn = self._get_idle(target)  # checked just now: open, with nothing to read
        if conn is None:
            conn = await self._connect(target)
        if self._spare and not self._idle.get(target.key) and target.key not in self._opening and not self._closed:
            self._open_spare(target)
        conn._start(conn._loop or asyncio.get_running_loop())  # a pooled one keeps the loop it was opened on
        assert conn.transport is not None
        conn.transport.write(data)
        waits = self._waits
        try:
            if waits is not None:
                waits.written()
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.waiter()
            if waits is not None:
                waits.replied()
        except BaseException:  # broken, timed out or cancelled: the request may have run; never resent
            conn.close()
            raise
        return Reply(self, target, conn)

    def _open_spare(self, target: Target) -> None:
        key = target.key
        task = asyncio.get_running_loop().create_task(self._connect(target))
        self._opening[key] = task

        def opened(t: asyncio.Task[Connection]) -> None:
            del self._opening[key]
            if t.cancelled() or t.exception() is not None:
                return  # the next request connects on its own, and reports what fails
            self._put(key, t.result())
        task.add_done_callback(opened)

    async def close(self) -> None:
        self._closed = True
        opening = list(self._opening.values())
        for task in opening:
            task.cancel()
        await asyncio.gather(*opening, return_exceptions=True)
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

