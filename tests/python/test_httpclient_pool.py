"""The upstream client's connection pool (proxy/httpclient_pool.py) against a raw asyncio server:
keep-alive reuse, a pooled connection found closed replaced unused, and the spare opened ahead."""

from __future__ import annotations

import asyncio
import gc

import pytest

from llmbill.proxy.httpclient import Target, UpstreamError
from llmbill.proxy.httpclient_pool import Client
from tests.python.test_httpclient import _HalfClosingServer, _reply, _serve


def test_keep_alive_reuses_one_connection_and_sends_the_head() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_reply(b'{"n":%d}' % n))
        return True

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {"content-type": "application/json", "authorization": "Bearer k"})
        for n in range(3):
            reply = await client.post(target, b'{"q":1}')
            assert (reply.status, reply.content_type, await reply.read()) == (200, "application/json", b'{"n":%d}' % n)
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"1", b"1"]
    assert seen[0].split(b" ", 1)[1].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"authorization: Bearer k\r\n" in seen[0] and seen[0].endswith(b'content-length: 7\r\n\r\n{"q":1}')

def test_a_connection_idle_longer_than_idle_seconds_is_closed_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_reply(b"{}"))
        return True

    async def work(url: str) -> None:
        now = [1000.0]
        client = Client(idle_seconds=60, clock=lambda: now[0])
        target = Target(url, {})
        for step in (0, 59, 61, 0):  # reused after 59 s idle; after 61 s a new connection, then reused
            now[0] += step
            assert await (await client.post(target, b"{}")).read() == b"{}"
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"1", b"2", b"2"]


def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_reply(b"{}"))
        await writer.drain()
        return False  # closes after every reply, without saying so

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {})
        for _ in range(3):
            assert await (await client.post(target, b"{}")).read() == b"{}"
            await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"2", b"3"]

def test_a_pooled_connection_found_closed_before_the_request_is_written_is_replaced_unused() -> None:
    server = _HalfClosingServer()

    async def work() -> None:
        client = Client()
        target = Target(server.url, {})
        assert await (await client.post(target, b'{"first":1}')).read() == b"{}"
        # Blocking wait: the loop cannot run, so the client has not processed the server's FIN yet
        # when the next request picks the pooled connection.
        assert server.half_closed.wait(10)
        assert await (await client.post(target, b'{"second":1}')).read() == b"{}"
        await client.close()

    asyncio.run(work())
    server.thread.join(10)
    assert server.requests == [(1, b'{"first":1}'), (2, b'{"second":1}')]

def _connects_on_path(client: Client) -> list[str]:
    """Records each connect the client makes: 'path' when the request's own task waited for it,
    'spare' when it ran behind."""
    made: list[str] = []
    real = client._connect

    async def connect(target: Target) -> object:
        made.append("path" if asyncio.current_task() is caller else "spare")
        return await real(target)
    caller = asyncio.current_task()
    client._connect = connect  # type: ignore[method-assign,assignment]
    return made

def test_a_request_that_leaves_no_idle_connection_opens_a_spare_the_next_one_takes() -> None:
    """1,000 streams arriving at once each held a connection: without a spare every one of them waited
    for a connect (a TLS handshake, to a provider) on its path."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_reply(b'{"n":%d}' % n))
        return True

    async def work(url: str) -> None:
        client = Client(spare=True)
        made = _connects_on_path(client)
        target = Target(url, {"content-type": "application/json"})
        held = [await client.post(target, b"{}")]  # a stream still open: its connection stays taken
        while client._opening:
            await asyncio.sleep(0)
        held.append(await client.post(target, b"{}"))  # takes the spare; the next spare opens behind it
        while client._opening:
            await asyncio.sleep(0)
        assert made == ["path", "spare", "spare"]
        for reply in held:
            await reply.read()
        third = await client.post(target, b"{}")  # an idle connection left: no spare opened
        assert await third.read() == b'{"n":2}' and made == ["path", "spare", "spare"]
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"2", b"2"]

def test_a_spare_that_fails_to_connect_is_dropped_quietly_and_close_cancels_one_opening() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_reply(b"{}"))
        return True

    async def work(url: str) -> None:
        loop = asyncio.get_running_loop()
        unhandled: list[object] = []
        loop.set_exception_handler(lambda _, context: unhandled.append(context))
        client = Client(spare=True)
        target = Target(url, {})
        real = client._connect
        hang = asyncio.Event()

        async def refused(t: Target) -> object:
            raise UpstreamError("refused")

        async def hanging(t: Target) -> object:
            await hang.wait()
            return await real(t)
        client._connect = refused  # type: ignore[method-assign,assignment]
        client._put(target.key, await real(target))
        reply = await client.post(target, b"{}")  # took the idle one; its spare fails
        while client._opening:
            await asyncio.sleep(0)
        assert await reply.read() == b"{}" and len(client._idle[target.key]) == 1
        client._connect = hanging  # type: ignore[method-assign,assignment]
        reply = await client.post(target, b"{}")
        assert client._opening and await reply.read() == b"{}"
        await client.close()  # cancels the spare still opening
        assert not client._opening and not client._idle
        gc.collect()  # a task whose exception nobody read reports it when collected
        assert unhandled == []

    asyncio.run(_serve(handler, work))


def test_the_wait_observer_hears_each_write_and_only_the_replies_that_came() -> None:
    """idle_poll.py times the wait between the two: a request lost after its write reports the write
    and no reply (the next reply's wait is then timed from its own write)."""
    heard: list[str] = []

    class Observer:
        def written(self) -> None:
            heard.append("written")

        def replied(self) -> None:
            heard.append("replied")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 1:
            return False  # read the request, then close without a reply
        writer.write(_reply(b"{}"))
        return True

    async def work(url: str) -> None:
        client = Client(waits=Observer())
        target = Target(url, {})
        assert await (await client.post(target, b"{}")).read() == b"{}"
        with pytest.raises(UpstreamError):
            await client.post(target, b"{}")
        assert await (await client.post(target, b"{}")).read() == b"{}"
        await client.close()

    asyncio.run(_serve(handler, work))
    assert heard == ["written", "replied", "written", "written", "replied"]
