"""proxy.deadlines: asyncio.timeout's behaviour with one timer for all the calls in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmbill.proxy.deadlines import Deadlines


class CountingLoop:
    """The running loop, counting the timers armed on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.armed = 0

    def time(self) -> float:
        return self.loop.time()

    def call_at(self, when: float, callback: Any) -> asyncio.TimerHandle:
        self.armed += 1
        return self.loop.call_at(when, callback)


async def value(v: int, delay: float = 0.0) -> int:
    await asyncio.sleep(delay)
    return v


def test_a_call_within_its_time_returns_its_value_and_leaves_nothing_open() -> None:
    async def run() -> None:
        d = Deadlines(asyncio.get_running_loop())
        assert await d.within(5, lambda: value(7)) == 7
        assert await d.within(None, lambda: value(8)) == 8
        assert not d._open
        d.close()
    asyncio.run(run())


def test_a_call_past_its_time_raises_timeout_error_and_is_stopped() -> None:
    stopped = []

    async def slow() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            stopped.append(True)
            raise
        return 1

    async def run() -> float:
        loop = asyncio.get_running_loop()
        d = Deadlines(loop)
        t = loop.time()
        with pytest.raises(TimeoutError):
            await d.within(0.05, slow)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # nothing left pending
        return loop.time() - t
    elapsed = asyncio.run(run())
    assert stopped == [True]
    assert 0.04 <= elapsed < 1.0


def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def run() -> None:
        d = Deadlines(asyncio.get_running_loop())
        task = asyncio.ensure_future(d.within(5, lambda: value(1, 10)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not d._open
    asyncio.run(run())


def test_calls_with_later_deadlines_arm_no_timer_of_their_own() -> None:
    async def run() -> int:
        counting = CountingLoop(asyncio.get_running_loop())
        d = Deadlines(counting)  # type: ignore[arg-type]
        for i in range(200):
            assert await d.within(600, lambda: value(i)) == i
        d.close()
        return counting.armed
    assert asyncio.run(run()) == 1


def test_a_short_deadline_expires_beside_a_long_one_that_completes() -> None:
    async def run() -> tuple[Any, Any]:
        counting = CountingLoop(asyncio.get_running_loop())
        d = Deadlines(counting)  # type: ignore[arg-type]
        long = asyncio.ensure_future(d.within(5, lambda: value(2, 0.15)))
        short = asyncio.ensure_future(d.within(0.05, lambda: value(3, 10)))
        results = await asyncio.gather(long, short, return_exceptions=True)
        assert counting.armed == 3  # the long one's, the short one's, the long one's again after the short fired
        return results[0], results[1]
    got_long, got_short = asyncio.run(run())
    assert got_long == 2
    assert isinstance(got_short, TimeoutError)


def test_the_timer_is_not_rearmed_once_nothing_is_in_flight() -> None:
    async def run() -> int:
        counting = CountingLoop(asyncio.get_running_loop())
        d = Deadlines(counting)  # type: ignore[arg-type]
        assert await d.within(0.02, lambda: value(1)) == 1
        await asyncio.sleep(0.06)  # the timer fires with no call open
        assert d._timer is None
        return counting.armed
    assert asyncio.run(run()) == 1
