"""SharedLimits (limits.py) in Redis: rpm / tpm / tpd / max-parallel counters and budget reservations
shared by every worker and replica that names the same Redis, so N processes admit exactly what one
would.

One EVALSHA per admission runs ADMIT (lua/admit.lua): it checks every slot of the call and takes all
of them or none — Redis runs a script alone, so no other process's admission falls in between. One
per release runs RELEASE (lua/release.lua). The clock is Redis's (TIME), so replicas with skewed
clocks share one minute and one day. Both keep an entity in one packed state and one index of its
calls in flight (lua/entity.lua), and go through redis_limits_wire.py, which packs and sends them
without redis-py's command path (bench/README.md, "Shared limits in Redis": what each costs).

Money in Redis is an integer count of nano-units (1e-9 USD). A reservation is the upper bound rounded
up to the next nano-unit and the budget headroom is rounded up too, so the integer comparison
`reserved >= headroom` refuses exactly when the Decimal one would (with the reservation at most a
nano-unit larger). Lua numbers are doubles, exact to 2^53 nano-units (9 million USD): a headroom
above that is capped there, which no sum of calls in flight reaches.

A settled call's reservation is not dropped but replaced by its cost, held `settled_hold` seconds
(4 s by default): its process has the cost in its ledger at once, the others only once it is flushed
to the database and they refresh, and until then the held cost stands in for it. This is what makes
the overspend bound one call's upper bound per entity whatever the number of processes; it also
means a process counts a call's cost twice for those few seconds (ledger and hold), refusing early
rather than late. A database that refuses flushes for longer than the hold loosens the bound by
what the other processes settled meanwhile.

Reservations and in-flight slots are per call (an entry 'call id:reserved amount' in the entity's
index, by expiry), each expiring RESERVATION_TTL after its admission: a process that dies with calls
in flight cannot hold their reservations forever. RELEASE finds that entry from the call id and the
slot's amount, so release() must be given the slots admit() was (as Limiter.release needs too). The
TTL is an hour, or twice the longest deployment timeout if longer: a stream's timeout applies to each
chunk, so a call can outlive it, and a reservation that expired under a live call only loosens the
bound by that call. An entity's keys live as long as what they hold needs (a minute's counts two
minutes, a day's two days, a call in flight its TTL), plus a minute.

Tickets: a call at concurrency 1 would otherwise wait a Redis round trip and a script before it is
forwarded (bench/README.md: ~0.3 ms through the proxy). So ADMIT also hands this process, for each
entity that is far from its limits, one call admitted in advance (lua/admit.lua says when: 16 calls
of rpm and parallel room and 17 tickets' worth of budget left after it, no tpm or tpd limit). The
next call whose every limited slot has a ticket that fits it (same limits, reserving no more than the
ticket, before its minute ends, the budget still far from spent as this process sees it) is admitted
at once, and so is a call Redis refused if such tickets are there (they count in the limit that
refused it: in a burst over a limit, each process's last calls use its tickets); its ADMIT runs behind it, confirming it in the ticket's place (never refusing it) and asking
for the next ticket, and its release waits for that. A ticket is an admission like any other —
counted in its minute, holding a parallel slot and its amount in the index, expiring after its
minute — so the limits stay exact and the overspend bound is unchanged; what it costs is that a
ticket not yet used stands for a call that has not happened: other processes see one call more per
entity and ticket holder, only while that entity is far from its limits, and at most one second
(TICKET_IDLE) before an unused ticket is given back (lua/tickets.lua), or its minute and five
seconds should its process die. Near any limit no ticket is given, and every call is checked in
Redis one by one.

Redis down (a connection or timeout error): `redis_failure_policy: fail_closed` refuses the call with
a 503 naming Redis; `fail_open` admits it against this process's in-process limiter (logged once per
outage) and releases it there. Either way readiness reports it and `llmbill_redis_up` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import metrics
from .errors import ProxyError
from .limits import Entity, InProcess, Limiter, Refusal, Slot
from .redis_limits_wire import MAX_CONNECTIONS, Script, Wire, bulk, integer

log = logging.getLogger("llmbill.proxy")

NANO = Decimal("1e-9")
MAX_UNITS = 2**53 - 1
FAILURE_POLICIES = ("fail_closed", "fail_open")
RELEASE_RETRIES = (0.1, 0.5, 2.0)  # seconds before each further try of a release that failed
TIMEOUT = 2.0  # seconds: a connection's wait in the pool, a connect, a command
PACKED_ENTITIES = 4096  # slots' packed arguments kept (see RedisLimiter._admit_parts)
NO_BUDGET = integer(-1) + integer(0)  # a slot's headroom and amount when it has no budget
NOT_ENTERED, ZERO = integer(-1), integer(0)
NO_TICKET, NOT_WANTED = b"$0\r\n\r\n", integer(-1)
TICKET_MARGIN = 1.0  # seconds before its minute ends that a ticket stops being used (Redis's clock may run ahead)
TICKET_IDLE = 1.0  # seconds a ticket may wait for a call before it goes back
SWEEP = 0.5  # seconds between looks for tickets to give back
RELEASE_WAIT = 0.002  # seconds a release waits for an admission to carry it
TICKET_SPARE = 17  # a ticket is used only while the budget's headroom is more than this many times its amount


def units(amount: Decimal) -> int:
    """Nano-units, rounded up (a reservation and a headroom are never understated)."""
    num, den = amount.as_integer_ratio()  # exact; integer arithmetic beats Decimal's here
    n = -(-num * 1_000_000_000 // den)
    return n if n < MAX_UNITS else MAX_UNITS


def reservation_ttl(longest_timeout: float) -> int:
    return max(3600, int(2 * longest_timeout))


def _script(name: str) -> str:
    return resources.files("llmbill.proxy").joinpath("lua", name).read_text()


def _limited(s: Slot) -> bool:
    return not (s.headroom is None and s.rpm is None and s.tpm is None and s.parallel is None and s.tpd is None)


def _opt(v: int | None) -> int:
    return -1 if v is None else v


@dataclass
class _Ticket:
    """One call of `entity` admitted in advance by ADMIT (lua/admit.lua), for this process to use."""

    entity: Entity
    member: bytes  # its entry in the entity's index
    units: int  # the amount it holds: a call reserving more cannot use it
    limits: tuple[int | None, int | None, bool]  # rpm, parallel, and whether a budget: as the slot it was given for
    counted: bool  # it took a request of its minute (an rpm limit)
    given: float  # clock time
    deadline: float  # clock time after which it may not be used: its minute is ending


class RedisUnavailable(ProxyError):
    def __init__(self, why: str) -> None:
        super().__init__(503, f"Redis is unreachable ({why}); rate limits and budgets cannot be checked, so calls are "
                              "refused (general_settings.redis_failure_policy: fail_closed)", "redis_unavailable",
                         headers={"Retry-After": "5"})


class RedisLimiter:
    """SharedLimits in Redis, with this process's Limiter as the fail_open fallback."""

    def __init__(self, client: aioredis.Redis, ttl: int, policy: str, fallback: Limiter,
                 hold: float = 4.0, prefix: str = "llmbill:", wire: Wire | None = None, tickets: bool = True) -> None:
        self.client = client  # readiness pings, and the scripts of credits/redis_ledger.py
        # The limit scripts: on a pool of their own from connect(); else on the client's
        self.wire = wire or Wire(client.connection_pool, TIMEOUT)
        self.ttl = ttl
        self.hold = hold
        self.policy = policy
        self.prefix = prefix
        self.fallback = InProcess(fallback)
        self.error: str | None = None  # the last failure while Redis is down; None while it answers
        self._local: set[str] = set()  # calls admitted by the fallback (released there)
        self._pending: set[asyncio.Task[None]] = set()
        self._admit = Script(_script("entity.lua") + _script("release.lua") + _script("admit.lua"))
        self._release = Script(_script("entity.lua") + _script("release.lua") + "release_calls(ARGV[2], 3, #ARGV)\n")
        self._releases: list[bytes] = []  # releases waiting for an admission to carry them
        self._release_count = 0  # their arguments
        self._release_timer: asyncio.TimerHandle | None = None
        self._give = Script(_script("entity.lua") + _script("tickets.lua"))
        self.tickets_on = tickets
        self.clock: Callable[[], float] = time.monotonic  # tests move it
        self._tickets: dict[Entity, _Ticket] = {}  # this process's, one an entity at most
        self._wanted: dict[Entity, str] = {}  # entities a ticket was asked for, by the call whose ADMIT is on its way
        self._asks: dict[str, asyncio.Future[None]] = {}  # those calls: done when their ADMIT is
        self._confirming: dict[str, asyncio.Task[None]] = {}  # calls admitted by tickets, Redis not told yet
        self._sweeper: asyncio.Task[None] | None = None
        # A slot's arguments that come from its entity's configuration, packed once per entity and
        # limits (bounded: cleared when full), so a call packs only its own amounts.
        self._admit_parts: dict[tuple[Any, ...], bytes] = {}
        self._release_parts: dict[tuple[Any, ...], bytes] = {}
        self.now: float = 0  # tests pin the clock; 0: Redis's TIME
        self._admit_head = self._now() + integer(ttl) + bulk(prefix.encode())  # ADMIT's first arguments, now 0

    def _now(self) -> bytes:
        return bulk(repr(self.now).encode()) if self.now else b"$1\r\n0\r\n"

    def _admit_args(self, call_id: str, slots: Sequence[Slot], used: dict[int, _Ticket] | None,
                    releases: tuple[int, list[bytes]]) -> tuple[int, bytes, list[int] | None]:
        """ADMIT's argument count and arguments, and which slots they name when some were left out
        (None: all). A slot with no limit is left out: Redis has nothing to check or hold for it.
        `used`: the tickets that admitted the call already, by slot (ADMIT then only confirms it);
        `releases`: the releases it carries (their argument count and records)."""
        head = self._admit_head if not self.now else self._now() + integer(self.ttl) + bulk(self.prefix.encode())
        parts = [head, bulk(call_id.encode()), b"$1\r\n1\r\n" if used else b"$1\r\n0\r\n",
                 integer(releases[0]), *releases[1]]
        first = len(parts)
        cache = self._admit_parts
        amount, packed = None, b""
        sent: list[int] | None = None
        for i, s in enumerate(slots):
            if s.headroom is None and s.rpm is None and s.tpm is None and s.parallel is None and s.tpd is None:
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
                part = cache[key] = (bulk("\x1f".join(s.entity).encode()) + integer(_opt(s.rpm)) + integer(_opt(s.tpm))
                                     + integer(_opt(s.parallel)) + integer(_opt(s.tpd)))
            ticket = NO_TICKET if used is None else bulk(used[i].member)
            want = self._want(s, call_id)
            if s.headroom is None:
                parts.append(part + NO_BUDGET + ticket + (NOT_WANTED if want is None else ZERO))
                continue
            if s.amount is not amount:  # a call's slots mostly share one upper bound: converted once
                amount, packed = s.amount, integer(units(s.amount))
            headroom = units(s.headroom)
            digits = b"%d" % (headroom if headroom > 0 else 0)
            parts.append(b"%s$%d\r\n%s\r\n%s%s%s" % (part, len(digits), digits, packed, ticket,
                                                       NOT_WANTED if want is None else integer(want)))
        return 6 + releases[0] + 9 * (len(parts) - first), b"".join(parts), sent

    def _want(self, slot: Slot, call_id: str) -> int | None:
        """The amount of the ticket this call asks for on `slot`'s entity (None: none): one when the
        process has none there and is not asking already; twice the call's own reservation, so that
        calls a little larger than this one fit it."""
        if (not self.tickets_on or slot.tpm is not None or slot.tpd is not None or slot.entity in self._wanted
                or slot.entity in self._tickets):
            return None
        self._wanted[slot.entity] = call_id
        if call_id not in self._asks:
            self._asks[call_id] = asyncio.get_running_loop().create_future()
        return 0 if slot.headroom is None else 2 * units(slot.amount)

    def _release_record(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal) -> tuple[int, bytes]:
        """One call's release (lua/release.lua): its argument count and arguments; slots with nothing
        to give back or count left out (a count of 5: nothing to send)."""
        parts = [bulk(call_id.encode()), integer(tokens), integer(units(cost) if cost > 0 else 0),
                 bulk(repr(self.hold).encode()), b""]
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
                part = cache[key] = (bulk("\x1f".join(s.entity).encode()) + integer(int(s.tpm is not None))
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

    async def admit(self, call_id: str, slots: Sequence[Slot]) -> Refusal | None:
        if self._tickets and self.error is None:
            used = self._usable_tickets(slots)
            if used is not None:  # admitted here and now; Redis is told behind the call
                self._confirm(call_id, slots, used)
                return None
        if not any(_limited(s) for s in slots):  # nothing to ask Redis
            return None
        releases = self._take_releases()
        count, args, sent = self._admit_args(call_id, slots, None, releases)
        try:
            found = await self.wire.run(self._admit, count, args)
        except (RedisError, OSError) as exc:
            self._unwant(call_id, slots)
            self._retry_releases(releases)
            self._down(exc)
            if self.policy == "fail_closed":
                raise RedisUnavailable(self.error or "error") from None
            self._local.add(call_id)
            return await self.fallback.admit(call_id, slots)
        except BaseException:
            self._unwant(call_id, slots)
            self._retry_releases(releases)
            raise
        self._up()
        self._unwant(call_id, slots)
        index, limit, reserved, wait_ms = found[:4] if found[0] else (0, b"", 0, 0)
        if not index:
            self._keep_tickets(call_id, slots, sent, found)
            return None
        if self.tickets_on:
            # This process's own tickets count in the limit that refused: the call is one of theirs,
            # including a ticket an ADMIT still on its way may bring.
            asks = [self._asks[c] for c in {self._wanted.get(s.entity) for s in slots} if c in self._asks]
            if asks:
                await asyncio.wait(asks)
            used = self._usable_tickets(slots) if self._tickets else None
            if used is not None:
                self._confirm(call_id, slots, used)
                return None
        index = int(index) - 1 if sent is None else sent[int(index) - 1]
        return Refusal(index, _text(limit), Decimal(int(reserved)) * NANO, int(wait_ms) / 1000)

    def _unwant(self, call_id: str, slots: Sequence[Slot]) -> None:
        ask = self._asks.pop(call_id, None)
        if ask is None:
            return
        for s in slots:
            if self._wanted.get(s.entity) == call_id:
                del self._wanted[s.entity]
        ask.set_result(None)

    def _usable_tickets(self, slots: Sequence[Slot]) -> dict[int, _Ticket] | None:
        """This process's tickets that admit the call, one for each slot with a limit; None unless
        every such slot has one it fits: a ticket of the same limits, not ending, holding at least the
        call's reservation, and a budget still far from spent as this process sees it now (a budget
        lowered since the ticket was given is checked in Redis, not passed by the ticket)."""
        now = self.clock()
        used: dict[int, _Ticket] = {}
        for i, s in enumerate(slots):
            if s.headroom is None and s.rpm is None and s.tpm is None and s.parallel is None and s.tpd is None:
                continue
            t = self._tickets.get(s.entity)
            if (t is None or t.deadline <= now or t.limits != (s.rpm, s.parallel, s.headroom is not None)
                    or s.tpm is not None or s.tpd is not None):
                return None
            if s.headroom is not None and (units(s.amount) > t.units or units(s.headroom) <= TICKET_SPARE * t.units):
                return None
            used[i] = t
        if not used or len({t.entity for t in used.values()}) < len(used):  # an entity twice: checked in Redis
            return None
        for t in used.values():
            del self._tickets[t.entity]
        return used

    def _confirm(self, call_id: str, slots: Sequence[Slot], used: dict[int, _Ticket]) -> None:
        releases = self._take_releases()
        count, args, sent = self._admit_args(call_id, slots, used, releases)
        task = asyncio.get_running_loop().create_task(self._run_confirm(call_id, slots, count, args, sent, releases))
        self._confirming[call_id] = task
        self._pending.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._pending.discard(t)
            if self._confirming.get(call_id) is t:
                del self._confirming[call_id]
        task.add_done_callback(done)

    async def _run_confirm(self, call_id: str, slots: Sequence[Slot], count: int, args: bytes,
                           sent: list[int] | None, releases: tuple[int, list[bytes]]) -> None:
        # The call runs whatever happens here: its tickets admitted it. Should Redis not hear of it
        # (down), its tickets stay in the index until they expire, holding what the call would have.
        try:
            found = await self.wire.run(self._admit, count, args)
        except (RedisError, OSError) as exc:
            self._retry_releases(releases)
            self._down(exc)
            return
        finally:
            self._unwant(call_id, slots)
        self._up()
        if not found[0]:
            self._keep_tickets(call_id, slots, sent, found)

    def _keep_tickets(self, call_id: str, slots: Sequence[Slot], sent: list[int] | None, found: list[Any]) -> None:
        """Takes the tickets ADMIT gave: found = [0, ms left in their minute, the minute, slot indexes...]."""
        if len(found) <= 3:
            return
        now = self.clock()
        deadline = now + int(found[1]) / 1000 - TICKET_MARGIN
        label = b"t:%d:%s:" % (int(found[2]), call_id.encode())
        for index in found[3:]:
            s = slots[int(index) - 1 if sent is None else sent[int(index) - 1]]
            amount = 0 if s.headroom is None else 2 * units(s.amount)
            ticket = _Ticket(s.entity, label + b"%d" % amount, amount, (s.rpm, s.parallel, s.headroom is not None),
                             s.rpm is not None, now, deadline)
            old = self._tickets.get(s.entity)
            self._tickets[s.entity] = ticket
            if old is not None:  # one is enough: the other goes back
                self._spawn(self._give_back([old]))
        if self._sweeper is None and self._tickets:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Gives back tickets no call used within TICKET_IDLE, or whose minute is ending."""
        try:
            while self._tickets:
                await asyncio.sleep(SWEEP)
                now = self.clock()
                late = [t for t in self._tickets.values() if t.deadline <= now or now - t.given >= TICKET_IDLE]
                for t in late:
                    del self._tickets[t.entity]
                if late:
                    self._spawn(self._give_back(late))  # a task of its own: close() cancels this one
        finally:
            self._sweeper = None

    async def _give_back(self, tickets: list[_Ticket]) -> None:
        parts = [self._now(), bulk(self.prefix.encode())]
        for t in tickets:
            parts += [bulk("\x1f".join(t.entity).encode()), bulk(t.member), b"$1\r\n1\r\n" if t.counted else ZERO]
        try:
            await self.wire.run(self._give, len(parts), b"".join(parts))
        except (RedisError, OSError) as exc:
            self._down(exc)  # they expire with their minute then

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def release(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal = Decimal(0)) -> None:
        """Runs behind the caller (release is called where nothing may be awaited)."""
        if call_id in self._local:
            self._local.discard(call_id)
            self.fallback.release(call_id, slots, tokens)
            return
        record = self._release_record(call_id, slots, tokens, cost)
        if record[0] == 5:  # nothing to give back or count in Redis
            return
        confirming = self._confirming.get(call_id)
        if confirming is None:
            self._queue_release(record)
        else:  # a call admitted by tickets is released only once Redis has entered it
            self._spawn(self._release_after(confirming, record))

    async def _release_after(self, confirming: asyncio.Task[None], record: tuple[int, bytes]) -> None:
        await asyncio.wait((confirming,))  # not `await confirming`: cancelling this must not cancel that
        self._queue_release(record)

    def _queue_release(self, record: tuple[int, bytes]) -> None:
        """The next admission carries it, or RELEASE_WAIT later RELEASE does (with the others then)."""
        self._releases.append(record[1])
        self._release_count += record[0]
        if self._release_timer is None:
            self._release_timer = asyncio.get_running_loop().call_later(RELEASE_WAIT, self._send_releases)

    def _take_releases(self) -> tuple[int, list[bytes]]:
        taken = self._release_count, self._releases
        self._releases, self._release_count = [], 0
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        return taken

    def _send_releases(self) -> None:
        self._release_timer = None
        self._retry_releases(self._take_releases())

    def _retry_releases(self, releases: tuple[int, list[bytes]]) -> None:
        """Releases on their own: those no admission came for, or whose admission failed (and may
        not have run: their reservations come back once either way, by a ZREM; their tokens may
        count twice)."""
        if releases[0]:
            self._spawn(self._run_release(releases))

    async def flush_releases(self) -> None:
        """Sends the releases waiting for an admission and waits for everything under way (which may
        queue more releases: those of calls whose confirmation was on its way)."""
        while True:
            if self._release_count:
                self._send_releases()
            if not self._pending:
                return
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _run_release(self, releases: tuple[int, list[bytes]]) -> None:
        # A release that fails is tried again: dropped, it would hold the call's reservation and
        # parallel slot until its TTL (an hour). After the last try the TTL is what frees them.
        args = self._now() + bulk(self.prefix.encode()) + b"".join(releases[1])
        for delay in (*RELEASE_RETRIES, None):
            try:
                await self.wire.run(self._release, 2 + releases[0], args)
                return
            except (RedisError, OSError) as exc:
                self._down(exc)
                if delay is None:
                    return
                await asyncio.sleep(delay)

    async def ping(self) -> bool:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False
        self._up()
        metrics.REDIS_UP.set(1)
        return True

    def note(self, exc: BaseException | None) -> None:
        """How Redis answered another script (credits/redis_ledger.py): one health for both."""
        if exc is None:
            self._up()
        else:
            self._down(exc)

    def _down(self, exc: BaseException) -> None:
        if self.error is None:  # once per outage
            log.error("Redis unreachable (%s): %s", self.policy, exc)
        self.error = f"{type(exc).__name__}: {exc}"[:300]
        metrics.REDIS_UP.set(0)
        metrics.REDIS_FAILURES.inc()

    def _up(self) -> None:
        if self.error is not None:
            log.warning("Redis answers again; limits are shared again")
            self.error = None
            metrics.REDIS_UP.set(1)

    async def give_back_tickets(self) -> None:
        """Every ticket goes back (at close; tests that look at what Redis holds)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.flush_releases()  # confirmations may bring tickets still
        tickets, self._tickets = list(self._tickets.values()), {}
        if tickets:
            await self._give_back(tickets)

    async def close(self) -> None:
        self.tickets_on = False
        await self.give_back_tickets()
        await self.wire.close()
        await self.client.aclose()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def settled_hold(flush_interval: float, refresh_interval: float) -> float:
    """How long a settled call's cost stays held: its process flushes it to the database within one
    flush interval, every other process reads it within one refresh interval after; twice that plus
    a second covers a slow flush or refresh."""
    return 2 * (flush_interval + refresh_interval) + 1


def connect(url: str, longest_timeout: float, policy: str, fallback: Limiter, hold: float = 4.0,
            tickets: bool = True) -> RedisLimiter:
    # Short socket timeouts: a Redis that hangs must fail a call fast (the policy decides), not hold it.
    # A blocking pool: with more calls in flight than connections, a script waits (at most 2 s) for a
    # free connection. redis-py's default pool raises "Too many connections" at once instead, which
    # read as Redis down: 503s under fail_closed, and releases dropped, so reservations and parallel
    # slots stayed taken until their TTL (measured by bench/scale_out.py at 64 connections).
    # The limit scripts have a pool of their own of the same kind (redis_limits_wire.py); this one
    # serves readiness pings and the credits scripts.
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT,
                                                    socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    client = aioredis.Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool
    return RedisLimiter(client, reservation_ttl(longest_timeout), policy, fallback, hold,
                        wire=Wire.from_url(url, TIMEOUT), tickets=tickets)
