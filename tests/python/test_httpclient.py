"""The proxy's upstream HTTP client (proxy/httpclient.py) against a raw asyncio server: keep-alive reuse,
Content-Length, chunked and close-delimited bodies, gzip, a stale pooled connection, a cut stream, and
a request never sent twice (lost after it was written: 502; a connection found closed: replaced unused)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Awaitable, Callable

import pytest

from llmbill.proxy.deployments import Deployment
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.httpclient import Reply, Target, UpstreamError
from llmbill.proxy.httpclient_pool import Client
from llmbill.proxy.upstream import Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


async def _serve(handler: Handler, work: Callable[[str], Awaitable[None]]) -> list[bytes]:
    """Runs `work(url)` against a server whose `handler(reader, writer, n)` answers request n (from 0) and
    returns whether to keep the connection. Returns the requests the server saw, with the connection
    number prefixed."""
    seen: list[bytes] = []
    conns = 0
    count = 0
    writers: list[asyncio.StreamWriter] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conns, count
        conns += 1
        me = conns
        writers.append(writer)
        while (req := await _read_request(reader)) is not None:
            seen.append(b"%d " % me + req)
            count += 1
            if not await handler(reader, writer, count - 1):
                break
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await work(f"http://127.0.0.1:{port}/v1/chat/completions")
    finally:
        server.close()
        for w in writers:
            w.close()
        await asyncio.sleep(0.05)  # the handlers see their connections end and return
        await server.wait_closed()
    return seen


def _reply(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra + b"content-length: %d\r\n\r\n" % len(body) + body


def test_chunked_stream_gzip_and_close_delimited_bodies() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in (b"data: 1\n\n", b"data: 2\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            return True
        if n == 1:
            writer.write(_reply(gzip.compress(b'{"zipped":true}'), b"content-encoding: gzip\r\n"))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"till\":\"close\"}")
        return False

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {})
        reply = await client.post(target, b"{}")
        assert b"".join([c async for c in reply.chunks(5)]) == b"data: 1\n\ndata: 2\n\n"
        assert await (await client.post(target, b"{}")).read() == b'{"zipped":true}'
        assert await (await client.post(target, b"{}")).read() == b'{"till":"close"}'
        await client.close()

    asyncio.run(_serve(handler, work))


def test_a_cut_body_fails_read_and_ends_a_stream_quietly() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\"")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        return False

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {})
        with pytest.raises(UpstreamError):
            await (await client.post(target, b"{}")).read()
        reply = await client.post(target, b"{}")
        assert [c async for c in reply.chunks(5)] == [b"data: 1\n\n"]
        await client.close()

    asyncio.run(_serve(handler, work))


def test_unreachable_upstream_and_bad_urls() -> None:
    async def work() -> None:
        client = Client()
        with pytest.raises(UpstreamError, match="cannot connect"):
            await client.post(Target("http://127.0.0.1:9/x", {}), b"{}")
        await client.close()

    asyncio.run(work())
    with pytest.raises(ValueError):
        Target("ftp://example.com/x", {})


# --- A request is never sent twice (issue 13: the provider would run and charge it twice) ---

def test_a_request_lost_after_it_was_written_is_not_resent_and_the_proxy_answers_502() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n in (1, 3):
            return False  # read the request (the provider may have run it), then close without a reply
        writer.write(_reply(b'{"n":%d}' % n))
        return True

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {})
        assert await (await client.post(target, b"{}")).read() == b'{"n":0}'
        with pytest.raises(UpstreamError):
            await client.post(target, b'{"second":1}')  # on the reused connection
        await client.close()

        upstream = Upstream()
        await upstream.start()
        d = Deployment(model_name="m", provider="openai", upstream_model="m", api_base=url.removesuffix("/chat/completions"),
                       api_key="", price=None, timeout=5.0, max_input_tokens=0, max_output_tokens=0)
        await upstream.call(d, "chat", {"n": 2})
        with pytest.raises(ProxyError) as refused:
            await upstream.call(d, "chat", {"n": 3})
        assert refused.value.status == 502 and refused.value.type == "upstream_error"
        await upstream.close()

    seen = asyncio.run(_serve(handler, work))
    # Each request reached the server once: neither lost one was resent on a new connection.
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"1", b"2", b"2"]
    assert seen[1].endswith(b'{"second":1}')


class _HalfClosingServer:
    """A blocking server in a thread: answers the first request on connection 1, then shuts its side
    (FIN) without closing, so it still sees anything the client writes there afterwards; later
    connections are answered normally. `requests` lists (connection number, body) as seen."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/chat/completions"
        self.requests: list[tuple[int, bytes]] = []
        self.half_closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _read(conn: socket.socket, buf: bytearray) -> bytes | None:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += conn.recv(65536)
        buf[:] = rest[length:]
        return rest[:length]

    def _run(self) -> None:
        with self.sock:
            for number in (1, 2):
                self._serve(number)

    def _serve(self, number: int) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        buf = bytearray()
        with conn:
            while (body := self._read(conn, buf)) is not None:
                self.requests.append((number, body))
                if number == 1 and len(self.requests) > 1:
                    continue  # written to a connection the server had closed: it still got here
                conn.sendall(_reply(b"{}"))
                if number == 1:
                    conn.shutdown(socket.SHUT_WR)
                    self.half_closed.set()
                else:
                    return


