"""Prepaid credits across processes and restarts, end to end: real proxy processes
(tests/python/proxy_harness.py), one redis-server, one fake Lago.

- Two proxies sharing Redis never spend the same $1.00 twice under 50 parallel calls split across them.
- A top-up whose signed webhook reaches one proxy unblocks the customer on the other within 2 s (the
  webhook is relayed through Redis, credits/fanout.py).
- Redis stopped mid-test: fail_closed refuses, fail_open serves on the proxy's own view and writes its
  usage back; a Redis that comes back empty is re-seeded from Lago; the $1.00 is never overspent.
- A restarted proxy (no Redis) still counts the usage Lago has not invoiced: after a clean stop, and
  after kill -9 with events still in the spool (delivered before the first seed, or calls are refused).
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.lago_rsa import shared_key
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_wallet_support import top_up, wallet
from tests.python.proxy_harness import Proxy
from tests.python.redis_server import RedisServer
from tests.python.test_credits_e2e import HOLD_OVER, call, credit_config
from tests.python.test_credits_seed import METRIC, subscribe
from tests.python.test_proxy_e2e import MASTER, lago_env

DOLLAR = Decimal("1.00")


@pytest.fixture
def lago() -> Iterator[FakeLago]:
    """The fake Lago with the README's plan metric: a sum of billed_amount, one currency unit per unit."""
    with FakeLago(api_key="lago-key") as fake:
        fake.add_metric(METRIC, "billed_amount")
        yield fake


def shared_config(upstream: FakeOpenAI, redis_url: str | None = None, policy: str = "fail_closed") -> dict[str, Any]:
    cfg = credit_config(upstream)
    cfg["litellm_settings"]["cost_margin_config"] = {"global": 0}  # billed_amount on every event
    if redis_url:
        cfg["general_settings"].update(redis_url=redis_url, redis_failure_policy=policy)
    return cfg


def billed(lago: FakeLago, customer: str) -> Decimal:
    return sum((Decimal(e["properties"]["billed_amount"]) for e in lago.events
                if e.get("external_subscription_id") == customer), Decimal(0))


def cents(amount: Decimal) -> Decimal:
    """Lago's fee for this usage (rounded half up to the cent), plus the half cent seed.py adds."""
    return amount.quantize(Decimal("0.01"), ROUND_HALF_UP) + Decimal("0.005")


def drive(proxies: list[Proxy], customer: str) -> tuple[int, list[Any]]:
    """Rounds of 50 calls at once, split across the proxies, until a whole round is refused."""
    served, refused = 0, []
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        for _ in range(40):
            replies = list(pool.map(lambda i: call(proxies[i % len(proxies)], customer), range(50)))
            ok = sum(1 for status, _ in replies if status == 200)
            refused += [r for r in replies if r[0] != 200]
            served += ok
            if not ok:
                return served, refused
    raise AssertionError("the credits never ran out")


