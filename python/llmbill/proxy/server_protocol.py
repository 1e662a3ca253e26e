"""uvicorn's HTTP protocol (httptools) with one write(2) per response instead of two.

uvicorn writes a response's status line and headers when the app sends `http.response.start`, and
its body with the next message: two writes, two syscalls and two TCP segments per reply, ~12 % of
the event loop's samples at c=64 (bench/README.md). ASGI has no message carrying both, so the
merge happens under uvicorn, in the transport it writes to: a write that is a response head
(`HTTP/1.1 ...` up to the blank line) is held and goes out with the next write on the connection —
the body, sent in the same step of the app's task for a whole response. Whatever comes first, the
next write, a close, or the end of the event loop's current iteration (a stream whose first chunk
is not there yet), sends it: order is kept and a head is never held longer than that iteration.

`body_writer` gives a streamed body a way around ASGI's `send` coroutine: a relay pushing each
upstream read (relay.py) writes it as an HTTP chunk from the upstream connection's own callback, in
uvicorn's own framing, and uvicorn's `send` still ends the response.

`send_whole` does the same for a whole response (http.Response): the head and body written as
uvicorn's two `send`s would write them, byte for byte, and the exchange ended as uvicorn ends it —
without the two coroutines and uvicorn's check of each header by two regular expressions (2.6 µs a
reply of 8 headers; here one check over all names and one over all values). Only the ordinary case
takes it (not HEAD, no 1xx/204/304, no content-length, transfer-encoding or connection header of
the app's, the client not paused or gone); anything else, or a header the checks refuse, goes
through uvicorn's `send`, which judges it as it always has.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import (HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, HttpToolsProtocol,
                                                   RequestResponseCycle)

HEAD_START = b"HTTP/1.1 "
HEAD_END = b"\r\n\r\n"


class HeadHoldingTransport:
    """The connection's transport, but a response head waits for the write that follows it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:9] == HEAD_START and data[-4:] == HEAD_END:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)  # the body normally comes before this runs
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a HeadHoldingTransport (`http=` of uvicorn.run)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        held: Any = HeadHoldingTransport(transport, self.loop)
        super().connection_made(held)


class ChunkedBodyWriter:
    """Writes body chunks of a response uvicorn started with chunked transfer encoding, as uvicorn's
    own `send` would (`<hex length>\r\n<data>\r\n`), without the coroutine and message around
    each. A client gone is not an error: the bytes are dropped (the upstream is still read to its
    end and billed, as http.StreamingResponse does)."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle
        self._transport = cycle.transport

    def write(self, data: bytes) -> bool:
        """False when the client's socket is full: the caller waits for drain() before more."""
        cycle = self._cycle
        if cycle.disconnected:
            return True
        self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return not cycle.flow.write_paused

    async def drain(self) -> None:
        if not self._cycle.disconnected:
            await self._cycle.flow.drain()  # uvicorn sets it writable again when the client leaves


def body_writer(send: Any) -> ChunkedBodyWriter | None:
    """The direct writer for `send`'s response, when `send` is uvicorn's httptools cycle and the
    response it started is chunked (a stream); None otherwise (the caller sends ASGI messages)."""
    cycle = getattr(send, "__self__", None)
    if (type(cycle) is not RequestResponseCycle or not cycle.response_started or cycle.response_complete
            or cycle.chunked_encoding is not True or cycle.scope["method"] == "HEAD"):
        return None
    return ChunkedBodyWriter(cycle)


_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})  # uvicorn's own to judge


def send_whole(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Writes a whole response — status, `headers`, a content-length and `body` — in one step when
    `send` is uvicorn's httptools cycle at the start of an ordinary response, as its `send` would
    (see the module's docstring); False when it is not (the caller sends the ASGI messages)."""
    cycle = getattr(send, "__self__", None)
    if (type(cycle) is not RequestResponseCycle or cycle.response_started or cycle.disconnected
            or cycle.flow.write_paused or cycle.access_log or cycle.scope["method"] == "HEAD"
            or not 200 <= status < 600 or status in (204, 304)):
        return False
    every = cycle.default_headers + headers
    names = [name.lower() for name, _ in every]
    if (_FRAMING.intersection(names) or HEADER_RE.search(b"-".join(names))
            or HEADER_VALUE_RE.search(b" ".join([value for _, value in every]))):
        return False  # "-" and " " are what the checks allow: one search stands for one a header
    lines = b"".join([b"%s: %s\r\n" % (name, value) for name, (_, value) in zip(names, every)])
    end = b"\r\n" if cycle.keep_alive else b"connection: close\r\n\r\n"
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.transport.write(b"%s%scontent-length: %d\r\n%s%s" % (STATUS_LINE[status], lines, len(body), end, body))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
