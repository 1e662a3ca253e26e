"""Tickets (proxy/redis_limits.py, lua/admit.lua, lua/tickets.lua) against a real Redis: a call admitted
in advance, so that calls at concurrency 1 do not wait for Redis, with the limits exactly as before."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import redis

from llmbill.proxy.limits import Limiter, Refusal, Slot
from llmbill.proxy.redis_limits import RedisLimiter, connect
from llmbill.proxy.redis_tickets import IDLE as TICKET_IDLE

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 30  # 30 s into a UTC day (and a minute)
T = TypeVar("T")
A, B = ("key", "a"), ("customer", "b")
FAR = [Slot(A, Decimal("0.001"), Decimal(1000), rpm=1000, parallel=1000), Slot(B, Decimal("0.001"), Decimal(1000))]


def run(redis_url: str, body: Callable[[list[RedisLimiter]], Awaitable[T]], processes: int = 1) -> T:
    """`body` with `processes` limiters on one Redis, as many processes' would be; the clock pinned."""
    async def main() -> T:
        limiters = [connect(redis_url, 600, "fail_closed", Limiter()) for _ in range(processes)]
        for limiter in limiters:
            limiter.now = T0
        try:
            return await body(limiters)
        finally:
            for limiter in limiters:
                await limiter.close()
    return asyncio.run(main())


def state(redis_url: str, entity: tuple[str, str]) -> dict[str, Any]:
    """What Redis holds for an entity (lua/entity.lua): held nano-units, calls in flight, the minute's
    requests, and its index's entries."""
    client = redis.Redis.from_url(redis_url)
    try:
        name = "\x1f".join(entity)
        raw: Any = client.get(f"llmbill:s:{name}")
        held, n, _, _, _, _, q = struct.unpack("<7d", raw[:56]) if raw else (0, 0, 0, 0, 0, 0, 0)
        members: Any = client.zrange(f"llmbill:y:{name}", 0, -1)
        index = sorted(m.decode() for m in members if m)
        return {"held": int(held), "n": int(n), "requests": int(q), "index": index}
    finally:
        client.close()


def count_waits(limiter: RedisLimiter) -> list[int]:
    """Counts the scripts run on the caller's own task (awaited by admit) rather than behind it."""
    waits = [0]
    real = limiter.wire.run

    async def run_counting(*args: Any) -> Any:
        if asyncio.current_task() is caller:
            waits[0] += 1
        return await real(*args)
    caller = asyncio.current_task()
    limiter.wire.run = run_counting  # type: ignore[method-assign,assignment]
    return waits


async def settle(*limiters: RedisLimiter) -> None:
    for limiter in limiters:
        await limiter.flush_releases()


async def confirmed(limiter: RedisLimiter) -> None:
    """The scripts under way are back (releases still waiting for the next admission stay waiting)."""
    while limiter._pending:
        await asyncio.gather(*limiter._pending)


def scripts_run(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))  # not the NOSCRIPTs of a fresh Redis
    finally:
        client.close()


def test_calls_after_the_first_are_admitted_by_a_ticket_without_waiting_for_redis(redis_url: str) -> None:
    async def body(limiters: list[RedisLimiter]) -> tuple[int, int, dict[str, Any], dict[str, Any], dict[str, Any]]:
        limiter = limiters[0]
        waits = count_waits(limiter)
        before = scripts_run(redis_url)
        for i in range(10):
            assert await limiter.admit(f"c{i}", FAR) is None
            limiter.release(f"c{i}", FAR, 5, Decimal("0.0005"))
            await confirmed(limiter)  # at concurrency 1 the confirmation is back before the next call
        await settle(limiter)
        during, waited, scripts = state(redis_url, A), waits[0], scripts_run(redis_url) - before
        await limiter.give_back_tickets()
        return waited, scripts, during, state(redis_url, A), state(redis_url, B)
    waits, scripts, during, after, customer = run(redis_url, body)
    assert waits == 1  # the first call only: it brought the ticket the second used, and so on
    assert scripts == 11  # one a call: each release rode with the next call's confirmation, the last alone
    # between calls: no call in flight, one ticket (a request of the minute, a parallel slot, 0.002)
    assert during["n"] == 1 and len(during["index"]) == 1 and during["index"][0].startswith("t:")
    assert during["requests"] == 11 and during["held"] == 10 * 500_000 + 2_000_000
    # given back: exactly what ten calls leave (their costs held until the database shows them)
    assert after == {"held": 10 * 500_000, "n": 0, "requests": 10, "index": []}
    assert customer == {"held": 10 * 500_000, "n": 0, "requests": 0, "index": []}


