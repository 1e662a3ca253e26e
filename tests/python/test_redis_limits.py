"""The Lua scripts of proxy/redis_limits.py against a real Redis (tests/python/redis_server.py), with
a pinned clock: exact counts, all-or-nothing admission, reservations, expiry, the failure policies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from llmbill.proxy.limits import Limiter, Refusal, Slot
from llmbill.proxy.redis_limits import RELEASE_WAIT, RedisLimiter, RedisUnavailable, connect, reservation_ttl, units

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 30  # 30 s into a UTC day (and a minute)
T = TypeVar("T")
A, B = ("key", "a"), ("team", "b")


def run(redis_url: str, body: Callable[[RedisLimiter], Awaitable[T]], policy: str = "fail_closed") -> T:
    async def main() -> T:
        limiter = connect(redis_url, 600, policy, Limiter())
        limiter.now = T0
        try:
            return await body(limiter)
        finally:
            await limiter.close()
    return asyncio.run(main())


async def settle(limiter: RedisLimiter) -> None:
    await limiter.flush_releases()


def test_rpm_admits_exactly_the_limit_under_concurrency(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> tuple[int, int]:
        slots = [Slot(A, rpm=10)]
        results = await asyncio.gather(*(limiter.admit(f"c{i}", slots) for i in range(40)))
        limiter.now = T0 + 60  # the next minute
        later = [await limiter.admit(f"d{i}", slots) for i in range(12)]
        return sum(r is None for r in results), sum(r is None for r in later)
    assert run(redis_url, body) == (10, 10)


def test_a_refused_call_takes_nothing_from_any_slot(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        both = [Slot(A, Decimal(1), Decimal(100), rpm=3, parallel=5), Slot(B, Decimal(1), Decimal(100), rpm=1)]
        out = [await limiter.admit("c1", both), await limiter.admit("c2", both), await limiter.admit("c3", both)]
        # A took one request and one unit: two more fit, then its rpm refuses
        alone = [Slot(A, Decimal(1), Decimal(100), rpm=3, parallel=5)]
        out += [await limiter.admit("c4", alone), await limiter.admit("c5", alone), await limiter.admit("c6", alone)]
        return out
    first, second, third, fourth, fifth, sixth = run(redis_url, body)
    assert first is None and fourth is None and fifth is None
    assert second == third == Refusal(1, "rpm", Decimal(1), 30.0)
    assert sixth is not None and (sixth.index, sixth.limit, sixth.reserved) == (0, "rpm", Decimal(3))


def test_reservations_refuse_at_the_headroom_and_come_back_on_release(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        slots = [Slot(A, Decimal("0.003"), Decimal("0.010"))]
        out = [await limiter.admit(f"c{i}", slots) for i in range(5)]
        limiter.release("c0", slots, 0)
        await settle(limiter)
        out.append(await limiter.admit("c5", slots))
        return out
    out = run(redis_url, body)
    assert out[:4] == [None] * 4  # 0, .003, .006, .009 held: each below .010
    assert out[4] == Refusal(0, "budget", Decimal("0.012"), 0.0)
    assert out[5] is None


def test_headroom_at_or_below_zero_refuses_and_amounts_round_up(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        return [await limiter.admit("c1", [Slot(A, Decimal(1), Decimal(0))]),
                await limiter.admit("c2", [Slot(B, Decimal("1e-12"), Decimal("1e-9"))]),
                await limiter.admit("c3", [Slot(B, Decimal("1e-12"), Decimal("1e-9"))])]
    refused, first, second = run(redis_url, body)
    assert refused is not None and refused.limit == "budget"
    assert first is None
    assert second == Refusal(0, "budget", Decimal("1e-9"), 0.0)  # a reservation is never understated
    assert units(Decimal("0.0000000011")) == 2 and units(Decimal(10**9)) == 2**53 - 1


def test_max_parallel_is_exact_and_freed_by_release(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[bool]:
        slots = [Slot(A, parallel=2)]
        out = [await limiter.admit(f"c{i}", slots) is None for i in range(3)]
        limiter.release("c1", slots, 0)
        await settle(limiter)
        out.append(await limiter.admit("c3", slots) is None)
        out.append(await limiter.admit("c4", slots) is None)
        return out
    assert run(redis_url, body) == [True, True, False, True, False]


def test_a_dead_process_reservation_expires_after_the_ttl(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        slots = [Slot(A, Decimal(5), Decimal(5), parallel=1)]
        out = [await limiter.admit("lost", slots)]  # never released: its process died
        limiter.now = T0 + limiter.ttl - 1
        out.append(await limiter.admit("c1", slots))
        limiter.now = T0 + limiter.ttl + 1
        out.append(await limiter.admit("c2", slots))
        return out
    lost, during, after = run(redis_url, body)
    assert lost is None and during is not None and during.limit == "budget" and after is None
    assert reservation_ttl(600) == 3600 and reservation_ttl(3000) == 6000


def test_a_settled_cost_stays_held_until_the_database_shows_it(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        slots = [Slot(A, Decimal(3), Decimal("1.5"), parallel=1)]
        assert await limiter.admit("c1", slots) is None
        limiter.release("c1", slots, 0, Decimal(1))  # cost 1 of the 3 reserved
        await settle(limiter)
        out = [await limiter.admit("c2", slots)]  # parallel freed; 1 held of 1.5: admitted
        limiter.release("c2", slots, 0)  # failed: its reservation goes entirely
        await settle(limiter)
        out.append(await limiter.admit("c3", [Slot(A, Decimal(1), Decimal(1))]))  # 1 still held: refused
        limiter.now = T0 + limiter.hold + 0.5
        out.append(await limiter.admit("c4", [Slot(A, Decimal(1), Decimal(1))]))  # the database shows it now
        return out
    second, while_held, after = run(redis_url, body)
    assert second is None and after is None
    assert while_held == Refusal(0, "budget", Decimal(1), 0.0)


def test_tokens_count_for_tpm_in_the_minute_and_tpd_in_the_day(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        slots = [Slot(A, tpm=100, tpd=150)]
        assert await limiter.admit("c1", slots) is None
        limiter.release("c1", slots, 100)
        await settle(limiter)
        out = [await limiter.admit("c2", slots)]
        limiter.now = T0 + 60
        out.append(await limiter.admit("c3", slots))
        limiter.release("c3", slots, 50)
        await settle(limiter)
        out.append(await limiter.admit("c4", slots))
        return out
    tpm, next_minute, tpd = run(redis_url, body)
    assert tpm == Refusal(0, "tpm", Decimal(0), 30.0)
    assert next_minute is None
    assert tpd is not None and tpd.limit == "tpd" and tpd.wait == 86400 - 90


def test_fail_closed_refuses_with_a_503_naming_redis(redis_url: str) -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    async def body(limiter: RedisLimiter) -> None:
        with pytest.raises(RedisUnavailable) as refused:
            await limiter.admit("c1", [Slot(A, rpm=1)])
        assert refused.value.status == 503 and "Redis" in refused.value.message
        assert refused.value.headers == {"Retry-After": "5"}
        assert limiter.error is not None and not await limiter.ping()
    run(dead, body)


def test_fail_open_limits_in_this_process_and_releases_there(redis_url: str) -> None:
    dead = "redis://127.0.0.1:1/0"

    async def body(limiter: RedisLimiter) -> list[bool]:
        slots = [Slot(A, parallel=1)]
        out = [await limiter.admit("c1", slots) is None, await limiter.admit("c2", slots) is None]
        limiter.release("c1", slots, 0)  # the fallback admitted it: released there, not in Redis
        out.append(await limiter.admit("c3", slots) is None)
        return out
    assert run(dead, body, policy="fail_open") == [True, False, True]


def test_redis_settings_from_config_and_litellm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbill.proxy.config import ConfigError, load_config_dict

    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    base: dict[str, Any] = {"model_list": []}
    assert load_config_dict(base).redis_url is None
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss")
    assert load_config_dict(base).redis_url == "redis://:p%40ss@cache.internal:6379"
    monkeypatch.setenv("REDIS_URL", "redis://other:6380/1")
    assert load_config_dict(base).redis_url == "redis://other:6380/1"
    cfg = load_config_dict({"model_list": [], "general_settings": {"redis_url": "redis://r:1/0",
                                                                    "redis_failure_policy": "fail_open"}})
    assert (cfg.redis_url, cfg.redis_failure_policy) == ("redis://r:1/0", "fail_open")
    with pytest.raises(ConfigError, match=r"^general_settings.redis_failure_policy: 'sometimes' is not one of"):
        load_config_dict({"model_list": [], "general_settings": {"redis_failure_policy": "sometimes"}})


def test_more_calls_in_flight_than_connections_wait_for_one_and_release_everything(redis_url: str) -> None:
    """redis-py's default pool refused the 101st concurrent script ("Too many connections"): a 503 for
    the call, and a dropped release left its reservation and parallel slot taken for an hour."""
    async def body(limiter: RedisLimiter) -> tuple[list[Refusal | None], Refusal | None]:
        slots = [Slot(A, Decimal("0.001"), Decimal("1000"), parallel=10**6)]
        calls = 300  # above redis-py's default pool (100) and this pool (redis_limits.MAX_CONNECTIONS)
        admitted = await asyncio.gather(*(limiter.admit(f"c{i}", slots) for i in range(calls)))
        for i in range(calls):
            limiter.release(f"c{i}", slots, 0)
        await limiter.give_back_tickets()  # (this process's ticket holds one call ahead, far from the limits)
        # every reservation came back: a headroom of one nano-unit admits only when nothing is held
        nothing_held = [Slot(A, Decimal("0.001"), Decimal("1e-9"))]
        return admitted, await limiter.admit("after", nothing_held)
    admitted, after = run(redis_url, body)
    assert admitted == [None] * len(admitted)
    assert after is None


def purges(redis_url: str) -> int:
    """How many times Redis has been asked for an index's expired entries (ZRANGEBYSCORE)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
        return int(stats.get("cmdstat_zrangebyscore", {}).get("calls", 0))
    finally:
        client.close()


