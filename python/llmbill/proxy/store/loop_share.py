"""Long work on the event loop in slices, each slice sized by how busy the loop is.

A spend flush converts thousands of rows on the event loop (store/sql.py). Done at once, it held
every request of that moment for the whole batch; given back after a fixed 100 µs, a flush at 256
connections — where the rest of one turn of the loop is 50–70 ms of requests — took a hundred turns,
seconds: the rows of the next flush piled up meanwhile, the cache refresh queued behind the flush
went late, the hot records went stale and every request waited for their re-read behind the flush
(bench/README.md, "The flush's turns"). So a slice lasts `share` of the time the loop's other work
took in the turn before it, at least `least` and at most `most`: on an idle loop the slices stay
short, on a busy one the flush still takes only about share / (1 + share) of the loop and ends in a
few turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LoopShare:
    """`await share.turn()` between units of the work: gives the loop back when the slice is used up."""

    __slots__ = ("_clock", "_least", "_share", "_most", "_ends")

    def __init__(self, clock: Callable[[], float], least: float, share: float, most: float) -> None:
        self._clock, self._least, self._share, self._most = clock, least, share, most
        self._ends = clock() + least

    def used_up(self) -> bool:
        return self._clock() >= self._ends

    async def turn(self) -> None:
        """Gives the loop back (the requests waiting on it go first); the next slice is sized by how
        long they took."""
        left = self._clock()
        await asyncio.sleep(0)
        back = self._clock()
        self._ends = back + min(self._most, max(self._least, (back - left) * self._share))
