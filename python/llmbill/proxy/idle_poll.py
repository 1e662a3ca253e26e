"""Idle polling (general_settings.idle_poll_us, 200 µs by default, 0 turns it off): after the proxy
writes a request upstream or a reply to a client, its event loop keeps polling its sockets for up to
that long instead of going to sleep — when the last wait of the same kind ended within that long —
so a fast reply or a client's next request is picked up without a wake-up.

Why: on the 2-core VM of bench/README.md ("Idle polling"), a loop that blocks and is woken pays
~40-50 µs a wait on top of the work (the idle vCPU halts and must be woken, and the caches it had are
partly gone): the round trip to a local fake upstream took 100 µs of wall time asleep and 51 µs
polling (`bench/ablation.py --pieces`). At concurrency 1 a call has two such waits.

The price is CPU: a wait spent polling is spent on a core instead of asleep, and a wait longer than
the window costs the whole window for nothing. So it is adaptive, the way a guest kernel's haltpoll
is: every wait is timed, polled or not — the reply's (from the upstream write to its headers) and the
next request's (from the last reply out to the next request in) — and a window opens only when the
last wait of that kind fitted in it. Against a provider's hundreds of milliseconds, or clients that
pause between calls, it never polls (one window wasted when the waits grow, then none); against a
fast local upstream with back-to-back calls it polls exactly the waits it shortens. And only while
the process serves one request at a time: with more in flight the loop has other work. A proxy with
no traffic spends nothing. Measured: bench/README.md ("Adaptive idle polling"); Seastar's reactor
polls idle by default too (`--idle-poll-time-us`).

How: while a window is open one callback stays queued on the loop (`call_soon`, re-queued by
itself), and a loop with a ready callback polls with no timeout. `expect()` opens or extends the
window; the callback stops re-queuing itself once the window has passed. The app counts requests in
and out (`begin`, `end`: the last one out may open a window for the client's next request) and the
upstream client reports each request it writes (`written`: a window for the reply, when it is the
only one) and each reply's headers (`replied`: how long that wait was).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_IDLE_POLL_US = 200  # covers a local upstream's round trip and a client's turnaround on loopback
MAX_IDLE_POLL_US = 10_000  # a longer window is a busy loop, not a wait


class IdlePoll:
    """Keeps the running event loop polling for `window` seconds after a write whose awaited event
    (a reply, a next request) came within `window` last time (0: never polls, times nothing)."""

    __slots__ = ("window", "_clock", "_running_loop", "_until", "_loop", "spins", "in_flight",
                 "_written_at", "_ended_at", "reply_fits", "next_fits")

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
        self._written_at = 0.0  # when the sole request in flight was written upstream (0: no reply awaited)
        self._ended_at = 0.0  # when the last request in flight was answered (0: none since the last began)
        # Whether the last wait of each kind ended within the window: the next one is polled for only then.
        self.reply_fits = False
        self.next_fits = False

    def begin(self) -> None:
        """A request came in (after a gap that says whether the next one is worth polling for)."""
        if self._ended_at:
            self.next_fits = self._clock() - self._ended_at <= self.window
            self._ended_at = 0.0
        self.in_flight += 1

    def end(self) -> None:
        """A request was answered (or given up): the last one out may expect the client's next."""
        self.in_flight -= 1
        if not self.in_flight and self.window:
            self._ended_at = self._clock()
            if self.next_fits:
                self.expect()

    def written(self) -> None:
        """A request went upstream: its reply is timed, and polled for when no other request is in
        flight and the last reply came within the window."""
        if self.in_flight <= 1 and self.window:
            self._written_at = self._clock()
            if self.reply_fits:
                self.expect()

    def replied(self) -> None:
        """A reply's headers came: how long the wait since its write was decides the next one."""
        if self._written_at:
            self.reply_fits = self._clock() - self._written_at <= self.window
            self._written_at = 0.0

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
