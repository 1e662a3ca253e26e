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

Redis down (a connection or timeout error): `redis_failure_policy: fail_closed` refuses the call with
a 503 naming Redis; `fail_open` admits it against this process's in-process limiter (logged once per
outage) and releases it there. Either way readiness reports it and `llmbill_redis_up` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import metrics
from .errors import ProxyError
from .limits import InProcess, Limiter, Refusal, Slot
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


def units(amount: Decimal) -> int:
    """Nano-units, rounded up (a reservation and a headroom are never understated)."""
    num, den = amount.as_integer_ratio()  # exact; integer arithmetic beats Decimal's here
    n = -(-num * 1_000_000_000 // den)
    return n if n < MAX_UNITS else MAX_UNITS


def reservation_ttl(longest_timeout: float) -> int:
    return max(3600, int(2 * longest_timeout))


def _script(name: str) -> str:
    return resources.files("llmbill.proxy").joinpath("lua", name).read_text()


def _opt(v: int | None) -> int:
    return -1 if v is None else v


class RedisUnavailable(ProxyError):
    def __init__(self, why: str) -> None:
        super().__init__(503, f"Redis is unreachable ({why}); rate limits and budgets cannot be checked, so calls are "
                              "refused (general_settings.redis_failure_policy: fail_closed)", "redis_unavailable",
                         headers={"Retry-After": "5"})


class RedisLimiter:
    """SharedLimits in Redis, with this process's Limiter as the fail_open fallback."""

    def __init__(self, client: aioredis.Redis, ttl: int, policy: str, fallback: Limiter,
                 hold: float = 4.0, prefix: str = "llmbill:", wire: Wire | None = None) -> None:
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
        self._admit = Script(_script("entity.lua") + _script("admit.lua"))
        self._release = Script(_script("entity.lua") + _script("release.lua"))
        # A slot's arguments that come from its entity's configuration, packed once per entity and
        # limits (bounded: cleared when full), so a call packs only its own amounts.
        self._admit_parts: dict[tuple[Any, ...], bytes] = {}
        self._release_parts: dict[tuple[Any, ...], bytes] = {}
        self.now: float = 0  # tests pin the clock; 0: Redis's TIME
        self._admit_head = self._now() + integer(ttl) + bulk(prefix.encode())  # ADMIT's first arguments, now 0

    def _now(self) -> bytes:
        return bulk(repr(self.now).encode()) if self.now else b"$1\r\n0\r\n"

    def _admit_args(self, call_id: str, slots: Sequence[Slot]) -> tuple[int, bytes, list[int] | None]:
        """ADMIT's argument count and arguments, and which slots they name when some were left out
        (None: all). A slot with no limit is left out: Redis has nothing to check or hold for it."""
        head = self._admit_head if not self.now else self._now() + integer(self.ttl) + bulk(self.prefix.encode())
        parts = [head, bulk(call_id.encode())]
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
            if s.headroom is None:
                parts.append(part + NO_BUDGET)
                continue
            if s.amount is not amount:  # a call's slots mostly share one upper bound: converted once
                amount, packed = s.amount, integer(units(s.amount))
            headroom = units(s.headroom)
            digits = b"%d" % (headroom if headroom > 0 else 0)
            parts.append(b"%s$%d\r\n%s\r\n%s" % (part, len(digits), digits, packed))
        return 4 + 7 * (len(parts) - 2), b"".join(parts), sent

    def _release_args(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal) -> tuple[int, bytes]:
        """RELEASE's argument count and arguments; slots with nothing to give back or count left out."""
        parts = [self._now(), bulk(call_id.encode()), bulk(self.prefix.encode()), integer(tokens),
                 integer(units(cost) if cost > 0 else 0), bulk(repr(self.hold).encode())]
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
        return 6 + 4 * ((len(parts) - 6) // 2), b"".join(parts)

    async def admit(self, call_id: str, slots: Sequence[Slot]) -> Refusal | None:
        count, args, sent = self._admit_args(call_id, slots)
        if count == 4:  # no slot has a limit: nothing to ask Redis
            return None
        try:
            found = await self.wire.run(self._admit, count, args)
        except (RedisError, OSError) as exc:
            self._down(exc)
            if self.policy == "fail_closed":
                raise RedisUnavailable(self.error or "error") from None
            self._local.add(call_id)
            return await self.fallback.admit(call_id, slots)
        self._up()
        if not found:
            return None
        index, limit, reserved, wait_ms = found
        index = int(index) - 1 if sent is None else sent[int(index) - 1]
        return Refusal(index, _text(limit), Decimal(int(reserved)) * NANO, int(wait_ms) / 1000)

    def release(self, call_id: str, slots: Sequence[Slot], tokens: int, cost: Decimal = Decimal(0)) -> None:
        """Runs behind the caller (release is called where nothing may be awaited)."""
        if call_id in self._local:
            self._local.discard(call_id)
            self.fallback.release(call_id, slots, tokens)
            return
        args = self._release_args(call_id, slots, tokens, cost)
        if args[0] == 6:  # nothing to give back or count in Redis
            return
        task = asyncio.get_running_loop().create_task(self._run_release(args))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run_release(self, args: tuple[int, bytes]) -> None:
        # A release that fails is tried again: dropped, it would hold the call's reservation and
        # parallel slot until its TTL (an hour). After the last try the TTL is what frees them.
        for delay in (*RELEASE_RETRIES, None):
            try:
                await self.wire.run(self._release, *args)
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

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.wire.close()
        await self.client.aclose()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def settled_hold(flush_interval: float, refresh_interval: float) -> float:
    """How long a settled call's cost stays held: its process flushes it to the database within one
    flush interval, every other process reads it within one refresh interval after; twice that plus
    a second covers a slow flush or refresh."""
    return 2 * (flush_interval + refresh_interval) + 1


def connect(url: str, longest_timeout: float, policy: str, fallback: Limiter, hold: float = 4.0) -> RedisLimiter:
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
                        wire=Wire.from_url(url, TIMEOUT))
