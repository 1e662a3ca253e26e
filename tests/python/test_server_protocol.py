"""One write per response (server_protocol.py): uvicorn's own httptools protocol, driven in-process
over a recording transport, writes a whole response with one write; a head alone still leaves within
the event loop's iteration, and nothing is reordered or lost on a close."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from llmbill.proxy.http import Response, StreamingResponse
from llmbill.proxy.server_protocol import HeadHoldingTransport, OneWriteHttpToolsProtocol


class Recording:
    """The transport a protocol writes to: every write(2) it would make, in order."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 4000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


REQUEST = b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def serve(app: Any, requests: bytes, transport: Recording | None = None) -> Recording:
    """`requests` through OneWriteHttpToolsProtocol (uvicorn's protocol, its real send code)."""
    transport = transport or Recording()

    async def scenario() -> Recording:
        config = uvicorn.Config(app, http=OneWriteHttpToolsProtocol, lifespan="off", log_config=None,
                                proxy_headers=False)
        protocol = OneWriteHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(requests)
        for _ in range(20):  # the app's task, then the flush of anything held
            await asyncio.sleep(0)
        return transport

    return asyncio.run(scenario())


def test_a_whole_response_is_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await Response(200, b'{"ok":true}').send(send)

    transport = serve(app, REQUEST + REQUEST)  # two on one keep-alive connection
    assert len(transport.writes) == 2
    for write in transport.writes:
        head, _, body = write.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 11" in head
        assert body == b'{"ok":true}'
    assert not transport.closed


def test_a_stream_sends_its_head_at_once_and_its_chunks_in_order() -> None:
    gate = asyncio.Event()

    async def chunks() -> Any:
        await gate.wait()  # the first chunk is not there yet: the head must not wait for it
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        response = StreamingResponse(chunks(), 200, [(b"content-type", b"text/event-stream")])
        task = asyncio.ensure_future(response.send(send))
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK")
        gate.set()
        await task

    transport = Recording()
    serve(app, REQUEST, transport)
    data = b"".join(transport.writes)
    assert data.endswith(b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n")  # chunked, in order


def test_the_holding_transport_keeps_order_and_flushes_before_a_close() -> None:
    async def scenario() -> None:
        inner = Recording()
        held = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"not a head")
        assert inner.writes == [b"not a head"]  # other writes go at once
        held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert inner.writes == [b"not a head"]
        await asyncio.sleep(0)  # the end of the iteration: a head alone goes out
        assert inner.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
        held.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 1\r\n\r\n")
        held.close()  # uvicorn's 400 path: write then close at once
        assert inner.writes[-1] == b"HTTP/1.1 400 Bad Request\r\ncontent-length: 1\r\n\r\n" and inner.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing left and writes nothing
        assert len(inner.writes) == 3
        assert held.is_closing() and held.get_extra_info("sockname") == ("127.0.0.1", 4000)

    asyncio.run(scenario())