def test_an_expired_call_is_purged_before_a_refusal_and_not_before_it_may_have_expired(redis_url: str) -> None:
    """Dead calls' entries are looked for only once one may have expired (not at every call), and
    then always before the call is refused."""
    async def body(limiter: RedisLimiter) -> tuple[list[Refusal | None], int, int]:
        slots = [Slot(A, Decimal(1), Decimal(10), parallel=1)]
        before = purges(redis_url)
        out = [await limiter.admit("dead", slots)]  # its process dies: never released
        for i in range(3):
            limiter.now = T0 + i
            out.append(await limiter.admit(f"c{i}", slots))  # the dead call still holds the one slot
        limiter.now = T0 + limiter.ttl - 1
        out.append(await limiter.admit("c3", slots))
        looked = purges(redis_url) - before
        limiter.now = T0 + limiter.ttl + 1
        out.append(await limiter.admit("c4", slots))
        return out, looked, purges(redis_url) - before
    out, looked_before_expiry, looked_after = run(redis_url, body)
    assert out[0] is None and out[-1] is None
    assert all(r is not None and r.limit == "parallel" and r.reserved == Decimal(1) for r in out[1:-1])
    assert looked_before_expiry == 0 and looked_after == 1


def test_a_refused_call_keeps_what_its_purge_dropped(redis_url: str) -> None:
    """A purge on the way to a refusal is written back: the entries it dropped are gone from the
    index, so their amounts must leave the entity's total too, or they would be held forever."""
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        budget = Slot(A, Decimal(1), Decimal(1))
        out = [await limiter.admit("dead", [budget])]  # never released
        limiter.now = T0 + limiter.ttl + 1
        out.append(await limiter.admit("c0", [Slot(B, rpm=1)]))
        out.append(await limiter.admit("c1", [budget, Slot(B, rpm=1)]))  # A purged, then B refuses
        out.append(await limiter.admit("c2", [budget]))
        return out
    dead, first, refused, after = run(redis_url, body)
    assert dead is None and first is None and after is None
    assert refused is not None and (refused.index, refused.limit) == (1, "rpm")


