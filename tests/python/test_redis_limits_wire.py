"""proxy/redis_limits_wire.py against a real Redis (tests/python/redis_server.py) and a fake that
never answers: kept connections, a restart, scripts Redis forgot, timeouts, calls waiting for a
connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.exceptions

from llmbill.proxy.redis_limits_wire import Script, Wire, bulk, integer
from tests.python.redis_server import RedisServer

T = TypeVar("T")
ECHO = Script("return {ARGV[1], tonumber(ARGV[2]) + 1}")


def run(wire: Wire, body: Callable[[Wire], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await body(wire)
        finally:
            await wire.close()
    return asyncio.run(main())


async def echo(wire: Wire, text: str, number: int) -> Any:
    return await wire.run(ECHO, 2, bulk(text.encode()) + integer(number))


def test_a_packed_call_runs_the_script_and_keeps_its_connection(redis_url: str) -> None:
    async def body(wire: Wire) -> list[Any]:
        out = [await echo(wire, "a", 1), await echo(wire, "é\x1fb", -5)]
        out.append(len(wire._kept))
        return out
    assert run(Wire.from_url(redis_url, 2.0), body) == [[b"a", 2], ["é\x1fb".encode(), -4], 1]


def test_a_script_redis_forgot_is_loaded_again(redis_url: str) -> None:
    async def body(wire: Wire) -> list[Any]:
        first = await echo(wire, "a", 1)
        redis.Redis.from_url(redis_url).script_flush()
        return [first, await echo(wire, "b", 2)]
    assert run(Wire.from_url(redis_url, 2.0), body) == [[b"a", 2], [b"b", 3]]


def test_a_kept_connection_that_a_restart_closed_is_replaced(redis_server: RedisServer, redis_url: str) -> None:
    """The pool probed a connection before each checkout; a kept one is not probed, so the call that
    finds it closed is sent again on a fresh one instead of failing (a 503 under fail_closed)."""
    async def body(wire: Wire) -> list[Any]:
        first = await echo(wire, "a", 1)
        redis_server.stop()
        redis_server.restart()  # no scripts loaded, the kept connection closed
        return [first, await echo(wire, "b", 2)]
    assert run(Wire.from_url(redis_url, 2.0), body) == [[b"a", 2], [b"b", 3]]


def test_calls_waiting_for_a_connection_get_the_ones_that_finish(redis_url: str) -> None:
    """A connection is kept for the next call only while nobody waits in the pool: kept, it would
    leave the waiting calls to time out ("No connection available") with the pool idle."""
    async def body(wire: Wire) -> list[Any]:
        return list(await asyncio.gather(*(echo(wire, "x", i) for i in range(6))))
    t = time.monotonic()
    assert run(Wire.from_url(redis_url, 1.0, max_connections=1), body) == [[b"x", i + 1] for i in range(6)]
    assert time.monotonic() - t < 1.0


BUSY = Script("""local function clock() local t = redis.call('TIME') return t[1] + t[2] / 1e6 end
local start = clock()
while clock() - start < 0.8 do end
return 1""")


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Redis that hangs at once: takes the connection, never answers."""
    try:
        while await reader.read(65536):
            pass
    finally:
        writer.close()


async def timed_out(wire: Wire, call: Callable[[Wire], Awaitable[Any]]) -> tuple[type[BaseException] | None, float]:
    t = time.monotonic()
    try:
        await call(wire)
    except BaseException as exc:  # noqa: BLE001 - its type is what is checked
        return type(exc), time.monotonic() - t
    return None, time.monotonic() - t


def test_a_redis_that_hangs_at_connect_fails_the_call_within_the_timeout() -> None:
    """The handshake of a new connection is timed too: no socket timeout would bound it."""
    async def main() -> tuple[type[BaseException] | None, float]:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        wire = Wire.from_url(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", 0.3)
        try:
            return await timed_out(wire, lambda w: echo(w, "a", 1))
        finally:
            await wire.close()
            server.close()
    failed, took = asyncio.run(main())
    assert failed is redis.exceptions.TimeoutError  # a RedisError: redis_limits.py's failure policy
    assert 0.3 <= took < 0.8


def test_a_script_that_does_not_answer_in_time_fails_and_its_connection_is_dropped(redis_url: str) -> None:
    async def body(wire: Wire) -> tuple[type[BaseException] | None, float, int, Any]:
        await echo(wire, "a", 1)  # a kept connection
        failed, took = await timed_out(wire, lambda w: w.run(BUSY, 0, b""))
        kept = len(wire._kept)
        await asyncio.sleep(0.6)  # the busy script ends and its reply arrives: on no connection in use
        return failed, took, kept, await echo(wire, "b", 2)
    failed, took, kept, after = run(Wire.from_url(redis_url, 0.3), body)
    assert failed is redis.exceptions.TimeoutError
    assert 0.3 <= took < 0.8 and kept == 0 and after == [b"b", 3]
