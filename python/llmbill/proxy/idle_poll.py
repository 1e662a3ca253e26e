"""Idle polling (general_settings.idle_poll_us, off by default): after the proxy writes a request
upstream or a reply to a client, its event loop keeps polling its sockets for up to that long
instead of going to sleep, so the reply or the client's next request is picked up without a wake-up.

Why: on the 2-core VM of bench/README.md ("Idle polling"), a loop that blocks and is woken pays
~40-50 µs a wait on top of the work (the idle vCPU halts and must be woken, and the caches it had are
partly gone): the round trip to a local fake upstream took 100 µs of wall time asleep and 51 µs
polling (`bench/ablation.py --pieces`). At concurrency 1 a call has two such waits.

The price is CPU: each wait that ends within the window was spent polling (one epoll with no
timeout and one callback per turn of the loop) instead of asleep, and a wait longer than the window
costs the whole window. So it polls only while the process serves one request at a time: with more
in flight the loop has other work, and a window held open under load would only cut its turns into
smaller ones. A proxy with no traffic spends nothing (polling starts only after a write; a health
probe or a scrape opens one window when it is answered). It is for operators
who give the proxy its own cores and want the lowest latency to a fast upstream; on shared nodes, or
when autoscaling on CPU, leave it off. Measured (`bench/idle_poll_cost.py`): one request at a time
to an upstream slower than the window, +217 µs of CPU a call at 200 µs; at 64 connections nothing.
Off by default, like HAProxy's `busy-polling` (unbounded there), which answers the same VM wake-ups;
Seastar's reactor polls idle by default (`--idle-poll-time-us`).

How: while a window is open one callback stays queued on the loop (`call_soon`, re-queued by
itself), and a loop with a ready callback polls with no timeout. `expect()` opens or extends the
window; the callback stops re-queuing itself once the window has passed. The app counts requests in
(`begin`, `end`: the last one out opens a window for the client's next request) and the upstream
client reports each request it writes (`written`: a window for the reply, when it is the only one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

MAX_IDLE_POLL_US = 10_000  # a longer window is a busy loop, not a wait


class IdlePoll:
    """Keeps the running event loop polling for `window` seconds after each `expect()` (0: never)."""

    __slots__ = ("window", "_clock", "_running_loop", "_until", "_loop", "spins", "in_flight")

    def __init__(self, window: float, clock: Callable[[], float] = time.perf_counter,
                 running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop) -> None:
        if not 0 <= window <= MAX_IDLE_POLL_US / 1e6:
            raise ValueError(f"idle poll window {window} s is outside 0 .. {MAX_IDLE_POLL_US} µs")
        self.window = window
        self._clock = clock
        self._running_loop = running_loop
        self._until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop being kept polling, None when idle
        self.spins = 0  # turns of the loop spent polling (tests; one a re-queue)
        self.in_flight = 0  # requests being served (begin/end)

    def begin(self) -> None:
        """A request came in."""
        self.in_flight += 1

    def end(self) -> None:
        """A request was answered (or given up): the last one out expects the client's next."""
        self.in_flight -= 1
        if not self.in_flight:
            self.expect()

    def written(self) -> None:
        """A request went upstream: its reply is expected, polled for when no other request is in flight."""
        if self.in_flight <= 1:
            self.expect()

    def expect(self) -> None:
        """Something is about to arrive (a reply, a client's next request): poll until it does, or
        until the window has passed. Called on the event loop's thread."""
        if not self.window:
            return
        loop = self._running_loop()
        if loop is None:  # a request's `finally` run outside its loop (a coroutine collected late)
            return
        self._until = self._clock() + self.window
        if self._loop is not loop:  # not polling yet (or a stopped loop's callback was left queued)
            self._loop = loop
            loop.call_soon(self._poll, loop)

    def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        if self._clock() < self._until:
            self.spins += 1
            loop.call_soon(self._poll, loop)
        else:
            self._loop = None