def test_settled_costs_are_held_to_the_end_of_their_sixteenth_of_the_hold(redis_url: str) -> None:
    """Costs whose hold ends in one sixteenth of the hold share a bucket that ends with it: never
    sooner than the hold, at most a sixteenth later (0.25 s of 4 s)."""
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        for call, at, cost in (("c1", T0, 1), ("c2", T0 + 0.6, 2)):
            limiter.now = at
            slots = [Slot(A, Decimal(3), Decimal(100))]
            assert await limiter.admit(call, slots) is None
            limiter.release(call, slots, 0, Decimal(cost))
            await settle(limiter)
        out = []
        for at in (3.99, 4.0, 4.7, 4.75):  # c1's cost held until T0 + 4, c2's until T0 + 4.75 (not 4.6)
            limiter.now = T0 + at
            out.append(await limiter.admit(f"probe{at}", [Slot(A, Decimal(0), Decimal(2))]))
        return out
    assert run(redis_url, body) == [Refusal(0, "budget", Decimal(3), 0.0), Refusal(0, "budget", Decimal(2), 0.0),
                                    Refusal(0, "budget", Decimal(2), 0.0), None]


def test_a_call_admitted_twice_under_one_id_holds_once(redis_url: str) -> None:
    """A reply lost after the script ran makes the wire send it again (redis_limits_wire.py): the
    second run finds the call in the index and takes no second reservation or parallel slot."""
    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        slots = [Slot(A, Decimal(1), Decimal(3), parallel=2)]
        out = [await limiter.admit("c1", slots), await limiter.admit("c1", slots), await limiter.admit("c2", slots)]
        out.append(await limiter.admit("c3", slots))
        return out
    first, again, second, third = run(redis_url, body)
    assert first is None and again is None and second is None
    assert third is not None and (third.limit, third.reserved) == ("parallel", Decimal(2))


