"""One write per response (server_protocol.py): uvicorn's own httptools protocol, driven in-process
over a recording transport, writes a whole response with one write; a head alone still leaves within
the event loop's iteration, and nothing is reordered or lost on a close. A body that pipes itself is
written in uvicorn's chunked framing, ended by uvicorn, and dropped once the client is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from llmbill.proxy.http import Response, StreamingResponse
from llmbill.proxy.server_protocol import HeadHoldingTransport, OneWriteHttpToolsProtocol, body_writer


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
                                proxy_headers=False, access_log=False)  # as cli.py runs it
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


class Piped:
    """A body that pushes itself (what relay.RelayedStream does): `parts` written through the writer."""

    can_pipe = True

    def __init__(self, parts: list[bytes], between: Any = None, last: bytes = b"") -> None:
        self.parts = parts
        self.between = between  # called after the first part (e.g. the client leaving)
        self.last = last  # returned: sent with the response's end
        self.accepted: list[bool] = []

    def __aiter__(self) -> Any:
        raise AssertionError("a pipeable body must not be pulled when the server offers a writer")

    async def pipe(self, write: Any, drain: Any) -> bytes:
        for i, part in enumerate(self.parts):
            self.accepted.append(write(part))
            if i == 0 and self.between is not None:
                self.between()
            await asyncio.sleep(0)
        return self.last


def test_a_piped_body_is_written_in_uvicorns_chunked_framing_and_ended_by_uvicorn() -> None:
    body = Piped([b"data: 1\n\n", b"data: 22\n\n"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await StreamingResponse(body, 200, [(b"content-type", b"text/event-stream")]).send(send)

    transport = serve(app, REQUEST)
    data = b"".join(transport.writes)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert rest == b"9\r\ndata: 1\n\n\r\na\r\ndata: 22\n\n\r\n0\r\n\r\n"
    assert body.accepted == [True, True]


def test_what_a_piped_body_returns_goes_out_with_the_end_in_the_same_write_as_the_head() -> None:
    """A stream that came whole (nothing written along the way): head, events and the chunked end in
    one write, so the client is woken once."""
    body = Piped([], last=b"data: 1\n\ndata: [DONE]\n\n")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await StreamingResponse(body, 200, [(b"content-type", b"text/event-stream")]).send(send)

    transport = serve(app, REQUEST)
    assert len(transport.writes) == 1
    head, _, rest = transport.writes[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert rest == b"17\r\ndata: 1\n\ndata: [DONE]\n\n\r\n0\r\n\r\n"


def test_a_piped_body_is_dropped_once_the_client_is_gone() -> None:
    transport = Recording()
    protocol_box: list[Any] = []

    def client_leaves() -> None:
        protocol_box[0].connection_lost(None)

    body = Piped([b"data: 1\n\n", b"data: 2\n\n"], between=client_leaves)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await StreamingResponse(body, 200, [(b"content-type", b"text/event-stream")]).send(send)

    async def scenario() -> None:
        config = uvicorn.Config(app, http=OneWriteHttpToolsProtocol, lifespan="off", log_config=None,
                                proxy_headers=False, access_log=False)  # as cli.py runs it
        protocol = OneWriteHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        protocol_box.append(protocol)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(REQUEST)
        for _ in range(20):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    data = b"".join(transport.writes)
    assert b"data: 1" in data and b"data: 2" not in data  # written before the client left, dropped after
    assert body.accepted == [True, True]  # a gone client never stalls the upstream's reading


def test_body_writer_is_only_offered_for_a_started_chunked_uvicorn_response() -> None:
    async def plain_send(message: Any) -> None:
        return None

    assert body_writer(plain_send) is None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        assert body_writer(send) is None  # nothing started yet
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        assert body_writer(send) is None  # a sized body is not chunked
        await send({"type": "http.response.body", "body": b"{}"})

    transport = serve(app, REQUEST)
    assert b"".join(transport.writes).endswith(b"\r\n\r\n{}")


def _both_ways(requests: bytes, response: Response, monkeypatch: Any) -> tuple[Recording, Recording, int]:
    """The same requests answered with `response` by send_whole (when it takes it) and by uvicorn's own
    send (the ASGI messages through a send that is not the cycle's); and how often uvicorn's send ran."""
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    sends = [0]
    real_send = RequestResponseCycle.send

    async def counted(self: Any, message: Any) -> None:
        sends[0] += 1
        await real_send(self, message)

    monkeypatch.setattr(RequestResponseCycle, "send", counted)

    async def direct(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await response.send(send)

    async def through_asgi(scope: Any, receive: Any, send: Any) -> None:
        await receive()

        async def messages(message: Any) -> None:  # no __self__: send_whole leaves it to uvicorn
            await send(message)

        await response.send(messages)

    fast = serve(direct, requests)
    fast_sends, sends[0] = sends[0], 0
    return fast, serve(through_asgi, requests), fast_sends


ORDINARY = Response(200, b'{"ok":true}', [(b"content-type", b"application/json"), (b"x-litellm-call-id", b"c1"),
                                         (b"X-Mixed-Case", b"v a\tb")])


@pytest.mark.parametrize("requests", [
    REQUEST + REQUEST,  # keep-alive, pipelined: each answered in order
    REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"),  # no keep-alive: "connection: close", then closed
    REQUEST.replace(b"host: t\r\n", b"host: t\r\nconnection: close\r\n"),
    REQUEST.replace(b"host: t\r\n", b"host: t\r\nexpect: 100-continue\r\n"),  # 100 Continue first
], ids=["keep-alive", "http-1.0", "connection-close", "100-continue"])
def test_a_whole_response_is_written_as_uvicorns_send_writes_it(requests: bytes, monkeypatch: Any) -> None:
    fast, uvicorns, sends = _both_ways(requests, ORDINARY, monkeypatch)
    assert sends == 0  # uvicorn's send never ran: send_whole wrote it
    assert b"".join(fast.writes) == b"".join(uvicorns.writes) and fast.closed == uvicorns.closed
    assert len(fast.writes) <= len(uvicorns.writes)  # one write a response (a held 100 Continue joins it)


@pytest.mark.parametrize("requests, response", [
    (REQUEST.replace(b"POST", b"HEAD"), ORDINARY),  # no body on the wire
    (REQUEST, Response(204, b"", [])),
    (REQUEST, Response(200, b"{}", [(b"connection", b"close")])),  # the app's own framing header
    (REQUEST, Response(200, b"{}", [(b"x-bad", b"a\r\nx-injected: 1")])),  # refused: uvicorn's 500
    (REQUEST, Response(200, b"{}", [(b"bad name", b"v")])),
], ids=["head", "204", "app-connection-header", "bad-value", "bad-name"])
def test_anything_else_is_left_to_uvicorns_send(requests: bytes, response: Response, monkeypatch: Any) -> None:
    fast, uvicorns, sends = _both_ways(requests, response, monkeypatch)
    assert sends > 0
    assert b"".join(fast.writes) == b"".join(uvicorns.writes) and fast.closed == uvicorns.closed
