"""SharedLimits (limits.py) in Redis: rpm / tpm / tpd / max-parallel counters and budget reservations
shared by every worker and replica that names the same Redis, so N processes admit exactly what one
would.

One EVALSHA per admission runs ADMIT (lua/admit.lua): it checks every slot of the call and takes all
of them or none — Redis runs a script alone, so no other process's admission falls in between. A
release (lua/release.lua) waits up to RELEASE_WAIT for the next admission to carry it (applied before
that admission's checks), else RELEASE sends it with any others: at concurrency 1 a call costs one
script, not two. The clock is Redis's (TIME), so replicas with skewed clocks share one minute and one
day. The scripts keep an entity in one packed state and one index of its calls in flight
(lua/entity.lua); their arguments are packed by redis_limits_args.py (money as integer nano-units)
and sent by redis_limits_wire.py without redis-py's command path (bench/README.md, "Shared limits
in Redis": what each costs).

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
refused it: in a burst over a limit, each process's last calls use its tickets); its ADMIT runs
behind it, confirming it in the ticket's place (never refusing it) and asking for the next ticket,
and its release waits for that (redis_tickets.py: which tickets a process holds and may use). A
ticket is an admission like any other — counted in its minute, holding a parallel slot and its
amount in the index, expiring after its minute — so the limits stay exact and the overspend bound is unchanged; what it costs is that a
ticket not yet used stands for a call that has not happened: other processes see one call more per
entity and ticket holder, only while that entity is far from its limits, and at most one second
(redis_tickets.IDLE) before an unused ticket is given back (lua/tickets.lua), or its minute and five
seconds should its process die. Near any limit no ticket is given, and every call is checked in
Redis one by one.

Redis down (a connection or timeout error): `redis_failure_policy: fail_closed` refuses the call with
a 503 naming Redis; `fail_open` admits it against this process's in-process limiter (logged once per
outage) and releases it there. Either way readiness reports it and `llmbill_redis_up` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import metrics
from .errors import ProxyError
from .limits import InProcess, Limiter, Refusal, Slot
from .redis_limits_args import MAX_UNITS, NANO, Packer, Releases, limited, units
from .redis_limits_wire import MAX_CONNECTIONS, Script, Wire
from .redis_tickets import Ticket, Tickets

__all__ = ["MAX_UNITS", "NANO", "RedisLimiter", "RedisUnavailable", "connect", "units"]

log = logging.getLogger("llmbill.proxy")

FAILURE_POLICIES = ("fail_closed", "fail_open")
RELEASE_RETRIES = (0.1, 0.5, 2.0)  # seconds before each further try of a release that failed
RELEASE_WAIT = 0.002  # seconds a release waits for an admission to carry it
TIMEOUT = 2.0  # seconds: a connection's wait in the pool, a connect, a command
SWEEP = 0.5  # seconds between looks for tickets to give back


def reservation_ttl(longest_timeout: float) -> int:
    return max(3600, int(2 * longest_timeout))


def _script(name: str) -> str:
    return resources.files("llmbill.proxy").joinpath("lua", name).read_text()


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
        self.args = Packer(ttl, hold, prefix)
        self.tickets = Tickets(tickets)
        self._local: set[str] = set()  # calls admitted by the fallback (released there)
        self._pending: set[asyncio.Task[None]] = set()
        self._admit = Script(_script("entity.lua") + _script("release.lua") + _script("admit.lua"))
        self._release = Script(_script("entity.lua") + _script("release.lua") + "release_calls(ARGV[2], 3, #ARGV)\n")
        self._give = Script(_script("entity.lua") + _script("tickets.lua"))
        self._confirming: dict[str, asyncio.Task[None]] = {}  # calls admitted by tickets, Redis not told yet
        self._sweeper: asyncio.Task[None] | None = None
        self._releases: list[bytes] = []  # releases waiting for an admission to carry them
        self._release_count = 0  # their arguments
        self._release_timer: asyncio.TimerHandle | None = None

    @property
    def now(self) -> float:
        """Redis's clock as the scripts are told it: 0, Redis's TIME; tests pin it."""
        return self.args.now

    @now.setter
    def now(self, value: float) -> None:
        self.args.now = value

    async def admit(self, call_id: str, slots: Sequence[Slot]) -> Refusal | None:
        tickets = self.tickets
        if tickets.on and self.error is None:
            used = tickets.use(slots)
            if used is None:
                coming = tickets.await_first(slots)
                if coming:
                    await asyncio.wait(coming)
                    used = tickets.use(slots)
            if used is not None:  # admitted here and now; Redis is told behind the call
                self._confirm(call_id, slots, used)
                return None
        if not any(limited(s) for s in slots):  # nothing to ask Redis
            return None
        releases = self._take_releases()
        count, args, sent = self.args.admit(call_id, slots, None, lambda s: tickets.want(s, call_id), releases)
        try:
            found = await self.wire.run(self._admit, count, args)
        except BaseException as exc:
            tickets.answered(call_id, slots)
            self._send_alone(releases)  # the admission may not have run: its releases go on their own
            if not isinstance(exc, (RedisError, OSError)):
                raise
            self._down(exc)
            if self.policy == "fail_closed":
                raise RedisUnavailable(self.error or "error") from None
            self._local.add(call_id)
            return await self.fallback.admit(call_id, slots)
        self._up()
        tickets.answered(call_id, slots)
        if not found[0]:
            self._keep(call_id, slots, sent, found)
            return None
        if tickets.on:
            # This process's own tickets count in the limit that refused: the call is one of theirs,
            # including a ticket an ADMIT still on its way may bring.
            asked = tickets.asked(slots)
            if asked:
                await asyncio.wait(asked)
            used = tickets.use(slots)
            if used is not None:
                self._confirm(call_id, slots, used)
                return None
        index, limit, reserved, wait_ms = found[:4]
        index = int(index) - 1 if sent is None else sent[int(index) - 1]
        return Refusal(index, _text(limit), Decimal(int(reserved)) * NANO, int(wait_ms) / 1000)

    def _confirm(self, call_id: str, slots: Sequence[Slot], used: dict[int, Ticket]) -> None:
        releases = self._take_releases()
        count, args, sent = self.args.admit(call_id, slots, used, lambda s: self.tickets.want(s, call_id), releases)
        task = asyncio.get_running_loop().create_task(self._run_confirm(call_id, slots, count, args, sent, releases))
        self._confirming[call_id] = task
        self._pending.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._pending.discard(t)
            if self._confirming.get(call_id) is t:
                del self._confirming[call_id]
        task.add_done_callback(done)

    async def _run_confirm(self, call_id: str, slots: Sequence[Slot], count: int, args: bytes,
                           sent: list[int] | None, releases: Releases) -> None:
        # The call runs whatever happens here: its tickets admitted it. Should Redis not hear of it
        # (down), its tickets stay in the index until they expire, holding what the call would have.
        try:
            found = await self.wire.run(self._admit, count, args)
        except (RedisError, OSError) as exc:
            self._send_alone(releases)
            self._down(exc)
            return
        finally:
            self.tickets.answered(call_id, slots)
        self._up()
        if not found[0]:
            self._keep(call_id, slots, sent, found)

    def _keep(self, call_id: str, slots: Sequence[Slot], sent: list[int] | None, found: list[Any]) -> None:
        displaced = self.tickets.keep(call_id, slots, sent, found)
        if displaced:  # one an entity is enough: the others go back
            self._spawn(self._give_back(displaced))
        if self._sweeper is None and self.tickets.held:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Gives back tickets no call used within redis_tickets.IDLE, or whose minute is ending."""
        try:
            while self.tickets.held:
                await asyncio.sleep(SWEEP)
                late = self.tickets.idle()
                if late:
                    self._spawn(self._give_back(late))  # a task of its own: close() cancels this one
        finally:
            self._sweeper = None

    async def _give_back(self, tickets: list[Ticket]) -> None:
        try:
            await self.wire.run(self._give, *self.args.give_back(tickets))
        except (RedisError, OSError) as exc:
            self._down(exc)  # they expire with their minute then

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def release(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal = Decimal(0)) -> None:
        """Runs behind the caller (release is called where nothing may be awaited)."""
        if call_id in self._local:
            self._local.discard(call_id)
            self.fallback.release(call_id, slots, tokens)
            return
        record = self.args.release_record(call_id, slots, tokens, cost)
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

    def _take_releases(self) -> Releases:
        taken = self._release_count, self._releases
        self._releases, self._release_count = [], 0
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        return taken

    def _send_releases(self) -> None:
        self._release_timer = None
        self._send_alone(self._take_releases())

    def _send_alone(self, releases: Releases) -> None:
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

    async def _run_release(self, releases: Releases) -> None:
        # A release that fails is tried again: dropped, it would hold the call's reservation and
        # parallel slot until its TTL (an hour). After the last try the TTL is what frees them.
        count, args = self.args.releases(releases)
        for delay in (*RELEASE_RETRIES, None):
            try:
                await self.wire.run(self._release, count, args)
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
        tickets = self.tickets.take_all()
        if tickets:
            await self._give_back(tickets)

    async def close(self) -> None:
        self.tickets.on = False
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
