"""Lago sends each webhook to one URL, so it reaches one proxy process (whichever the load balancer
picks); this tells every other process on the same Redis, within milliseconds, so a top-up unblocks
calls on every proxy, and a subscription that starts releases its held events on every proxy.

Why Redis pub/sub and not a version key read at each hold: the message carries any kind of change
(wallets, subscriptions) to processes that may have no call in flight, costs nothing on the
request path, and needs no new shared state. What it cannot do is replay: a process that is not
subscribed when a message is published (Redis down, reconnecting) misses it, so after every
reconnection the process re-reads everything it gates (`on_gap`), and the backstop poll bounds
the rest. The message is only a prompt: each process reads the wallets (or the subscription) from
Lago itself, so a message can never raise a balance.

Without Redis nothing is relayed: the process that received the webhook re-reads at once, other
workers and replicas at their next poll (credits_settings.poll_interval_seconds) — and held
subscriptions at their next minute's re-check. The store's change log is not used for this: it
records changes to records, and a payer need not have one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from ..redis_limits import RedisLimiter
from . import metrics

log = logging.getLogger("llmbill.proxy")
CHANNEL = "lago-changes"
RETRY_S = 1.0  # between two attempts to subscribe while Redis is down
WAIT_S = 1.0  # one wait for a message (below the client's 2 s socket timeout)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Fanout:
    def __init__(self, limiter: RedisLimiter) -> None:
        self.limiter = limiter
        self.channel = limiter.prefix + CHANNEL
        self.origin = uuid.uuid4().hex  # this process: its own messages were handled when it sent them
        self.handlers: dict[str, Handler] = {}
        self.on_gap: Callable[[], Awaitable[None]] | None = None
        self.listening = asyncio.Event()  # set while subscribed (tests wait on it)
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, kind: str, **fields: str) -> bool:
        """Tells the other processes; False when Redis did not take it (they learn at their poll)."""
        message = json.dumps({"kind": kind, "from": self.origin, **fields})
        try:
            await self.limiter.client.publish(self.channel, message)
        except (RedisError, OSError) as exc:
            metrics.relays("publish_failed").inc()
            log.warning("credits: could not relay a Lago %s change through Redis (other proxies see it at their "
                        "next poll): %s", kind, exc)
            return False
        metrics.relays("published").inc()
        return True

    async def listen(self) -> None:
        """Runs for the life of the process: subscribed, or trying to be again every RETRY_S. Cancelled
        (the process stops), it cancels the re-reads it started."""
        try:
            await self._listen()
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _listen(self) -> None:
        subscribed_before = False
        while True:
            pubsub = self.limiter.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.listening.set()
                if subscribed_before and self.on_gap is not None:
                    self._spawn(self.on_gap())  # what was published while this process was not listening
                subscribed_before = True
                while True:
                    message = await pubsub.get_message(timeout=WAIT_S)
                    if message is not None:
                        self._dispatch(message.get("data"))
            except (RedisError, OSError) as exc:
                if self.listening.is_set():
                    log.warning("credits: not listening for Lago changes relayed by other proxies (retrying every "
                                "%.0f s; the poll still re-reads): %s", RETRY_S, exc)
                self.listening.clear()
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(RETRY_S)

    def _dispatch(self, data: Any) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            return
        if not isinstance(message, dict) or message.get("from") == self.origin:
            return
        handler = self.handlers.get(str(message.get("kind")))
        if handler is not None:
            metrics.relays("received").inc()
            self._spawn(handler(message))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # one bad message never stops the listener
                log.error("credits: a relayed Lago change failed: %s", exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