def credits(proxy: Proxy, customer: str) -> dict[str, Any]:
    status, info, _ = proxy.request("GET", f"/customer/info?end_user_id={customer}", None, MASTER)
    assert status == 200, info
    return {k: Decimal(str(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in info["credits"].items()}


def test_two_proxies_sharing_redis_never_spend_the_same_dollar_twice_under_50_parallel_calls(
        upstream: FakeOpenAI, lago: FakeLago, redis_url: str) -> None:
    wallet(lago, "shared", granted=str(DOLLAR))
    cfg, env = shared_config(upstream, redis_url), lago_env(lago, "end_user_id")
    upstream.delay = 0.2  # every call of a round is in flight at once, on both proxies
    with Proxy(cfg, env) as a, Proxy(cfg, env) as b:
        served, refused = drive([a, b], "shared")
        assert served >= 20, served  # ~0.03 a call: the credits were used, not refused early
        for status, body in refused:
            assert status == 422 and body["error"]["type"] == "insufficient_credits", body
        lago.wait_for(served, timeout=30)
        total = billed(lago, "shared")
        assert Decimal("0.80") < total <= DOLLAR, total  # never past $1.00, by any amount
        for proxy in (a, b):
            shown = credits(proxy, "shared")
            assert shown["shared"] is True and shown["holds"] == 0 and shown["lago_balance"] == DOLLAR
            assert shown["settled_not_invoiced"] == total and shown["available"] == DOLLAR - total


def settled_in_redis(proxy: Proxy, customer: str, amount: Decimal, timeout: float = 10.0) -> None:
    """Waits until the shared tally holds `amount` settled and no hold: every call's settle written."""
    deadline = time.monotonic() + timeout
    while True:
        shown = credits(proxy, customer)
        if shown["settled_not_invoiced"] == amount and shown["holds"] == 0:
            return
        assert time.monotonic() < deadline, shown
        time.sleep(0.05)


def counter(proxy: Proxy, name: str, outcome: str, label: str = "outcome") -> float:
    _, text, _ = proxy.request("GET", "/metrics", None, MASTER)
    found = re.search(rf'^{name}_total{{{label}="{outcome}"}} (\S+)$', str(text), re.M)
    return float(found.group(1)) if found else 0.0


def test_a_top_up_whose_webhook_reaches_one_proxy_unblocks_the_other_within_2s(
        upstream: FakeOpenAI, lago: FakeLago, redis_url: str) -> None:
    """Lago sends the webhook to one URL (here proxy A's); the customer's next call through proxy B
    is served within 2 s, long before B's poll (600 s)."""
    wid = wallet(lago, "topped", granted=str(HOLD_OVER))
    cfg, env = shared_config(upstream, redis_url), lago_env(lago, "end_user_id")
    with Proxy(cfg, env) as a, Proxy(cfg, env) as b:
        for proxy in (a, b):  # out of credits on both: each has read the wallet
            status, body = call(proxy, "topped")
            assert status == 422 and body["error"]["type"] == "insufficient_credits", body
        lago.wallets.webhook_url, lago.wallets.webhook_algorithm = a.url + "/lago/webhooks", "jwt"
        shared_key()  # Lago's signing key exists before any webhook (the fake makes it on first use)
        started = time.monotonic()
        top_up(lago, wid, granted_credits="1.0")  # granted: settled inside the request, then wallet.updated
        while call(b, "topped")[0] != 200:
            assert time.monotonic() - started < 2.0, ("B not unblocked within 2 s", lago.wallets.webhooks_sent)
            time.sleep(0.02)
        assert {w["status"] for w in lago.wallets.wait_webhooks()} == {200}
        assert counter(a, "llmbill_credit_webhooks", "accepted") >= 1 and counter(a, "llmbill_credit_relays",
                                                                                  "published") >= 1
        assert counter(b, "llmbill_credit_webhooks", "accepted") == 0  # B never saw a webhook...
        assert counter(b, "llmbill_credit_relays", "received") >= 1  # ...only A's relay
        assert counter(b, "llmbill_credit_refusals", "insufficient", "reason") >= 1  # the refusals are on /metrics
        assert call(a, "topped")[0] == 200


def _save(server: RedisServer) -> None:
    """SAVE: the server reloads this snapshot when it restarts (a Redis with persistence)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"SAVE\r\n")
        assert s.recv(64).startswith(b"+OK")


@pytest.mark.parametrize("policy, persisted", [("fail_closed", True), ("fail_open", True), ("fail_closed", False)],
                         ids=["fail_closed", "fail_open", "fail_closed-data-lost"])
def test_redis_stopped_mid_test_follows_the_policy_and_never_overspends(
        upstream: FakeOpenAI, lago: FakeLago, redis_server: RedisServer, redis_url: str, policy: str,
        persisted: bool) -> None:
    wallet(lago, "outage", granted=str(DOLLAR))
    subscribe(lago, "outage")  # a Redis that lost the tally re-seeds it from Lago's current_usage
    cfg, env = shared_config(upstream, redis_url, policy), lago_env(lago, "end_user_id")
    with Proxy(cfg, env) as a, Proxy(cfg, env) as b:
        assert all(call(proxy, "outage")[0] == 200 for proxy in (a, a, a, a, b))
        lago.wait_for(5, timeout=10)
        before = billed(lago, "outage")
        if persisted:
            settled_in_redis(a, "outage", before)  # settles are written behind the reply
            _save(redis_server)
        redis_server.stop()
        try:
            status, body = call(a, "outage")
            _, metrics, _ = a.request("GET", "/metrics", None, MASTER)
            ready, _, _ = a.request("GET", "/health/readiness")
        finally:
            redis_server.restart()
            Path(redis_server.root, "dump.rdb").unlink(missing_ok=True)
        assert "llmbill_redis_up 0.0" in metrics
        if policy == "fail_closed":
            assert (status, body["error"]["type"], ready) == (503, "redis_unavailable", 503), body
        else:
            assert (status, ready) == (200, 200), body  # served on this proxy's view
        lago.wait_for(5 + (status == 200), timeout=10)
        during = billed(lago, "outage")
        credits(a, "outage")  # a's next script for the payer writes back what the outage kept (or its poll)
        shown = credits(b, "outage")  # the other proxy sees it, or the tally re-seeded from Lago
        assert shown["shared"] is True and shown["holds"] == 0
        if persisted:
            assert shown["settled_not_invoiced"] == during
        else:  # what Lago had: all of it, a's spool drained first
            assert shown["settled_not_invoiced"] == cents(before)
        served, refused = drive([a, b], "outage")
        for status, body in refused:
            assert status == 422 and body["error"]["type"] == "insufficient_credits", body
        lago.wait_for(5 + served + (during != before), timeout=30)
        total = billed(lago, "outage")
        assert Decimal("0.80") < total <= DOLLAR, total


def test_a_restarted_proxy_still_counts_what_lago_has_not_invoiced(upstream: FakeOpenAI, lago: FakeLago,
                                                                    tmp_path: Path) -> None:
    """No Redis: the restarted process seeds the payer from Lago's current_usage at its first read."""
    wallet(lago, "restart", granted=str(DOLLAR))
    subscribe(lago, "restart")
    cfg, env = shared_config(upstream), lago_env(lago, "end_user_id")
    with Proxy(cfg, env, workdir=tmp_path) as first:
        assert all(call(first, "restart")[0] == 200 for _ in range(6))
    total = billed(lago, "restart")  # the clean stop delivered every event
    assert total > 0
    with Proxy(cfg, env, workdir=tmp_path) as second:
        shown = credits(second, "restart")
        assert shown["shared"] is False and shown["settled_not_invoiced"] == cents(total)
        assert shown["available"] == DOLLAR - cents(total)


def test_after_kill_9_the_spool_is_delivered_before_the_first_seed(upstream: FakeOpenAI, lago: FakeLago,
                                                                  tmp_path: Path) -> None:
    """Events a killed proxy left in its spool are not in Lago yet: the restarted proxy delivers them
    before it reads Lago's usage, and refuses credit calls (503) while it cannot."""
    wallet(lago, "killed", granted=str(DOLLAR))
    subscribe(lago, "killed")
    cfg, env = shared_config(upstream), lago_env(lago, "end_user_id")
    first = Proxy(cfg, env, workdir=tmp_path).start()
    try:
        lago.fail_next(100_000)  # Lago reads fine but takes no events: they stay in the spool
        assert all(call(first, "killed")[0] == 200 for _ in range(6))
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait()
    finally:
        first.stop()
    assert billed(lago, "killed") == 0
    with Proxy(cfg, env, workdir=tmp_path) as second:
        status, body = call(second, "killed")
        assert status == 503 and body["error"]["type"] == "credits_unavailable", body
        lago.clear_faults()
        lago.wait_for(6, timeout=60)
        total = billed(lago, "killed")
        shown = credits(second, "killed")
        assert shown["settled_not_invoiced"] == cents(total) and shown["available"] == DOLLAR - cents(total)
