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
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

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
