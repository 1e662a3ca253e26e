"""The credits ledger shared through Redis (proxy/credits/redis_ledger.py, lua/credit_*.lua) against
a real Redis and the fake Lago: gates with their own Redis connections stand for separate proxies."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmbill.proxy.credits.gate import CreditGate, CreditHold
from llmbill.proxy.credits.reader import WalletReader
from llmbill.proxy.credits.redis_ledger import RedisLedger
from llmbill.proxy.credits.settings import CreditSettings
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.limits import Limiter
from llmbill.proxy.redis_limits import RedisLimiter, connect
from tests.python.fakes.lago import FakeLago
from tests.python.lago_wallet_support import wallet
from tests.python.redis_server import RedisServer
from tests.python.test_credits_seed import METRIC, money_lago, send, subscribe  # noqa: F401 (a fixture)

T0 = 1_800_000_000.0


def proxy(lago: FakeLago, redis_url: str, policy: str = "fail_closed") -> CreditGate:
    """One proxy's gate: its own Redis connection and ledger."""
    ledger = RedisLedger(connect(redis_url, 600, policy, Limiter()), METRIC, "USD")
    return CreditGate(CreditSettings(default="lago"), WalletReader(lago.url, lago.api_key, timeout=5), METRIC,
                      "end_user_id", ledger)


class FlakyRedis(aioredis.Redis):
    """A client whose Redis can be made unreachable (`down`: nothing runs), or whose next replies are
    lost (`lose`: the command runs, then the client times out), as a Redis stopping or a slow link does."""

    down = False
    lose = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.down:
            raise RedisConnectionError("Connection refused")
        found = await super().execute_command(*args, **options)
        if self.lose and args[0] == "EVALSHA":
            self.lose -= 1
            raise RedisTimeoutError("Timeout reading from socket")
        return found


def flaky_proxy(lago: FakeLago, redis_url: str, policy: str = "fail_closed") -> tuple[CreditGate, FlakyRedis]:
    client = FlakyRedis.from_url(redis_url, socket_timeout=2.0)
    ledger = RedisLedger(RedisLimiter(client, 3600, policy, Limiter()), METRIC, "USD")
    gate = CreditGate(CreditSettings(default="lago"), WalletReader(lago.url, lago.api_key, timeout=5), METRIC,
                      "end_user_id", ledger)
    return gate, client


def clocks(gate: CreditGate, at: float) -> None:
    """Pins the wall clock of the gate's settles and seed reads."""
    ledger(gate).wall = gate.seeder.wall = lambda: at


def ledger(gate: CreditGate) -> RedisLedger:
    assert isinstance(gate.ledger, RedisLedger)
    return gate.ledger


async def written(*gates: CreditGate) -> None:
    """Waits for the settles still being written behind the callers."""
    for gate in gates:
        await asyncio.gather(*ledger(gate)._tasks)


async def close(*gates: CreditGate) -> None:
    for gate in gates:
        await gate.ledger.close()
        await ledger(gate).limiter.close()


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


