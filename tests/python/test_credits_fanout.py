"""Lago's webhooks relayed between processes through Redis pub/sub (proxy/credits/fanout.py), against
a real Redis: two Fanouts with their own connections stand for two proxies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from llmbill.proxy.credits.fanout import Fanout
from llmbill.proxy.credits.gate import CreditGate
from llmbill.proxy.credits.reader import WalletReader
from llmbill.proxy.credits.settings import CreditSettings
from llmbill.proxy.limits import Limiter
from llmbill.proxy.redis_limits import RedisLimiter, connect
from tests.python.fakes.lago import FakeLago
from tests.python.lago_wallet_support import top_up, wallet
from tests.python.redis_server import RedisServer

METRIC = "openai_tokens"


def limiter(redis_url: str) -> RedisLimiter:
    return connect(redis_url, 600, "fail_closed", Limiter())


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Waits for `check` (the relay is asynchronous: there is nothing else to await)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the timeout"
        await asyncio.sleep(0.01)


async def listening(*fanouts: Fanout) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(f.listen()) for f in fanouts]
    for f in fanouts:
        await asyncio.wait_for(f.listening.wait(), 5)
    return tasks


async def stop(tasks: list[asyncio.Task[None]], *limiters: RedisLimiter) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for lim in limiters:
        await lim.close()


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def test_a_message_reaches_the_other_process_not_its_sender(redis_url: str) -> None:
    async def body() -> None:
        la, lb = limiter(redis_url), limiter(redis_url)
        a, b = Fanout(la), Fanout(lb)
        got: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}

        async def on_a(message: dict[str, Any]) -> None:
            got["a"].append(message)

        async def on_b(message: dict[str, Any]) -> None:
            got["b"].append(message)

        a.handlers["wallets"], b.handlers["wallets"] = on_a, on_b
        tasks = await listening(a, b)
        try:
            assert await a.publish("wallets", payer="cust-1", wallet="w-1")
            await until(lambda: len(got["b"]) == 1)
            assert got["b"][0]["payer"] == "cust-1" and got["b"][0]["wallet"] == "w-1"
            assert await b.publish("unknown-kind", id="x")  # no handler: ignored, the listener goes on
            assert await b.publish("wallets", payer="cust-2")
            await until(lambda: len(got["a"]) == 1)
            assert got["a"][0]["payer"] == "cust-2" and len(got["b"]) == 1  # never its own message
        finally:
            await stop(tasks, la, lb)

    run(body)


def test_after_redis_comes_back_the_listener_resubscribes_and_rereads_what_it_may_have_missed(
        redis_server: RedisServer, redis_url: str) -> None:
    async def body() -> None:
        la, lb = limiter(redis_url), limiter(redis_url)
        a, b = Fanout(la), Fanout(lb)
        gaps: list[int] = []
        got: list[dict[str, Any]] = []

        async def gap() -> None:
            gaps.append(1)

        async def on_b(message: dict[str, Any]) -> None:
            got.append(message)

        b.on_gap, b.handlers["wallets"] = gap, on_b
        tasks = await listening(b)
        try:
            assert gaps == []  # the first subscription missed nothing
            redis_server.stop()
            assert not await a.publish("wallets", payer="lost")  # Redis down: the poll is the backstop
            await until(lambda: not b.listening.is_set())
            redis_server.restart()
            await asyncio.wait_for(b.listening.wait(), 10)
            await until(lambda: gaps == [1])  # everything it gates is re-read once
            assert await a.publish("wallets", payer="after")
            await until(lambda: [m["payer"] for m in got] == ["after"])
        finally:
            await stop(tasks, la, lb)

    run(body)


def test_a_relayed_change_rereads_only_a_payer_the_process_gates(redis_url: str) -> None:
    """The receiving side of a wallet relay: the payer named (or the owner of the wallet named) is
    re-read; a payer never read here makes no state."""
    with FakeLago(api_key="lago-key") as lago:
        wid = wallet(lago, "cust-r", granted="0.05")

        async def body() -> None:
            gate = CreditGate(CreditSettings(default="lago"), WalletReader(lago.url, lago.api_key, timeout=5),
                              METRIC, "end_user_id")
            await gate.ensure("cust-r")
            assert gate.account("cust-r").balance(METRIC, "USD") == Decimal("0.05")
            top_up(lago, wid, granted_credits="1.0")
            await gate.relayed({"kind": "wallets", "payer": "", "wallet": wid})  # only the wallet named
            assert gate.account("cust-r").balance(METRIC, "USD") == Decimal("1.05")
            reads = len(lago.requests)
            await gate.relayed({"kind": "wallets", "payer": "stranger", "wallet": "w-unknown"})
            assert "stranger" not in gate.accounts and len(lago.requests) == reads

        run(body)
