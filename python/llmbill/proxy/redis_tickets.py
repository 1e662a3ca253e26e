"""The tickets of redis_limits.py as one process sees them: calls admitted in advance by Redis (one
an entity at most), which ones this process asks for, and which a call may use.

A ticket is what ADMIT (lua/admit.lua) hands a process besides its admission, for an entity far from
its limits: one more call, counted in its minute, holding a parallel slot and its amount in the
entity's index until it is used, given back or expired. The process's next call whose every limited
slot has a ticket that fits it is admitted without waiting for Redis (redis_limits.py confirms it
behind the call). This module decides nothing Redis must not: the limits are checked there when the
ticket is given; here only whether a ticket still fits the call in hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .limits import Entity, Slot
from .redis_limits_args import limited, units

MARGIN = 1.0  # seconds before its minute ends that a ticket stops being used (Redis's clock may run ahead)
IDLE = 1.0  # seconds a ticket may wait for a call before it goes back
SPARE = 17  # a ticket is used only while the budget's headroom is more than this many times its amount


@dataclass
class Ticket:
    """One call of `entity` admitted in advance, for this process to use."""

    entity: Entity
    member: bytes  # its entry in the entity's index
    units: int  # the amount it holds: a call reserving more cannot use it
    limits: tuple[int | None, int | None, bool]  # rpm, parallel, and whether a budget: as the slot it was given for
    counted: bool  # it took a request of its minute (an rpm limit)
    given: float  # clock time
    deadline: float  # clock time after which it may not be used: its minute is ending


class Tickets:
    def __init__(self, on: bool) -> None:
        self.on = on
        self.clock: Callable[[], float] = time.monotonic  # tests move it
        self.held: dict[Entity, Ticket] = {}
        self._wanted: dict[Entity, str] = {}  # entities a ticket was asked for, by the call whose ADMIT is on its way
        self._asks: dict[str, asyncio.Future[None]] = {}  # those calls: done when their ADMIT is
        self._awaited: set[str] = set()  # asks a call without a ticket waits for (one call each)

    def want(self, slot: Slot, call_id: str) -> int | None:
        """The amount of the ticket `call_id` asks for on `slot`'s entity (None: none): one when this
        process holds none there and is not asking already, and the slot has no tpm or tpd limit
        (those count tokens, known only after a call); twice the call's own reservation, so that calls
        a little larger than this one fit it."""
        if (not self.on or slot.tpm is not None or slot.tpd is not None or slot.entity in self._wanted
                or slot.entity in self.held):
            return None
        self._wanted[slot.entity] = call_id
        if call_id not in self._asks:
            self._asks[call_id] = asyncio.get_running_loop().create_future()
        return 0 if slot.headroom is None else 2 * units(slot.amount)

    def answered(self, call_id: str, slots: Sequence[Slot]) -> None:
        """`call_id`'s ADMIT is back (or failed): what it asked for is asked no more."""
        ask = self._asks.pop(call_id, None)
        self._awaited.discard(call_id)
        if ask is None:
            return
        for s in slots:
            if self._wanted.get(s.entity) == call_id:
                del self._wanted[s.entity]
        ask.set_result(None)

    def asked(self, slots: Sequence[Slot]) -> list[asyncio.Future[None]]:
        """The ADMITs on their way that may bring a ticket for one of these slots' entities."""
        calls = {self._wanted.get(s.entity) for s in slots}
        return [self._asks[c] for c in calls if c is not None and c in self._asks]

    def await_first(self, slots: Sequence[Slot]) -> list[asyncio.Future[None]]:
        """The asks on their way for these slots' entities that no other call waits for yet, now
        waited for by this one. At concurrency 1 the next call can come before the confirmation that
        brings its ticket (the upstream answered first): the answer is then already on its way, and
        waiting for it costs less than a round trip of its own. One call an ask: the ticket admits
        one call, and the others would wait for nothing."""
        calls = {self._wanted.get(s.entity) for s in slots if limited(s)}
        if None in calls:
            return []  # an entity nobody asks a ticket for: the call goes to Redis anyway
        mine = [c for c in calls if c is not None and c in self._asks and c not in self._awaited]
        self._awaited.update(mine)
        return [self._asks[c] for c in mine]

    def use(self, slots: Sequence[Slot]) -> dict[int, Ticket] | None:
        """Takes the tickets that admit this call, by slot; None (taking none) unless every slot with
        a limit has one it fits: the same limits, not ending, holding at least the call's reservation,
        and a budget still far from spent as this process sees it now (a budget lowered since the
        ticket was given is checked in Redis, not passed by the ticket). An entity named twice in a
        call is checked in Redis too."""
        if not self.held:
            return None
        now = self.clock()
        used: dict[int, Ticket] = {}
        for i, s in enumerate(slots):
            if not limited(s):
                continue
            t = self.held.get(s.entity)
            if (t is None or t.deadline <= now or t.limits != (s.rpm, s.parallel, s.headroom is not None)
                    or s.tpm is not None or s.tpd is not None):
                return None
            if s.headroom is not None and (units(s.amount) > t.units or units(s.headroom) <= SPARE * t.units):
                return None
            used[i] = t
        if not used or len({t.entity for t in used.values()}) < len(used):
            return None
        for t in used.values():
            del self.held[t.entity]
        return used

    def keep(self, call_id: str, slots: Sequence[Slot], sent: list[int] | None, found: list[Any]) -> list[Ticket]:
        """Takes the tickets an ADMIT gave: found = [0, ms left in their minute, the minute, the
        indexes (1-based) of the slots sent that got one...]. Returns those they displace (to give back)."""
        if len(found) <= 3:
            return []
        now = self.clock()
        deadline = now + int(found[1]) / 1000 - MARGIN
        label = b"t:%d:%s:" % (int(found[2]), call_id.encode())
        displaced = []
        for index in found[3:]:
            s = slots[int(index) - 1 if sent is None else sent[int(index) - 1]]
            amount = 0 if s.headroom is None else 2 * units(s.amount)
            old = self.held.get(s.entity)
            self.held[s.entity] = Ticket(s.entity, label + b"%d" % amount, amount,
                                         (s.rpm, s.parallel, s.headroom is not None), s.rpm is not None, now, deadline)
            if old is not None:
                displaced.append(old)
        return displaced

    def idle(self) -> list[Ticket]:
        """Takes the tickets no call used within IDLE, or whose minute is ending."""
        now = self.clock()
        late = [t for t in self.held.values() if t.deadline <= now or now - t.given >= IDLE]
        for t in late:
            del self.held[t.entity]
        return late

    def take_all(self) -> list[Ticket]:
        taken, self.held = list(self.held.values()), {}
        return taken
