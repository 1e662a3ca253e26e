"""Timeouts for the upstream exchanges in flight, with one timer between them all.

`asyncio.timeout` arms a timer per call and cancels it when the call ends: a TimerHandle made and
torn down in uvloop plus the context manager's own steps, 5.5 µs of the event loop a call (1.0 µs
here; bench/README.md) for a timer that almost never fires. Here a call only adds its deadline to a
set; one timer stands at the earliest deadline known when it was armed, and a call whose deadline
is later arms nothing. When the timer fires it cancels the tasks whose deadline has
passed and stands again at the earliest deadline still in flight (none: it is not re-armed).

A call past its deadline raises TimeoutError exactly as under `asyncio.timeout`: its task is
cancelled, and the CancelledError that this cancel caused — and only that one, told apart by the
task's cancellation count — becomes TimeoutError when it reaches `within`.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
_EARLY = 0.001  # uvloop's timers count whole milliseconds


class _Deadline:
    __slots__ = ("when", "task", "cancelling", "expired")

    def __init__(self, when: float, task: asyncio.Task[object], cancelling: int) -> None:
        self.when = when
        self.task = task
        self.cancelling = cancelling  # the task's cancel requests before this deadline began
        self.expired = False


class Deadlines:
    """The deadlines of one event loop's calls in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # None: the loop of the first call's task
        self._open: set[_Deadline] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def within(self, seconds: float | None, work: Callable[[], Awaitable[T]]) -> T:
        """`await work()`, raising TimeoutError once `seconds` have passed (None: no limit). Called
        from a task of this loop."""
        if seconds is None:
            return await work()
        if sys.version_info < (3, 11):  # pragma: no cover - no cancellation counts before 3.11
            return await asyncio.wait_for(work(), seconds)
        task = asyncio.current_task()
        assert task is not None
        loop = self._loop
        if loop is None:
            loop = self._loop = task.get_loop()
        entry = _Deadline(loop.time() + seconds, task, task.cancelling())
        self._open.add(entry)
        if entry.when < self._timer_at:
            self._arm(entry.when)
        try:
            result = await work()
        except asyncio.CancelledError:
            if entry.expired and task.uncancel() <= entry.cancelling:
                raise TimeoutError from None  # this deadline's cancel, not the caller's
            raise
        finally:
            self._open.discard(entry)
        if entry.expired:
            task.uncancel()  # expired as the work finished: the count goes back, as asyncio.timeout's does
        return result

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _arm(self, when: float) -> None:
        assert self._loop is not None  # armed from within(), which set it
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        assert self._loop is not None
        now = self._loop.time()
        earliest = math.inf
        for entry in self._open:
            if entry.expired:
                continue
            if entry.when <= now + _EARLY:  # a timer may fire a clock tick before its time
                entry.expired = True
                entry.task.cancel()
            else:
                earliest = min(earliest, entry.when)
        if earliest != math.inf:
            self._arm(earliest)