def test_no_ticket_near_a_limit_and_a_limit_of_a_few_is_checked_call_by_call(redis_url: str) -> None:
    async def body(limiters: list[RedisLimiter]) -> tuple[list[bool], list[int]]:
        limiter = limiters[0]
        waits = count_waits(limiter)
        slots = [Slot(A, rpm=20)]
        out, held = [], []
        for i in range(22):
            out.append(await limiter.admit(f"c{i}", slots) is None)
            limiter.release(f"c{i}", slots, 0)
            await settle(limiter)
            held.append(len(limiter.tickets.held))
        return out, [waits[0]] + held
    out, (waits, *tickets) = run(redis_url, body)
    assert out == [True] * 20 + [False] * 2
    # tickets while 16 requests of room were left after one: calls 1–3 came by ticket
    assert tickets[:3] == [1, 1, 1] and set(tickets[3:]) == {0}
    assert waits == 22 - 3
    for slots, given in (([Slot(("key", "b"), rpm=17)], 0), ([Slot(("key", "c"), parallel=17)], 0),
                         ([Slot(("key", "d"), tpm=10**6)], 0),  # tokens are known only after a call
                         ([Slot(("key", "e"), rpm=10**6, tpd=10**9)], 0),
                         ([Slot(("key", "f"), Decimal(1), Decimal(34))], 0),  # 1 + 2 held: 31 left, not > 17 × 2
                         ([Slot(("key", "g"), Decimal(1), Decimal(38), rpm=18, parallel=18)], 1)):
        assert run(redis_url, lambda ls: _tickets_after_one(ls[0], slots)) == given, slots


async def _tickets_after_one(limiter: RedisLimiter, slots: list[Slot]) -> int:
    assert await limiter.admit("first", slots) is None
    await settle(limiter)
    return len(limiter.tickets.held)


def test_a_burst_over_the_limit_from_two_processes_admits_exactly_the_limit(redis_url: str) -> None:
    """Each process ends the burst holding a ticket or having used it: its calls that Redis refuses
    take its own ticket (counted in the limit that refused them), so no request of the limit is left."""
    async def body(limiters: list[RedisLimiter]) -> tuple[int, int, dict[str, Any]]:
        slots = [Slot(A, rpm=60)]
        admitted = 0
        for i, limiter in enumerate(limiters):  # each holds a ticket when the burst begins
            assert await limiter.admit(f"warm{i}", slots) is None
            limiter.release(f"warm{i}", slots, 0)
            admitted += 1
        await settle(*limiters)
        assert all(limiter.tickets.held for limiter in limiters)
        out = await asyncio.gather(*(limiters[i % 2].admit(f"c{i}", slots) for i in range(150)))
        await settle(*limiters)
        held = sum(len(limiter.tickets.held) for limiter in limiters)
        return admitted + sum(r is None for r in out), held, state(redis_url, A)
    admitted, tickets_left, redis_state = run(redis_url, body, processes=2)
    assert admitted == 60 and tickets_left == 0
    assert redis_state["requests"] == 60


