"""uvicorn's server for one worker, accepting every connection that waits at each turn of the event loop.

Why. libuv (under uvloop) accepts one connection per readiness of the listening socket since 1.45
("don't accept() in a loop"), that is one per turn of the event loop. A turn runs every callback
ready at its start: at 256 busy connections that is 50–100 ms of Python here, so a burst of new
connections was accepted at 10–20 a second and the last of 256 waited seconds with its request
already sent — the intermittent multi-second p99 at 256 connections (`strace` showed 45 accept4
calls, one per turn, in a 2 s run; bench/README.md). An idle loop turns at once and never showed it.

So the listening socket is also watched through a duplicate of its descriptor, and each time it is
readable every connection waiting is accepted (up to MAX_ACCEPTS_PER_TURN) and handed to the loop as
uvicorn's own would be: same protocol, same server state, same graceful shutdown. libuv keeps its
own one-per-turn accept on the original descriptor; whichever comes first takes a connection.

With --workers > 1 the workers share one listening socket, and accepting greedily would draw the
connections to whichever worker is least busy at that moment less fairly than libuv's one-at-a-time;
there uvicorn's own server runs unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import uvicorn

log = logging.getLogger("llmbill.proxy")

MAX_ACCEPTS_PER_TURN = 1024  # the listen backlog's default: one readiness never holds the loop longer


class Server(uvicorn.Server):
    """uvicorn.Server plus the accept drain described in the module docstring."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._listeners: list[socket.socket] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or not getattr(self, "servers", None):
            return
        loop = asyncio.get_running_loop()
        for server in self.servers:
            for listening in server.sockets:
                duplicate = socket.socket(fileno=os.dup(listening.fileno()))
                duplicate.setblocking(False)
                self._listeners.append(duplicate)
                loop.add_reader(duplicate.fileno(), self._accept_waiting, duplicate)

    def _protocol(self) -> asyncio.Protocol:
        config = self.config
        protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state)
        return protocol

    def _accept_waiting(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(MAX_ACCEPTS_PER_TURN):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left (or libuv took it first)
            except OSError as exc:  # out of descriptors: libuv's own accept copes; try again next turn
                log.warning("accepting a connection failed: %s", exc)
                return
            conn.setblocking(False)
            task = loop.create_task(self._open(loop, conn))
            self.server_state.tasks.add(task)
            task.add_done_callback(self.server_state.tasks.discard)

    async def _open(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self._protocol, conn)
        except OSError as exc:  # the client left before it was opened
            log.debug("an accepted connection could not be opened: %s", exc)
            conn.close()

    def _stop_accepting(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            listener.close()
        self._listeners.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_accepting()
        await super().shutdown(sockets=sockets)


def serve(app: Any, **settings: Any) -> bool:
    """Runs `app` as uvicorn.run would with one worker, on this Server; False if it never started."""
    server = Server(uvicorn.Config(app, **settings))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return bool(server.started)
