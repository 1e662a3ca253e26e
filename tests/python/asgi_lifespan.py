"""An ASGI app run in process for its lifespan: started (its `lifespan.startup.complete` awaited) on
entry, shut down on exit — for tests and bench tools that call the app without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    life = asyncio.create_task(app({"type": "lifespan"}, messages.get, send))
    ready = asyncio.ensure_future(started.wait())
    await asyncio.wait({ready, life}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():  # the app's start-up failed (or its lifespan ended): no waiting forever
        ready.cancel()
        await life  # its exception, if it raised one
        raise RuntimeError("the app's lifespan ended without completing its start-up")
    try:
        yield
    finally:
        await messages.put({"type": "lifespan.shutdown"})
        await life
