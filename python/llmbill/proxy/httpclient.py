"""A lean HTTP/1.1 client for the upstream hop: keep-alive connections (plain or TLS, pooled by
httpclient_pool.py), one write
per request, httptools parsing the reply (Content-Length or chunked), a whole body or a stream of
chunks. Only what forwarding an LLM call needs: POST with a ready body, no redirects, no cookies, no
proxies from the environment.

Why not aiohttp: on the proxy's request path aiohttp's client took ~28 % of all samples at c=64 (its
request/response objects, timers, header multidicts and payload writers), about three times what
this does for the same exchange (bench/profile_proxy.py; ../shared/docs/benchmarks.md measured the
same gap on a bare pass-through proxy).

A request is never sent twice. A provider charges for what it ran, and once a byte of the request
is written nothing proves it did not run: the reply's first byte never coming only shows that the
reply was lost (issue 13: the old rule resent a POST whenever no byte of the reply arrived on a
reused connection, so a call could run and be charged twice). So a pooled connection is checked
just before the request is written instead: one closed by the server while idle is readable (its
EOF, a reset, or stray bytes; one poll(2) with no wait) or already marked closed, and is discarded
unused for another idle one or a new connection. Every failure after the write is the caller's
(UpstreamError, or TimeoutError), and the proxy answers 502 without resending.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import httptools  # uvicorn[standard]'s HTTP parser

if TYPE_CHECKING:
    from .httpclient_pool import Client  # the pool a reply's connection goes back to


class UpstreamError(ConnectionError):
    """The upstream could not be reached or broke the exchange."""


class ConnectFailed(UpstreamError):
    """No connection was made (refused, unresolvable, TLS refused): nothing of the request was written,
    so it did not run (a retry or a fallback may follow it)."""


class Target:
    """A URL split once: where to connect and the request head's fixed part."""

    __slots__ = ("key", "host", "port", "tls", "path", "head")

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.key = (self.tls, self.host, self.port)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rpartition("@")[2]
        lines = [f"POST {self.path} HTTP/1.1", f"host: {host_header}", "user-agent: llmbill", "accept: */*"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")


Sink = Callable[[bytes], bool]  # takes body bytes; False: the consumer is full, stop reading for now


class Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._poller: select.poll | None = None  # can_take_request's, on this connection's socket
        self._start(None)

    def _start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.reusable = False
        self.error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self._loop = loop
        # Set by Reply.pipe: body bytes go to it from data_received itself, with no task switch.
        self.sink: Sink | None = None
        self.last_body = 0.0  # the loop's time of the last body bytes handed to the sink
        self.sink_full = False  # the sink refused more: reading is paused until Reply.pipe drains it

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            self._fail(UpstreamError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed HTTP reply: {exc}"))
        if self.sink is not None and self.chunks:
            self._to_sink()  # after the parse: the body pieces of one read go on in one piece

    def _to_sink(self) -> None:
        assert self.sink is not None and self._loop is not None
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.last_body = self._loop.time()
        try:
            more = self.sink(data)
        except BaseException as exc:  # never into the event loop's callback: the pipe raises it
            self.sink = None
            self._fail(exc)
            return
        if not more and self.transport is not None and not self.closed:
            self.sink_full = True
            self.transport.pause_reading()
            self._notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if (exc is None and self.headers_done and not self.complete and not self.header(b"content-length")
                and "chunked" not in self.header(b"transfer-encoding").lower()):
            self.complete = True  # a body delimited by the close of the connection
            self._notify()
        if not self.complete:
            self._fail(UpstreamError(str(exc) if exc else "connection closed by the upstream"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        self._notify()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        if self.sink is None:
            self._notify()

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()  # only true inside this callback (llhttp resets after)
        self.complete = True
        self._notify()

    # --
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._notify()

    def _notify(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """A future done when something new arrives (headers, a chunk, the end, an error). Made here,
        synchronously, right after the caller checked the state: a coroutine or task would let a
        callback run in between and its news be lost."""
        assert self._loop is not None
        wake = self._wake = self._loop.create_future()
        return wake

    def header(self, name: bytes) -> str:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return ""

    def keep_alive(self) -> bool:
        return self.complete and self.reusable and self.error is None and not self.closed

    def can_take_request(self) -> bool:
        """For an idle pooled connection, just before a request is written: still open, and nothing to
        read. Between exchanges an HTTP/1.1 server sends nothing, so anything readable (EOF, reset,
        stray bytes) means the connection cannot carry a request that would surely reach the server."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        poller = self._poller
        if poller is None:  # made once a connection: its socket (fd) is the same for its whole life
            sock = self.transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
            if fd < 0:
                return False
            poller = self._poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)  # POLLHUP and POLLERR are reported even when not asked for

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Reply:
    """The reply to one request: status and headers at once, the body whole (read()) or as it arrives
    (chunks()). release() hands the connection back (or closes it if the body was not read to the end)."""

    def __init__(self, client: Client, target: Target, conn: Connection) -> None:
        self._client, self._target, self._conn = client, target, conn
        self.status = conn.status
        self.content_type = conn.header(b"content-type")
        encoding = conn.header(b"content-encoding").lower()
        self._inflate = zlib.decompressobj(47) if encoding in ("gzip", "deflate", "x-gzip") else None
        self._released = False

    @property
    def complete(self) -> bool:
        """The whole body has arrived: inside pipe()'s sink, the read being handed on is the last."""
        return self._conn.complete

    def header_map(self) -> dict[str, str]:
        """Every reply header, names lower-cased (adapters read provider-specific ones)."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self._conn.headers}

    def _take(self) -> bytes:
        conn = self._conn
        data = conn.chunks[0] if len(conn.chunks) == 1 else b"".join(conn.chunks)
        conn.chunks.clear()
        return self._inflate.decompress(data) if self._inflate is not None and data else data

    async def read(self) -> bytes:
        conn = self._conn
        try:
            while not conn.complete:
                if conn.error is not None:
                    raise conn.error
                await conn.waiter()
        except BaseException:  # broken, timed out or cancelled mid-body: the connection is unusable
            conn.close()
            raise
        body = self._take()
        if self._inflate is not None:
            body += self._inflate.flush()
        self.release()
        return body

    async def chunks(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        """The body as it arrives; ends quietly when the upstream cuts the stream (what came is kept);
        a silence longer than read_timeout raises TimeoutError."""
        conn = self._conn
        try:
            while True:
                if conn.chunks:
                    data = self._take()
                    if data:
                        yield data
                    continue
                if conn.complete:
                    if self._inflate is not None and (tail := self._inflate.flush()):
                        yield tail
                    return
                if conn.error is not None:
                    return
                if read_timeout is None:
                    await conn.waiter()
                else:
                    await asyncio.wait_for(conn.waiter(), read_timeout)
        finally:
            self.release()

    async def pipe(self, sink: Sink, read_timeout: float | None, drain: Callable[[], Awaitable[None]]) -> None:
        """The body pushed into `sink` as it arrives, from the connection's own callback: no task switch
        and no timer per chunk (chunks() costs both, a large share of a stream's CPU at 1,000 open
        streams, bench/README.md). Returns when the body ends or the upstream cuts it (what came was
        handed on); a silence longer than read_timeout raises TimeoutError; an error the sink raised is
        raised here. `drain()` is awaited whenever the sink said it is full; reading resumes after it."""
        conn = self._conn
        if self._inflate is not None:  # compressed bodies take the pulled path (decompressed in _take)
            async for data in self.chunks(read_timeout):
                if not sink(data):
                    await drain()
            return
        loop = conn._loop or asyncio.get_running_loop()  # the connection's own: no pid check (asyncio's costs a getpid)
        try:
            conn.last_body = loop.time()
            conn.sink = sink
            if conn.chunks:
                conn._to_sink()
            while True:
                if conn.sink_full and not conn.closed:
                    await drain()
                    conn.sink_full = False
                    conn.last_body = loop.time()  # the wait was the client's, not the upstream's silence
                    if conn.transport is not None:
                        conn.transport.resume_reading()
                    if conn.chunks:
                        conn._to_sink()
                    continue
                if conn.error is not None and not isinstance(conn.error, UpstreamError):
                    raise conn.error  # the sink's own failure
                if conn.complete or conn.error is not None:
                    return
                if read_timeout is None:
                    await conn.waiter()
                    continue
                left = conn.last_body + read_timeout - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no data from the upstream for {read_timeout} s")
                try:  # one timer per silence, not one per chunk
                    await asyncio.wait_for(conn.waiter(), left)
                except asyncio.TimeoutError:
                    continue  # data may have come meanwhile (last_body moved): checked above
        finally:
            conn.sink = None
            if conn.sink_full:  # left while its reading was paused (cancelled in drain): not pooled paused
                conn.close()
            self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._conn.keep_alive():
            self._client._put(self._target.key, self._conn)
        else:
            self._conn.close()
