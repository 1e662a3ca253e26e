"""Limits shared through Redis (proxy/redis_limits.py), end to end: exact across `--workers 2` and
across two proxies on one database, and what a proxy does while Redis is down (both policies)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from llmbill.proxy.redis_limits import SWEEP
from llmbill.proxy.redis_tickets import IDLE
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.pg import create_database
from tests.python.proxy_harness import Proxy
from tests.python.redis_server import RedisServer
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env

BODY = {"model": "custom-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


def with_redis(upstream: FakeOpenAI, database_url: str | None, redis_url: str, **general: Any) -> dict[str, Any]:
    cfg = config(upstream, database_url)
    cfg["general_settings"].update(redis_url=redis_url, **general)
    cfg["litellm_settings"]["callbacks"] = []  # billing is not what these tests look at
    return cfg


def key(proxy: Proxy, **limits: Any) -> str:
    status, body, _ = proxy.request("POST", "/key/generate", limits, MASTER)
    assert status == 200, body
    return str(body["key"])


def fire(proxies: list[Proxy], raw: str, n: int) -> list[int]:
    """n calls at once, spread over the proxies; their statuses."""
    def one(i: int) -> int:
        return proxies[i % len(proxies)].request("POST", "/chat/completions", BODY, raw)[0]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def same_minute() -> None:
    """rpm windows are UTC minutes: start a burst early enough in one that it ends there too."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.1)


def test_rpm_is_exact_across_two_workers(upstream: FakeOpenAI, lago: FakeLago, tmp_path: Any,
                                         redis_url: str) -> None:
    cfg = with_redis(upstream, f"sqlite:///{tmp_path}/db.sqlite", redis_url)
    with Proxy(cfg, lago_env(lago, "end_user_id"), workers=2) as proxy:
        assert "limits are per worker" not in proxy.output
        raw = key(proxy, rpm_limit=10)
        same_minute()
        statuses = fire([proxy], raw, 40)
    assert statuses.count(200) == 10 and statuses.count(429) == 30


def test_two_workers_without_redis_warn_that_limits_are_per_worker(upstream: FakeOpenAI, lago: FakeLago,
                                                                   tmp_path: Any) -> None:
    cfg = config(upstream, f"sqlite:///{tmp_path}/db.sqlite")
    cfg["litellm_settings"]["callbacks"] = []
    with Proxy(cfg, lago_env(lago, "end_user_id"), workers=2) as proxy:
        assert "--workers 2 without Redis: rate limits, max_parallel_requests and budget reservations are " \
               "per worker" in proxy.output


def test_two_proxies_on_one_database_share_rpm_parallel_and_budget(
        upstream: FakeOpenAI, lago: FakeLago, postgres_url: str, redis_url: str) -> None:
    db = create_database(postgres_url, f"r_{uuid.uuid4().hex[:12]}")
    cfg = with_redis(upstream, db, redis_url)
    env = lago_env(lago, "end_user_id")
    with Proxy(cfg, env) as a:
        rpm_key = key(a, rpm_limit=10)
        parallel_key = key(a, max_parallel_requests=3)
        budget = Decimal("0.0002")
        budget_key = key(a, max_budget=str(budget))
        with Proxy(cfg, env) as b:  # reads the keys at start
            same_minute()
            assert fire([a, b], rpm_key, 40).count(200) == 10
            upstream.delay = 2.0  # every call of the burst is in flight at once
            try:
                parallel = fire([a, b], parallel_key, 20)
            finally:
                upstream.delay = 0.0
            assert parallel.count(200) == 3 and parallel.count(429) == 17
            admitted = fire([a, b], budget_key, 200).count(200)
            for _ in range(20):  # bursts until one admits nothing with no cost held: the budget is spent
                time.sleep(4.5)  # past the settled-cost hold (4 s): spend comes from the database alone
                got = fire([a, b], budget_key, 20).count(200)
                if not got:
                    break
                admitted += got
            _, info, _ = a.request("GET", f"/key/info?key={budget_key}", None, MASTER)
    spent = Decimal(str(info["info"]["spend"]))
    assert spent == admitted * CUSTOM_COST
    # One call's upper bound: every prompt byte at the input rate (twice the JSON, for what the
    # proxy adds), max_tokens at the output rate.
    upper_bound = len(str(BODY)) * 2 * Decimal("1e-6") + 10 * Decimal("2e-6")
    assert budget <= spent <= budget + upper_bound, (admitted, spent)


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_redis_stopped_mid_test_follows_the_failure_policy(
        upstream: FakeOpenAI, lago: FakeLago, tmp_path: Any, redis_server: RedisServer, redis_url: str,
        policy: str) -> None:
    cfg = with_redis(upstream, f"sqlite:///{tmp_path}/db.sqlite", redis_url, redis_failure_policy=policy)
    with Proxy(cfg, lago_env(lago, "end_user_id")) as proxy:
        raw = key(proxy, rpm_limit=100)
        assert proxy.request("POST", "/chat/completions", BODY, raw)[0] == 200
        answered = time.monotonic()
        redis_server.stop()
        try:
            # The first call took a ticket for the next (redis_limits.py), admitted by Redis before it
            # stopped: that call runs — unless the proxy has met Redis down first (the first call's
            # release goes to Redis alone RELEASE_WAIT after it, and a proxy that knows Redis is down
            # uses no ticket), or the ticket went back unused (after redis_tickets.IDLE, at the next
            # SWEEP). Then the policy decides that call too. The ticket was given before `answered`:
            # past the time it surely went back, only the policy decides (the ticket's own rules:
            # test_redis_limits_tickets.py, clocked).
            ticket_gone = time.monotonic() - answered > IDLE + SWEEP + 0.5
            by_ticket = proxy.request("POST", "/chat/completions", BODY, raw)[0]
            status, body, _ = proxy.request("POST", "/chat/completions", BODY, raw)
            ready, public, _ = proxy.request("GET", "/health/readiness")
            _, details, _ = proxy.request("GET", "/health/readiness", None, MASTER)
            _, metrics, _ = proxy.request("GET", "/metrics", None, MASTER)
        finally:
            redis_server.restart()
        if policy == "fail_open":
            assert by_ticket == 200
        else:
            assert by_ticket == 503 if ticket_gone else by_ticket in (200, 503)
        assert public == {"status": "degraded"} and details["limits"]["redis"] == "unreachable"
        assert "llmbill_redis_up 0.0" in metrics
        if policy == "fail_closed":
            assert status == 503 and body["error"]["type"] == "redis_unavailable" and "Redis" in body["error"]["message"]
            assert ready == 503 and details["limits"]["refusing_calls"] is True
        else:
            assert status == 200, body
            assert ready == 200 and details["limits"]["limiting_per_process"] is True
        # Redis back: shared limits again.
        assert proxy.request("POST", "/chat/completions", BODY, raw)[0] == 200
        assert proxy.request("GET", "/health/readiness")[1] == {"status": "healthy"}