def test_an_unused_ticket_goes_back_after_a_second_and_its_request_with_it(redis_url: str) -> None:
    async def body(limiters: list[RedisLimiter]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        limiter = limiters[0]
        assert await limiter.admit("c1", FAR) is None
        limiter.release("c1", FAR, 0)
        await settle(limiter)
        before = state(redis_url, A)
        start = limiter.tickets.clock()
        limiter.tickets.clock = lambda: start + TICKET_IDLE  # the sweeper's next look finds it idle
        while limiter.tickets.held:
            await asyncio.sleep(0.05)
        await settle(limiter)
        return before, state(redis_url, A), limiter._sweeper is None
    before, after, sweeper_gone = run(redis_url, body)
    assert (before["requests"], before["n"]) == (2, 1)
    assert after == {"held": 0, "n": 0, "requests": 1, "index": []} and sweeper_gone


def test_a_ticket_is_not_used_once_its_minute_ends_or_for_a_larger_call_or_a_lowered_budget(redis_url: str) -> None:
    async def body(limiters: list[RedisLimiter]) -> list[int]:
        limiter = limiters[0]
        waits = count_waits(limiter)
        out = []

        async def call(name: str, slots: list[Slot]) -> None:
            before = waits[0]
            assert await limiter.admit(name, slots) is None
            limiter.release(name, slots, 0)
            await settle(limiter)
            out.append(waits[0] - before)  # 0: admitted by its ticket
        await call("first", FAR)
        await call("same", FAR)
        larger = [Slot(A, Decimal("0.003"), Decimal(1000), rpm=1000, parallel=1000), FAR[1]]
        await call("larger", larger)  # 0.003 > the ticket's 0.002: checked in Redis
        lowered = [Slot(A, Decimal("0.001"), Decimal("0.030"), rpm=1000, parallel=1000), FAR[1]]
        await call("lowered", lowered)  # the key's budget is near its ticket's amount now
        other_limits = [Slot(A, Decimal("0.001"), Decimal(1000), rpm=999, parallel=1000), FAR[1]]
        await call("other-limits", other_limits)
        start = limiter.tickets.clock()
        limiter.tickets.clock = lambda: start + 29.5  # the ticket's minute ends in 0.5 s: too late to use it
        await call("late", FAR)
        return out
    assert run(redis_url, body) == [1, 0, 1, 1, 1, 1]


def test_a_release_of_a_ticketed_call_waits_for_its_confirmation(redis_url: str) -> None:
    """Released before Redis has heard of it, a call's release would find nothing to give back and
    the confirmation would then enter it for an hour."""
    async def body(limiters: list[RedisLimiter]) -> dict[str, Any]:
        limiter = limiters[0]
        assert await limiter.admit("c1", FAR) is None
        await settle(limiter)
        assert await limiter.admit("c2", FAR) is None  # by ticket: its confirmation not run yet
        assert limiter._confirming
        limiter.release("c2", FAR, 0)
        limiter.release("c1", FAR, 0)
        await limiter.give_back_tickets()
        return state(redis_url, A)
    assert run(redis_url, body) == {"held": 0, "n": 0, "requests": 2, "index": []}


def test_a_budget_is_never_passed_with_tickets_out_and_what_they_held_comes_back(redis_url: str) -> None:
    """200 calls at once from two processes on a budget for 100 of them: never more admitted than it
    allows, whatever tickets were out. A ticket holds twice its call's reservation (so that calls a
    little larger fit it), so the burst may end up to that difference short of the budget per
    process; the calls after it take what is left, to the unit."""
    async def body(limiters: list[RedisLimiter]) -> tuple[int, int, int]:
        slots = [Slot(A, Decimal("0.001"), Decimal("0.1"), parallel=1000)]
        for i, limiter in enumerate(limiters):
            assert await limiter.admit(f"warm{i}", slots) is None
        await settle(*limiters)
        out = await asyncio.gather(*(limiters[i % 2].admit(f"c{i}", slots) for i in range(200)))
        await settle(*limiters)
        in_burst = 2 + sum(r is None for r in out)
        for limiter in limiters:
            await limiter.give_back_tickets()
        after = 0
        while await limiters[after % 2].admit(f"after{after}", slots) is None:
            after += 1
        return in_burst, after, state(redis_url, A)["held"]
    in_burst, after, held = run(redis_url, body, processes=2)
    assert 98 <= in_burst <= 100 and in_burst + after == 100 and held == 100 * 1_000_000


def test_redis_down_while_a_ticket_is_held_admits_by_it_then_follows_the_policy(redis_url: str) -> None:
    async def body(limiters: list[RedisLimiter]) -> tuple[Refusal | None, str | None]:
        limiter = limiters[0]
        assert await limiter.admit("c1", FAR) is None
        limiter.release("c1", FAR, 0)
        await settle(limiter)
        real = limiter.wire.run

        async def down(*args: Any) -> Any:
            raise ConnectionError("gone")
        limiter.wire.run = down  # type: ignore[method-assign,assignment]
        by_ticket = await limiter.admit("c2", FAR)  # the ticket admitted it; Redis is told in vain
        await settle(limiter)
        error = limiter.error
        try:
            await limiter.admit("c3", FAR)
        except Exception as exc:  # fail_closed: no ticket is used while Redis is down
            error = f"{type(exc).__name__}: {error}"
        limiter.wire.run = real  # type: ignore[method-assign]
        return by_ticket, error
    by_ticket, error = run(redis_url, body)
    assert by_ticket is None and error is not None and error.startswith("RedisUnavailable")


def test_a_call_that_comes_before_the_confirmation_bringing_its_ticket_waits_for_it_not_for_a_round_trip(
        redis_url: str) -> None:
    """At concurrency 1 the upstream can answer before Redis confirms the call: the next call then
    finds no ticket, though one is on its way. It waits for that answer (less than a round trip of
    its own) and takes the ticket; a second such call does not wait for the same one."""
    async def body(limiters: list[RedisLimiter]) -> tuple[int, int, bool]:
        limiter = limiters[0]
        assert await limiter.admit("c1", FAR) is None
        await confirmed(limiter)
        by_ticket: list[str] = []
        real = limiter._confirm

        def confirm(call_id: str, *args: Any) -> None:
            by_ticket.append(call_id)
            real(call_id, *args)
        limiter._confirm = confirm  # type: ignore[method-assign]
        assert await limiter.admit("c2", FAR) is None  # by ticket: its confirmation (asking the next) on its way
        limiter.release("c2", FAR, 0)
        later = [asyncio.ensure_future(limiter.admit(f"c{i}", FAR)) for i in (3, 4, 5)]
        assert await asyncio.gather(*later) == [None, None, None]
        return by_ticket
    # c3 took the ticket c2's confirmation brought; c4 and c5 did not wait for it: ADMITs of their own
    assert run(redis_url, body) == ["c2", "c3"]
