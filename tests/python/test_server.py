"""The single-worker server (server.py): connections that arrive while the event loop is busy are all
accepted within a turn or two, not one per turn as libuv (under uvloop) accepts them; and they are
served and shut down as uvicorn's own are."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
import uvloop

from llmbill.proxy.http import Response
from llmbill.proxy.server import Server
from llmbill.proxy.server_protocol import OneWriteHttpToolsProtocol

CLIENTS = 20
REQUEST = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


async def app(scope: Any, receive: Any, send: Any) -> None:
    await Response(200, b'{"ok":true}').send(send)


def make_server(server_class: type[uvicorn.Server]) -> uvicorn.Server:
    return server_class(uvicorn.Config(app, host="127.0.0.1", port=0, loop="uvloop", lifespan="off",
                                       http=OneWriteHttpToolsProtocol, log_config=None, access_log=False))


async def turns_to_accept(server: uvicorn.Server) -> tuple[int, list[bytes]]:
    """Runs `server`; while its loop is held, CLIENTS connections are made (the kernel completes them)
    and each sends a request; then counts the turns of the loop until the server holds them all."""
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0)
    port = server.servers[0].sockets[0].getsockname()[1]
    clients = []
    for _ in range(CLIENTS):  # the loop is held here: nothing is accepted meanwhile
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(REQUEST)
        clients.append(c)
    turns = 0
    while len(server.server_state.connections) < CLIENTS and turns < 10 * CLIENTS:
        await asyncio.sleep(0)
        turns += 1
    replies = []
    for c in clients:
        c.setblocking(False)
    for c in clients:
        data = b""
        while not data.endswith(b'{"ok":true}'):
            try:
                data += c.recv(4096)
            except BlockingIOError:
                await asyncio.sleep(0)
        replies.append(data)
        c.close()
    server.should_exit = True
    await serving
    return turns, replies


def test_connections_waiting_are_accepted_together_and_served() -> None:
    turns, replies = uvloop.run(turns_to_accept(make_server(Server)))
    assert turns <= 3, turns  # uvicorn's own server: one turn for each (about CLIENTS)
    assert len(replies) == CLIENTS and all(r.startswith(b"HTTP/1.1 200 OK\r\n") for r in replies)


def test_the_drain_stops_with_the_server() -> None:
    async def scenario() -> None:
        server = make_server(Server)
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0)
        port = server.servers[0].sockets[0].getsockname()[1]
        server.should_exit = True
        await serving
        assert isinstance(server, Server) and server._listeners == []
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        assert refused  # no descriptor of the listening socket left open

    uvloop.run(scenario())