def _chunked_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(part: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(part), part)


async def _posted(url: str) -> tuple[Client, Target, Reply]:
    """A new client, its target, and the reply to one POST it sent there."""
    client = Client()
    target = Target(url, {})
    return client, target, await client.post(target, b"{}")


async def _never_full() -> None:
    raise AssertionError("drain() awaited although the sink never said it was full")


def test_pipe_hands_each_read_to_the_sink_and_gives_the_connection_back() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            writer.write(_chunked_head())
            for part in (b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
                writer.write(_chunk(part))
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(_reply(b"{}"))
        return True

    async def work(url: str) -> None:
        client, target, reply = await _posted(url)
        got: list[bytes] = []
        await reply.pipe(lambda data: got.append(data) is None, 5, _never_full)
        assert got == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]  # one sink call a read
        assert await (await client.post(target, b"{}")).read() == b"{}"
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"1"]  # the streamed exchange's connection reused


def test_pipe_stops_reading_while_the_sink_is_full_and_resumes_after_drain() -> None:
    drained = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_chunked_head() + _chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.05)
        for part in (b"data: 2\n\n", b"data: 3\n\n"):
            writer.write(_chunk(part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async def work(url: str) -> None:
        client = Client()
        reply = await client.post(Target(url, {}), b"{}")
        got: list[bytes] = []

        def sink(data: bytes) -> bool:
            got.append(data)
            return len(got) > 1  # full after the first piece

        async def drain() -> None:
            await asyncio.sleep(0.2)  # the rest is sent meanwhile, and must wait unread
            assert got == [b"data: 1\n\n"]
            drained.set()

        await reply.pipe(sink, 5, drain)
        assert drained.is_set()
        assert b"".join(got) == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
        await client.close()

    asyncio.run(_serve(handler, work))


def test_pipe_times_out_on_silence_but_not_on_a_long_stream_of_short_gaps() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_chunked_head())
        for i in range(6):  # 6 x 0.06 s: longer than the timeout in all, each gap shorter
            writer.write(_chunk(b"data: %d\n\n" % i))
            await writer.drain()
            await asyncio.sleep(0.06)
        if n == 0:
            writer.write(b"0\r\n\r\n")
            return True
        await asyncio.sleep(1.0)  # then silence
        return False

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {})
        got: list[bytes] = []
        await (await client.post(target, b"{}")).pipe(lambda d: got.append(d) is None, 0.25, _never_full)
        assert len(b"".join(got).split(b"\n\n")) == 7
        got.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await (await client.post(target, b"{}")).pipe(lambda d: got.append(d) is None, 0.25, _never_full)
        assert len(b"".join(got).split(b"\n\n")) == 7  # everything before the silence was handed on
        assert 0.55 <= loop.time() - started < 3  # ~6 x 0.06 + 0.25: from the last data, not the start
        await client.close()

    asyncio.run(_serve(handler, work))


def test_pipe_raises_what_the_sink_raised_and_ends_quietly_on_a_cut_stream() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_chunked_head() + _chunk(b"data: 1\n\n"))
        await writer.drain()
        if n == 0:
            await asyncio.sleep(0.05)
            writer.write(_chunk(b"data: 2\n\n") + b"0\r\n\r\n")
        return False  # n == 1: cut after the first event

    async def work(url: str) -> None:
        client = Client()
        target = Target(url, {})

        def broken(data: bytes) -> bool:
            raise ValueError("the sink broke")

        with pytest.raises(ValueError, match="the sink broke"):
            await (await client.post(target, b"{}")).pipe(broken, 5, _never_full)
        got: list[bytes] = []
        await (await client.post(target, b"{}")).pipe(lambda d: got.append(d) is None, 5, _never_full)
        assert got == [b"data: 1\n\n"]
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"2"]  # the broken exchange's connection was closed


def test_a_pipe_cancelled_while_its_reading_is_paused_does_not_pool_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            writer.write(_chunked_head() + _chunk(b"data: 1\n\n") + b"0\r\n\r\n")
        else:
            writer.write(_reply(b"{}"))
        return True

    async def work(url: str) -> None:
        client, target, reply = await _posted(url)
        task = asyncio.ensure_future(reply.pipe(lambda data: False, 5, asyncio.Event().wait))  # never drains
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = await asyncio.wait_for(client.post(target, b"{}"), 5)  # a paused connection would never answer
        assert await again.read() == b"{}"
        await client.close()

    seen = asyncio.run(_serve(handler, work))
    assert [s.split(b" ", 1)[0] for s in seen] == [b"1", b"2"]