def test_slots_without_a_limit_are_not_sent_and_refusals_name_the_callers_slot(redis_url: str) -> None:
    """Redis has nothing to check or hold for a slot with no limit: it is left out of the script's
    arguments (a call with only such slots does not reach Redis at all, even one that is down), and a
    refusal still names the slot by its place in the call."""
    free = Slot(("user", "u"))

    async def body(limiter: RedisLimiter) -> list[Refusal | None]:
        out = [await limiter.admit("c1", [free, Slot(A, rpm=1), free, Slot(B, rpm=1)])]
        out.append(await limiter.admit("c2", [free, free, Slot(B, rpm=5), Slot(A, rpm=1)]))
        limiter.release("c2", [free], 10)
        return out
    admitted, refused = run(redis_url, body)
    assert admitted is None and refused is not None and (refused.index, refused.limit) == (3, "rpm")

    async def down(limiter: RedisLimiter) -> tuple[Refusal | None, int]:
        got = await limiter.admit("c3", [free, free])
        limiter.release("c3", [free, free], 10)
        return got, len(limiter._pending)
    assert run("redis://127.0.0.1:1/0", down) == (None, 0)


def test_a_release_rides_with_the_next_admission_which_counts_it_first(redis_url: str) -> None:
    """One round trip for two: the next admission carries the releases waiting for it, and they are
    applied before its checks (so what they free is free for it)."""
    async def body(limiter: RedisLimiter) -> tuple[Refusal | None, int]:
        slots = [Slot(A, Decimal(1), Decimal(2), parallel=1)]
        assert await limiter.admit("c1", slots) is None
        limiter.release("c1", slots, 0)
        sent = []
        real = limiter.wire.run

        async def recording(script: Any, count: int, args: bytes) -> Any:
            sent.append(script)
            return await real(script, count, args)
        limiter.wire.run = recording  # type: ignore[method-assign]
        admitted = await limiter.admit("c2", slots)  # the parallel slot and the budget c1 held are back
        return admitted, len(sent)
    assert run(redis_url, body) == (None, 1)


def test_a_release_no_admission_comes_for_goes_on_its_own(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> tuple[float, Refusal | None]:
        slots = [Slot(A, Decimal(1), Decimal(1), parallel=1)]
        assert await limiter.admit("c1", slots) is None
        limiter.release("c1", slots, 0)
        loop = asyncio.get_running_loop()
        timer = limiter._release_timer
        assert timer is not None
        waits = timer.when() - loop.time()
        while limiter._release_timer is not None:  # the timer's turn
            await asyncio.sleep(0)
        await asyncio.gather(*limiter._pending)
        assert not limiter._releases  # it went alone: c2 carries nothing, and finds the slot free
        return waits, await limiter.admit("c2", slots)
    waits, second = run(redis_url, body)
    assert 0 < waits <= RELEASE_WAIT and second is None


def test_releases_an_admission_carried_are_sent_again_when_it_fails(redis_url: str) -> None:
    async def body(limiter: RedisLimiter) -> Refusal | None:
        slots = [Slot(A, Decimal(1), Decimal(1), parallel=1)]
        assert await limiter.admit("c1", slots) is None
        limiter.release("c1", slots, 0)
        real = limiter.wire.run
        failed: list[Any] = []

        async def fail_once(script: Any, count: int, args: bytes) -> Any:
            if not failed:
                failed.append(script)
                raise ConnectionError("lost on the way")
            return await real(script, count, args)
        limiter.wire.run = fail_once  # type: ignore[method-assign]
        with pytest.raises(RedisUnavailable):
            await limiter.admit("c2", [Slot(B, rpm=5)])  # carried c1's release, and failed
        await limiter.flush_releases()
        return await limiter.admit("c3", slots)
    assert run(redis_url, body) is None
