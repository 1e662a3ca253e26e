"""store/loop_share.py: work on the event loop in slices sized by how long the loop's other work took."""

from __future__ import annotations

import asyncio

from llmbill.proxy.store.loop_share import LoopShare


class Clock:
    """Whole microseconds, so that the slices' arithmetic is exact."""

    def __init__(self) -> None:
        self.us = 0

    def __call__(self) -> float:
        return self.us / 1e6


def _slices(other_us: int, units: int, unit_us: int) -> list[int]:
    """Units of `unit_us` done per slice, while each turn of the loop's other work takes `other_us`."""
    clock = Clock()
    done: list[int] = [0]

    async def other() -> None:
        while True:
            clock.us += other_us
            await asyncio.sleep(0)

    async def work() -> None:
        share = LoopShare(clock, least=100e-6, share=0.25, most=0.02)
        for _ in range(units):
            clock.us += unit_us
            done[-1] += 1
            if share.used_up():
                await share.turn()
                done.append(0)

    async def main() -> None:
        ticker = asyncio.ensure_future(other())
        await asyncio.sleep(0)
        await work()
        ticker.cancel()

    asyncio.run(main())
    return [n for n in done if n]


def test_on_an_idle_loop_a_slice_is_the_least() -> None:
    slices = _slices(other_us=20, units=150, unit_us=7)
    assert slices == [15] * 10  # the unit that crosses 100 µs ends the slice: the loop given back each time


def test_on_a_busy_loop_a_slice_is_its_share_of_the_other_work() -> None:
    slices = _slices(other_us=40_000, units=5000, unit_us=7)
    assert slices[0] == 15  # the first slice knows nothing yet: the least
    assert slices[1:-1] == [1429, 1429, 1429]  # then a quarter of the 40 ms the others took: 10 ms
    assert len(slices) == 5  # 5,000 units in 5 slices, not 334


def test_a_slice_never_exceeds_the_most() -> None:
    slices = _slices(other_us=1_000_000, units=10_000, unit_us=7)
    assert slices[1:3] == [2858, 2858]  # 20 ms, however long the other work took
