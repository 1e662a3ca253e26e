"""The arguments of the limit scripts (lua/admit.lua, release.lua, tickets.lua), packed as RESP bytes
for redis_limits_wire.py: what a slot's entity configuration gives is packed once and kept, so a call
packs only its own amounts.

Money in Redis is an integer count of nano-units (1e-9 USD). A reservation is the upper bound rounded
up to the next nano-unit and the budget headroom is rounded up too, so the integer comparison
`reserved >= headroom` refuses exactly when the Decimal one would (with the reservation at most a
nano-unit larger). Lua numbers are doubles, exact to 2^53 nano-units (9 million USD): a headroom
above that is capped there, which no sum of calls in flight reaches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .limits import Slot
from .redis_limits_wire import bulk, integer

if TYPE_CHECKING:
    from .redis_tickets import Ticket

NANO = Decimal("1e-9")
MAX_UNITS = 2**53 - 1
PACKED_ENTITIES = 4096  # slots' packed arguments kept (bounded: cleared when full)
NO_BUDGET = integer(-1) + integer(0)  # a slot's headroom and amount when it has no budget
NOT_ENTERED, ZERO, ONE = integer(-1), integer(0), integer(1)
NO_TICKET, NOT_WANTED = b"$0\r\n\r\n", integer(-1)

Releases = tuple[int, list[bytes]]  # releases' argument count, and their records


def units(amount: Decimal) -> int:
    """Nano-units, rounded up (a reservation and a headroom are never understated)."""
    num, den = amount.as_integer_ratio()  # exact; integer arithmetic beats Decimal's here
    n = -(-num * 1_000_000_000 // den)
    return n if n < MAX_UNITS else MAX_UNITS


def limited(s: Slot) -> bool:
    """Whether Redis has anything to check or hold for the slot (one with no limit is not sent)."""
    return not (s.headroom is None and s.rpm is None and s.tpm is None and s.parallel is None and s.tpd is None)


def _entity(entity: tuple[str, str]) -> bytes:
    """An entity as the scripts name it: kind and id joined by \x1f."""
    return bulk("\x1f".join(entity).encode())


def _opt(v: int | None) -> int:
    return -1 if v is None else v


class Packer:
    def __init__(self, ttl: int, hold: float, prefix: str) -> None:
        self.ttl = ttl
        self.hold = hold
        self.prefix = prefix
        self.now: float = 0  # tests pin the clock; 0: Redis's TIME
        self._prefix = bulk(prefix.encode())
        self._admit_head = self.now_arg() + integer(ttl) + self._prefix  # ADMIT's first arguments, now 0
        self._admit_parts: dict[tuple[Any, ...], bytes] = {}
        self._release_parts: dict[tuple[Any, ...], bytes] = {}
        self._hold = bulk(repr(hold).encode())

    def now_arg(self) -> bytes:
        return bulk(repr(self.now).encode()) if self.now else b"$1\r\n0\r\n"

    def admit(self, call_id: str, slots: Sequence[Slot], used: dict[int, Ticket] | None,
              want: Callable[[Slot], int | None], releases: Releases) -> tuple[int, bytes, list[int] | None]:
        """ADMIT's argument count and arguments, and which slots they name when some were left out
        (None: all). `used`: the tickets that admitted the call already, by slot (ADMIT then only
        confirms it); `want`: the ticket to ask for on a slot; `releases`: those the call carries."""
        head = self._admit_head if not self.now else self.now_arg() + integer(self.ttl) + self._prefix
        parts = [head, bulk(call_id.encode()), ONE if used else ZERO, integer(releases[0]), *releases[1]]
        first = len(parts)
        cache = self._admit_parts
        amount, packed = None, b""
        sent: list[int] | None = None
        for i, s in enumerate(slots):
            if not limited(s):
                if sent is None:
                    sent = list(range(i))
                continue
            if sent is not None:
                sent.append(i)
            key = (s.entity, s.rpm, s.tpm, s.parallel, s.tpd)
            part = cache.get(key)
            if part is None:
                if len(cache) >= PACKED_ENTITIES:
                    cache.clear()
                part = cache[key] = (_entity(s.entity) + integer(_opt(s.rpm)) + integer(_opt(s.tpm))
                                     + integer(_opt(s.parallel)) + integer(_opt(s.tpd)))
            ticket = NO_TICKET if used is None else bulk(used[i].member)
            wanted = want(s)
            if s.headroom is None:
                parts.append(part + NO_BUDGET + ticket + (NOT_WANTED if wanted is None else ZERO))
                continue
            if s.amount is not amount:  # a call's slots mostly share one upper bound: converted once
                amount, packed = s.amount, integer(units(s.amount))
            headroom = units(s.headroom)
            digits = b"%d" % (headroom if headroom > 0 else 0)
            parts.append(b"%s$%d\r\n%s\r\n%s%s%s" % (part, len(digits), digits, packed, ticket,
                                                       NOT_WANTED if wanted is None else integer(wanted)))
        return 6 + releases[0] + 9 * (len(parts) - first), b"".join(parts), sent

    def release_record(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal) -> tuple[int, bytes]:
        """One call's release (lua/release.lua): its argument count and arguments; slots with nothing
        to give back or count left out (a count of 5: nothing to send)."""
        parts = [bulk(call_id.encode()), integer(tokens), integer(units(cost) if cost > 0 else 0), self._hold, b""]
        cache = self._release_parts
        amount, packed = None, b""
        for s in slots:
            if s.headroom is None and s.parallel is None and s.tpm is None and s.tpd is None:
                continue
            key = (s.entity, s.tpm is not None, s.tpd is not None)
            part = cache.get(key)
            if part is None:
                if len(cache) >= PACKED_ENTITIES:
                    cache.clear()
                part = cache[key] = (_entity(s.entity) + integer(int(s.tpm is not None))
                                     + integer(int(s.tpd is not None)))
            parts.append(part)
            # what ADMIT entered in the entity's index, as it packed it (the same slots come back)
            if s.headroom is not None:
                if s.amount is not amount:
                    amount, packed = s.amount, integer(units(s.amount))
                parts.append(packed)
            else:
                parts.append(NOT_ENTERED if s.parallel is None else ZERO)
        entered = (len(parts) - 5) // 2
        parts[4] = integer(entered)
        return 5 + 4 * entered, b"".join(parts)

    def releases(self, releases: Releases) -> tuple[int, bytes]:
        """RELEASE's arguments: now, the prefix, the records."""
        return 2 + releases[0], self.now_arg() + self._prefix + b"".join(releases[1])

    def give_back(self, tickets: Sequence[Ticket]) -> tuple[int, bytes]:
        """TICKETS' arguments (lua/tickets.lua)."""
        parts = [self.now_arg(), self._prefix]
        for t in tickets:
            parts += [_entity(t.entity), bulk(t.member), ONE if t.counted else ZERO]
        return len(parts), b"".join(parts)
