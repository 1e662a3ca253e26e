"""This process's part of one payer's shared tally (redis_ledger.py, lua/credit_hold.lua): the usage
it settled, counted so that each settled call is in the tally exactly once.

Not amounts to add but a running total per process (an `origin`): the tally keeps the total it
counted from each origin and adds only the difference, so a script sent again after its reply was
lost (a timeout, Redis stopping mid-reply) adds nothing twice, and scripts racing on different
connections may land in any order.

Not one tally forever: Redis may lose it (restarted without persistence, flushed); the next hold
makes a new one from a seed (seed.py: Lago's usage, read after this process's spool has delivered
what it held). Lago has every call settled before that read, give or take another process's events
still in its spool, so what this process had unconfirmed joins the new tally only for the calls it
settled at or after the read: the settles not confirmed yet are kept with their second, for that.
Those seconds are rounded up (a call settled in the second before the read counts, never one after
it is missed); they are wall-clock seconds of two processes, so clocks out of step by more than
that blur the boundary by as much.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

ROTATE = 2**52  # a total this large starts afresh under a new origin (Lua counts in doubles: exact to 2^53)


def _origin() -> str:
    return uuid.uuid4().hex


@dataclass
class Tally:
    origin: str = field(default_factory=_origin)
    tally: str = ""  # the tally `total` is counted in ("": none seen yet)
    made: float = -1.0  # when Redis made it: orders two tallies a late reply may name
    since: float = 0.0  # when its seed was read
    total: int = 0  # this process's usage counted in `tally`, written or not (nano-units)
    confirmed: int = 0  # how much of it the tally has
    unconfirmed: list[list[int]] = field(default_factory=list)  # [second, amount, total after], oldest first
    drops: list[str] = field(default_factory=list)  # holds to end with the next script

    def settled(self, at: float, amount: int) -> None:
        if amount <= 0:
            return
        second = math.ceil(at)
        self.total += amount
        last = self.unconfirmed[-1] if self.unconfirmed else None
        if last is not None and last[0] >= second:  # the same second (or a clock set back): one entry
            last[1] += amount
            last[2] = self.total
        else:
            self.unconfirmed.append([second, amount, self.total])

    @property
    def pending(self) -> bool:
        return self.total > self.confirmed or bool(self.drops)

    def args(self) -> list[str | int]:
        """What the script needs of this process's usage."""
        args: list[str | int] = [self.origin, self.tally, self.total, self.confirmed, len(self.unconfirmed)]
        for second, amount, _ in self.unconfirmed:
            args += [second, amount]
        return args

    def learn(self, tally: str, made: float, since: float, counted: int, sent_for: str) -> None:
        """A script's reply: what the tally counts of this process's usage. `sent_for`: the tally the
        script was sent for; one that found another while this process still counts in the one it
        was sent for tells what Redis has now, and a late reply from an older tally changes nothing."""
        if not tally:  # no tally (Redis lost it): nothing is counted yet
            return
        if tally == self.tally:
            self.confirmed = max(self.confirmed, counted)
        elif sent_for == self.tally or made >= self.made:  # a new tally: what was settled before its seed is in it
            kept = [(second, amount) for second, amount, _ in self.unconfirmed if second >= since]
            self.tally, self.made, self.since, self.total, self.unconfirmed = tally, made, since, 0, []
            for second, amount in kept:
                self.total += amount
                self.unconfirmed.append([second, amount, self.total])
            self.total = max(self.total, counted)
            self.confirmed = counted
        else:
            return
        self.unconfirmed = [entry for entry in self.unconfirmed if entry[2] > self.confirmed]
        if self.total >= ROTATE and not self.unconfirmed:  # all counted: the tally forgets the origin after ttl
            self.origin, self.total, self.confirmed = _origin(), 0, 0