async def figures(gate: CreditGate, payer: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    info = await gate.info(payer)
    assert info["shared"] is True
    return info["lago_balance"], info["settled_not_invoiced"], info["holds"], info["available"]


def test_two_proxies_on_one_redis_never_hold_the_same_dollar_twice(lago: FakeLago, redis_url: str) -> None:
    wallet(lago, "p1", granted="1.00")

    async def body() -> None:
        a, b = proxy(lago, redis_url), proxy(lago, redis_url)
        await asyncio.gather(a.ensure("p1"), b.ensure("p1"))

        async def one(i: int) -> CreditHold | None:
            try:
                return await (a if i % 2 else b).hold("p1", Decimal("0.13"), 402)
            except ProxyError as refused:
                assert refused.type == "insufficient_credits", refused.message
                return None
        taken = [h for h in await asyncio.gather(*(one(i) for i in range(50))) if h is not None]
        # 7 × 0.13 = 0.91 fits in 1.00, 8 do not; each proxy alone would have taken 7
        assert len(taken) == 7
        for h in taken:
            h.settle(Decimal("0.03"))
        await written(a, b)
        for gate in (a, b):
            assert await figures(gate, "p1") == (Decimal("1.00"), Decimal("0.21"), 0, Decimal("0.79"))
        await close(a, b)
    run(body)


def test_an_invoice_moves_shared_usage_out_once_and_a_stale_read_never_shows_more(
        lago: FakeLago, redis_url: str) -> None:
    from tests.python.lago_wallet_support import lago_api
    wallet(lago, "p2", granted="1.00")

    async def body() -> None:
        a, b = proxy(lago, redis_url), proxy(lago, redis_url)
        await asyncio.gather(a.ensure("p2"), b.ensure("p2"))
        (await a.hold("p2", Decimal("0.5"), 402)).settle(Decimal("0.25"))
        await written(a)
        assert await figures(b, "p2") == (Decimal("1.00"), Decimal("0.25"), 0, Decimal("0.75"))
        status, _ = lago_api(lago, "POST", "/api/v1/events", {"event": {
            "transaction_id": "t-p2", "external_subscription_id": "p2", "code": METRIC, "timestamp": 1786000000,
            "properties": {"response_cost": "0.25"}}})
        assert status == 200 and lago.wallets.invoice("p2", metric=METRIC) == 25
        await a.refresh("p2")
        assert await figures(a, "p2") == (Decimal("0.75"), 0, 0, Decimal("0.75"))
        # b still has the balance from before the invoice: it counts as more usage, never as more credits
        assert await figures(b, "p2") == (Decimal("1.00"), Decimal("0.25"), 0, Decimal("0.75"))
        await b.refresh("p2")
        assert await figures(b, "p2") == (Decimal("0.75"), 0, 0, Decimal("0.75"))
        await close(a, b)
    run(body)


def test_the_shared_tally_outlives_a_proxy(lago: FakeLago, redis_url: str) -> None:
    wallet(lago, "p3", granted="1.00")

    async def first() -> None:
        a = proxy(lago, redis_url)
        await a.ensure("p3")
        (await a.hold("p3", Decimal("0.5"), 402)).settle(Decimal("0.40"))
        await close(a)  # the settle is written before the proxy ends

    async def restarted() -> None:
        c = proxy(lago, redis_url)
        await c.ensure("p3")  # Lago has none of it (no subscription): Redis remembers
        assert await figures(c, "p3") == (Decimal("1.00"), Decimal("0.40"), 0, Decimal("0.60"))
        await close(c)
    run(first)
    run(restarted)


def test_a_tally_redis_lost_is_reseeded_from_lago(money_lago: FakeLago, redis_server: RedisServer,
                                                  redis_url: str) -> None:
    wallet(money_lago, "p4", granted="1.00")
    subscribe(money_lago, "p4")

    async def body() -> None:
        a = proxy(money_lago, redis_url)
        await a.ensure("p4")
        (await a.hold("p4", Decimal("0.5"), 402)).settle(Decimal("0.30"))
        await written(a)
        send(money_lago, "p4", billed_amount="0.30")  # the call's event, as the spool delivers it
        redis_server.flush()  # a Redis restarted without persistence
        with pytest.raises(ProxyError) as refused:
            await a.hold("p4", Decimal("0.75"), 402)
        assert refused.value.type == "insufficient_credits" and "0.695 USD" in refused.value.message
        assert await figures(a, "p4") == (Decimal("1.00"), Decimal("0.305"), 0, Decimal("0.695"))
        await close(a)
    run(body)


def test_the_holds_of_a_process_that_died_expire(lago: FakeLago, redis_url: str) -> None:
    wallet(lago, "p5", granted="1.00")

    async def body() -> None:
        a, b = proxy(lago, redis_url), proxy(lago, redis_url)
        ledger(a).now = ledger(b).now = T0
        await asyncio.gather(a.ensure("p5"), b.ensure("p5"))
        await a.hold("p5", Decimal("0.9"), 402)  # never settled: its process died
        with pytest.raises(ProxyError):
            await b.hold("p5", Decimal("0.2"), 402)
        ledger(b).now = T0 + ledger(b).limiter.ttl + 1
        (await b.hold("p5", Decimal("0.2"), 402)).release()
        await close(a, b)
    run(body)


def test_redis_down_with_fail_closed_refuses_credit_holds(lago: FakeLago, redis_server: RedisServer,
                                                           redis_url: str) -> None:
    wallet(lago, "p6", granted="1.00")

    async def body() -> None:
        a = proxy(lago, redis_url)
        await a.ensure("p6")
        counted = REGISTRY.get_sample_value("llmbill_credit_refusals_total", {"reason": "redis"}) or 0.0
        redis_server.stop()
        try:
            with pytest.raises(ProxyError) as refused:
                await a.hold("p6", Decimal("0.1"), 402)
            # /metrics counts it as a credit refusal for Redis (the limits, when shared, refuse first).
            assert REGISTRY.get_sample_value("llmbill_credit_refusals_total", {"reason": "redis"}) == counted + 1
            shown = await a.info("p6")  # /customer/info still answers: this proxy's view, and why
        finally:
            redis_server.restart()
        assert shown["shared"] is False and shown["available"] == Decimal("1.00") and "Redis" in shown["error"]
        assert refused.value.status == 503 and refused.value.type == "redis_unavailable"
        assert "prepaid credits" in refused.value.message and ledger(a).limiter.error is not None
        (await a.hold("p6", Decimal("0.1"), 402)).release()  # Redis back: shared again
        assert ledger(a).limiter.error is None
        await close(a)
    run(body)


def _save(server: RedisServer) -> None:
    """SAVE: the server loads this snapshot when it restarts (a Redis with persistence)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"SAVE\r\n")
        assert s.recv(64).startswith(b"+OK")


def test_fail_open_gates_on_its_own_view_and_writes_its_usage_back(lago: FakeLago, redis_server: RedisServer,
                                                                    redis_url: str) -> None:
    wallet(lago, "p7", granted="1.00")

    async def body() -> None:
        a, b = proxy(lago, redis_url, "fail_open"), proxy(lago, redis_url, "fail_open")
        await asyncio.gather(a.ensure("p7"), b.ensure("p7"))
        (await a.hold("p7", Decimal("0.5"), 402)).settle(Decimal("0.30"))
        await written(a)
        in_flight = await a.hold("p7", Decimal("0.2"), 402)  # a shared hold, its call still running
        _save(redis_server)
        redis_server.stop()
        try:
            # This proxy's view: 1.00 − 0.30 settled − 0.20 held = 0.50
            assert (await a.info("p7"))["shared"] is False
            local = await a.hold("p7", Decimal("0.1"), 402)
            local.settle(Decimal("0.05"))
            in_flight.settle(Decimal("0.15"))
            await written(a)
            with pytest.raises(ProxyError) as refused:
                await a.hold("p7", Decimal("0.6"), 402)
            assert refused.value.type == "insufficient_credits" and "0.5 USD" in refused.value.message
        finally:
            redis_server.restart()
            Path(redis_server.root, "dump.rdb").unlink(missing_ok=True)
        await a.ledger.sync()  # what the gate's poll does
        assert await figures(b, "p7") == (Decimal("1.00"), Decimal("0.50"), 0, Decimal("0.50"))
        await close(a, b)
    run(body)


def test_a_hold_whose_call_went_away_mid_script_is_ended(lago: FakeLago, redis_url: str) -> None:
    import redis
    wallet(lago, "p8", granted="1.00")

    async def body() -> None:
        a = proxy(lago, redis_url)
        await a.ensure("p8")
        await figures(a, "p8")  # the tally is made: the next script takes the hold
        pending = asyncio.ensure_future(a.hold("p8", Decimal("0.6"), 402))
        for _ in range(5):  # until the script is on its way to Redis
            await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        for _ in range(200):  # the script finishes behind the cancelled call, then its hold is ended
            await asyncio.sleep(0.005)
            await written(a)
            if (await figures(a, "p8"))[2] == 0:
                break
        assert await figures(a, "p8") == (Decimal("1.00"), 0, 0, Decimal("1.00"))
        await close(a)
    run(body)
    # The hold was taken (its hash exists), then ended: not left to its hour-long expiry.
    assert redis.Redis.from_url(redis_url).hget("llmbill:ch:p8", "=") == b"0"


def test_an_id_without_wallets_is_refused_without_a_tally_in_redis(lago: FakeLago, redis_url: str) -> None:
    """Any string can be a customer id: refusing it must not leave a key behind in Redis for each."""
    import redis

    async def body() -> None:
        a = proxy(lago, redis_url)
        await a.ensure("stranger")
        with pytest.raises(ProxyError) as refused:
            await a.hold("stranger", Decimal("0.01"), 402)
        assert refused.value.type == "insufficient_credits"
        await close(a)
    run(body)
    assert redis.Redis.from_url(redis_url).keys("llmbill:c*") == []


# -- every settled call counted once, whatever Redis does (tally.py) ------------------------------------


def test_a_settle_whose_reply_was_lost_is_counted_once(lago: FakeLago, redis_url: str) -> None:
    """The script ran, then the client timed out: the settle is written again, and counts nothing twice."""
    wallet(lago, "q1", granted="1.00")

    async def body() -> None:
        a, flaky = flaky_proxy(lago, redis_url)
        await a.ensure("q1")
        held = await a.hold("q1", Decimal("0.5"), 402)
        flaky.lose = 1
        held.settle(Decimal("0.30"))
        await written(a)
        assert flaky.lose == 0 and ledger(a).limiter.error is not None  # it ran; its reply was lost
        await a.ledger.sync()  # the gate's poll writes what it could not confirm
        assert await figures(a, "q1") == (Decimal("1.00"), Decimal("0.30"), 0, Decimal("0.70"))
        await close(a)
    run(body)


def test_a_hold_whose_reply_was_lost_is_ended(lago: FakeLago, redis_url: str) -> None:
    wallet(lago, "q2", granted="1.00")

    async def body() -> None:
        a, flaky = flaky_proxy(lago, redis_url)
        await a.ensure("q2")
        await figures(a, "q2")
        flaky.lose = 1
        with pytest.raises(ProxyError) as refused:  # fail_closed: the call is refused...
            await a.hold("q2", Decimal("0.6"), 402)
        assert refused.value.type == "redis_unavailable"
        # ...and the hold Redis took for it is ended with the next script, not left to its hour-long expiry
        assert await figures(a, "q2") == (Decimal("1.00"), 0, 0, Decimal("1.00"))
        await close(a)
    run(body)


def test_usage_kept_through_an_outage_is_not_counted_again_after_another_proxy_reseeds(
        money_lago: FakeLago, redis_server: RedisServer, redis_url: str) -> None:
    """b settles while Redis is down; its event reaches Lago; Redis comes back empty and a re-seeds
    from Lago, which has the call: b's write-back must not add it a second time."""
    wallet(money_lago, "q3", granted="1.00")
    subscribe(money_lago, "q3")

    async def body() -> None:
        a, b = proxy(money_lago, redis_url), flaky_proxy(money_lago, redis_url)[0]
        flaky = ledger(b).limiter.client
        assert isinstance(flaky, FlakyRedis)
        await asyncio.gather(a.ensure("q3"), b.ensure("q3"))
        await figures(a, "q3")
        held = await b.hold("q3", Decimal("0.5"), 402)
        clocks(b, T0)
        flaky.down = True
        held.settle(Decimal("0.30"))
        await written(b)  # not written: kept
        send(money_lago, "q3", billed_amount="0.30")  # the call's event, as b's spool delivers it
        redis_server.flush()  # Redis restarted without persistence
        flaky.down = False
        clocks(a, T0 + 5)
        assert await figures(a, "q3") == (Decimal("1.00"), Decimal("0.305"), 0, Decimal("0.695"))  # from Lago
        await b.ledger.sync()
        assert await figures(b, "q3") == (Decimal("1.00"), Decimal("0.305"), 0, Decimal("0.695"))
        await close(a, b)
    run(body)


def test_a_call_settled_after_a_reseed_joins_the_new_tally(money_lago: FakeLago, redis_server: RedisServer,
                                                           redis_url: str) -> None:
    """A call held before Redis lost the tally and settled after the re-seed read Lago: Lago did not
    have it, so the new tally must."""
    wallet(money_lago, "q4", granted="1.00")
    subscribe(money_lago, "q4")

    async def body() -> None:
        a, b = proxy(money_lago, redis_url), proxy(money_lago, redis_url)
        await asyncio.gather(a.ensure("q4"), b.ensure("q4"))
        held = await b.hold("q4", Decimal("0.5"), 402)  # a long stream, still running
        redis_server.flush()
        clocks(a, T0)
        assert await figures(a, "q4") == (Decimal("1.00"), 0, 0, Decimal("1.00"))  # re-seeded: no usage yet
        clocks(b, T0 + 5)
        held.settle(Decimal("0.30"))
        await written(b)
        assert await figures(a, "q4") == (Decimal("1.00"), Decimal("0.30"), 0, Decimal("0.70"))
        await close(a, b)
    run(body)


def test_a_seed_read_before_redis_lost_the_tally_never_remakes_it(money_lago: FakeLago, redis_server: RedisServer,
                                                                  redis_url: str) -> None:
    """a read the payer (and Lago's usage, none) before b's calls; Redis then lost the tally: a must
    make the new one from a fresh read of Lago, which has b's calls, not from its first read."""
    wallet(money_lago, "q5", granted="1.00")
    subscribe(money_lago, "q5")

    async def body() -> None:
        a, b = proxy(money_lago, redis_url), proxy(money_lago, redis_url)
        await asyncio.gather(a.ensure("q5"), b.ensure("q5"))
        (await b.hold("q5", Decimal("0.5"), 402)).settle(Decimal("0.30"))
        await written(b)
        send(money_lago, "q5", billed_amount="0.30")
        redis_server.flush()
        assert await figures(a, "q5") == (Decimal("1.00"), Decimal("0.305"), 0, Decimal("0.695"))
        await close(a, b)
    run(body)


def test_a_process_idle_past_the_ttl_leaves_the_tally_and_counts_on_from_what_was_confirmed(
        lago: FakeLago, redis_url: str) -> None:
    """The tally keeps each process's total only while it writes (dead processes must not pile up);
    one that comes back adds what the tally never confirmed, not its whole total again."""
    import redis
    wallet(lago, "q6", granted="1.00")

    async def body() -> None:
        a, b = proxy(lago, redis_url), proxy(lago, redis_url)
        ledger(a).now = T0
        await a.ensure("q6")
        (await a.hold("q6", Decimal("0.5"), 402)).settle(Decimal("0.30"))
        await written(a)
        field = "o:" + ledger(a).tally("q6").origin
        assert redis.Redis.from_url(redis_url).hget("llmbill:cl:q6", field) == b"300000000"
        ledger(a).now = ledger(b).now = T0 + ledger(a).limiter.ttl + 1
        await b.ensure("q6")
        await figures(b, "q6")
        assert redis.Redis.from_url(redis_url).hget("llmbill:cl:q6", field) is None
        (await a.hold("q6", Decimal("0.5"), 402)).settle(Decimal("0.10"))
        await written(a)
        assert await figures(b, "q6") == (Decimal("1.00"), Decimal("0.40"), 0, Decimal("0.60"))
        await close(a, b)
    run(body)
