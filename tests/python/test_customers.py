"""Customers, pricing tiers, budget windows, blocking, rate limits and the spend webhook — the
customers seed's requests against the real proxy process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.fakes.webhook import WebhookReceiver
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, lago_env

SEED_KEYS = {"user_id", "blocked", "alias", "spend", "allowed_model_region", "default_model", "litellm_budget_table"}
WEBHOOK_KEYS = {"spend", "max_budget", "token", "customer_id", "user_id", "team_id", "user_email", "key_alias",
                "projected_exceeded_date", "projected_spend", "event", "event_group", "event_message"}


def seed_config(upstream: FakeOpenAI, **general: Any) -> dict[str, Any]:
    priced = {"api_base": upstream.url, "api_key": "k", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    return {
        "model_list": [{"model_name": name, "litellm_params": {"model": "openai/my-model", **priced}}
                       for name in ("azure-gpt-3.5", "mistral", "gpt-3.5-turbo", "custom-model")],
        "litellm_settings": {"callbacks": ["lago"]},
        "general_settings": {"master_key": MASTER, **general},
    }


@pytest.fixture
def proxy(upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    with Proxy(seed_config(upstream), lago_env(lago, "end_user_id")) as p:
        yield p


def ask(proxy: Proxy, user: str, model: str = "gpt-3.5-turbo", **extra: Any) -> tuple[int, Any, dict[str, str]]:
    return proxy.request("POST", "/chat/completions", {
        "model": model, "user": user, "messages": [{"role": "user", "content": "what time is it"}], **extra}, MASTER)


def test_seed_tracking_customer_credit(proxy: Proxy) -> None:
    s, b, _ = ask(proxy, "ishaan3", "azure-gpt-3.5")  # first call works and upserts the customer
    assert s == 200, b
    ask(proxy, "ishaan3", "azure-gpt-3.5")
    s, info, _ = proxy.request("GET", "/customer/info?end_user_id=ishaan3", None, MASTER)
    assert s == 200 and set(info) == SEED_KEYS
    assert info["user_id"] == "ishaan3" and info["blocked"] is False and info["litellm_budget_table"] is None
    assert Decimal(str(info["spend"])) == 2 * CUSTOM_COST
    s, lst, _ = proxy.request("GET", "/customer/list", None, MASTER)
    assert [c["user_id"] for c in lst] == ["ishaan3"]


def test_seed_customer_budget_zero(proxy: Proxy, upstream: FakeOpenAI, lago: FakeLago) -> None:
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "my-customer-id", "max_budget": "0"}, MASTER)
    assert s == 200, b
    assert b["litellm_budget_table"]["max_budget"] == 0
    s, b, _ = ask(proxy, "ishaan-jaff-48", "mistral")  # the seed's "Test it!" call
    assert s == 200
    calls = len(upstream.requests)
    s, b, h = ask(proxy, "my-customer-id", "mistral")
    assert s == 422 and b["error"]["type"] == "budget_exceeded" and h["x-should-retry"] == "false"
    assert b["error"]["message"] == "ExceededBudget: End User=my-customer-id over budget. Spend=0, Budget=0"
    assert len(upstream.requests) == calls  # refused before the upstream
    lago.wait_for(1, timeout=10)
    time.sleep(0.3)
    assert len(lago.transaction_ids()) == 1  # and billed nowhere


def test_seed_pricing_tier(proxy: Proxy) -> None:
    s, b, _ = proxy.request("POST", "/budget/new", {"budget_id": "my-free-tier", "max_budget": 4}, MASTER)
    assert s == 200 and b["max_budget"] == 4, b
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "my-customer-id", "budget_id": "my-free-tier"}, MASTER)
    assert s == 200 and b["litellm_budget_table"]["budget_id"] == "my-free-tier", b
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "my-customer-id", "budget_id": "my-free-tier"}, MASTER)
    assert s == 400 and b["error"]["param"] == "user_id"  # a duplicate user_id
    client = openai.OpenAI(base_url=proxy.url, api_key=MASTER, max_retries=0)
    completion = client.chat.completions.create(
        model="gpt-3.5-turbo", user="my-customer-id",
        messages=[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}])
    assert completion.choices[0].message.content
    client.close()
    s, b, _ = proxy.request("GET", "/budget/info?budget_id=my-free-tier", None, MASTER)
    assert s == 200 and b["customers"] == 1
    s, b, _ = proxy.request("POST", "/budget/info", {"budgets": ["my-free-tier", "nope"]}, MASTER)
    assert s == 404 and "nope" in b["error"]["message"]
    s, b, _ = proxy.request("POST", "/budget/delete", {"id": "my-free-tier"}, MASTER)
    assert s == 400 and "my-customer-id" in b["error"]["message"]


def test_tier_refuses_each_customer_once_over_and_resets(proxy: Proxy) -> None:
    # 0.00005 allows two calls of 0.000026 (the second crosses), then refuses; each customer separately.
    proxy.request("POST", "/budget/new", {"budget_id": "tiny", "max_budget": 0.00005, "budget_duration": "3s"}, MASTER)
    for cust in ("a", "b"):
        s, b, _ = proxy.request("POST", "/customer/new", {"user_id": cust, "budget_id": "tiny"}, MASTER)
        assert s == 200 and b["litellm_budget_table"]["budget_reset_at"], b
    assert [ask(proxy, "a")[0] for _ in range(3)] == [200, 200, 422]
    assert ask(proxy, "b")[0] == 200  # b has its own spend on the same tier
    s, info, _ = proxy.request("GET", "/customer/info?end_user_id=a", None, MASTER)
    reset_at = info["litellm_budget_table"]["budget_reset_at"]
    time.sleep(3.2)
    assert ask(proxy, "a")[0] == 200  # a new window
    s, info, _ = proxy.request("GET", "/customer/info?end_user_id=a", None, MASTER)
    assert Decimal(str(info["spend"])) == CUSTOM_COST
    time.sleep(0.8)
    s, info, _ = proxy.request("GET", "/customer/info?end_user_id=a", None, MASTER)
    assert info["litellm_budget_table"]["budget_reset_at"] > reset_at  # stored and shown


def test_block_unblock_and_validation(proxy: Proxy) -> None:
    proxy.request("POST", "/customer/new", {"user_id": "c1", "alias": "Acme"}, MASTER)
    s, b, _ = proxy.request("POST", "/customer/block", {"user_ids": ["c1"]}, MASTER)
    assert s == 200
    s, b, _ = ask(proxy, "c1")
    assert s == 403 and b["error"]["type"] == "customer_blocked"
    proxy.request("POST", "/customer/unblock", {"user_ids": ["c1"]}, MASTER)
    assert ask(proxy, "c1")[0] == 200
    s, b, _ = proxy.request("POST", "/customer/block", {"user_ids": ["c1", "ghost"]}, MASTER)
    assert s == 404 and "ghost" in b["error"]["message"]
    s, info, _ = proxy.request("GET", "/customer/info?end_user_id=c1", None, MASTER)
    assert info["blocked"] is False  # nothing changed by the refused request
    proxy.request("POST", "/budget/new", {"budget_id": "t"}, MASTER)
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "c2", "max_budget": 1, "budget_id": "t"}, MASTER)
    assert s == 422 and b["error"]["param"] == "max_budget"
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "c3", "budget_id": "none"}, MASTER)
    assert s == 404
    s, b, _ = proxy.request("POST", "/customer/new", {"user_id": "c4", "max_budget": "lots"}, MASTER)
    assert s == 400
    s, b, _ = proxy.request("POST", "/customer/update", {"user_id": "c1", "alias": "Acme Ltd", "max_budget": 2}, MASTER)
    assert s == 200 and b["alias"] == "Acme Ltd" and b["litellm_budget_table"]["max_budget"] == 2
    s, b, _ = proxy.request("POST", "/end_user/delete", {"user_ids": ["c1"]}, MASTER)
    assert s == 200
    s, b, _ = proxy.request("GET", "/customer/info?end_user_id=c1", None, MASTER)
    assert s == 404


def test_rpm_limit_answers_429_with_retry_after(proxy: Proxy) -> None:
    proxy.request("POST", "/customer/new", {"user_id": "r", "rpm_limit": 2}, MASTER)
    assert ask(proxy, "r")[0] == 200 and ask(proxy, "r")[0] == 200
    s, b, h = ask(proxy, "r")
    if s == 200:  # the two calls straddled a minute boundary: the next two fill the new minute
        ask(proxy, "r")
        s, b, h = ask(proxy, "r")
    assert s == 429 and b["error"]["type"] == "rate_limit_error" and 1 <= int(h["retry-after"]) <= 60


def test_parallel_calls_cannot_overspend_the_budget(upstream: FakeOpenAI, lago: FakeLago) -> None:
    upstream.delay = 0.05  # calls overlap
    budget = 20 * CUSTOM_COST
    with Proxy(seed_config(upstream), lago_env(lago, "end_user_id")) as proxy:
        proxy.request("POST", "/customer/new", {"user_id": "busy", "max_budget": str(budget)}, MASTER)

        async def run() -> list[int]:
            async with openai.AsyncOpenAI(base_url=proxy.url, api_key=MASTER, max_retries=0) as client:
                async def one() -> int:
                    try:
                        await client.chat.completions.create(
                            model="custom-model", user="busy", max_tokens=10,
                            messages=[{"role": "user", "content": "what time is it"}])
                        return 200
                    except openai.APIStatusError as exc:
                        return exc.status_code
                return list(await asyncio.gather(*(one() for _ in range(200))))

        statuses = asyncio.run(run())
        accepted = statuses.count(200)
        # Reservations are upper bounds (~2.7x a real call here), so a burst admits fewer calls than
        # the budget could pay for; what the burst left is then usable one call at a time.
        assert statuses.count(422) == 200 - accepted and accepted >= 1  # budget refusals
        while ask(proxy, "busy", "custom-model", max_tokens=10)[0] == 200:
            accepted += 1
        # The documented bound: one call's upper-bound cost (prompt bytes as tokens + max_tokens).
        bound = Decimal("0.000001") * 60 + Decimal("0.000002") * 10
        s, info, _ = proxy.request("GET", "/customer/info?end_user_id=busy", None, MASTER)
        spend = Decimal(str(info["spend"]))
        assert spend == accepted * CUSTOM_COST and budget <= spend <= budget + bound
        lago.wait_for(accepted, timeout=15)
        time.sleep(0.3)
        assert len(lago.transaction_ids()) == accepted  # refused calls were not billed


def test_webhook_spend_tracked_per_customer_call(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with WebhookReceiver() as hook:
        env = {**lago_env(lago, "end_user_id"), "WEBHOOK_URL": hook.url}
        with Proxy(seed_config(upstream, alerting=["webhook"]), env) as proxy:
            hook.fail_next(1)  # the first delivery fails and is retried
            s, key, _ = proxy.request("POST", "/key/generate", {"key_alias": "k1", "team_id": "t1"}, MASTER)
            s, b, _ = proxy.request("POST", "/chat/completions", {
                "model": "mistral", "user": "krrish12",
                "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}]}, key["key"])
            assert s == 200
            s, b, _ = proxy.request("POST", "/chat/completions", {
                "model": "mistral", "messages": [{"role": "user", "content": "no customer"}]}, key["key"])
            assert s == 200
            bodies = hook.wait_for(1)
            time.sleep(0.5)
        bodies = hook.bodies()
        assert len(bodies) == 1  # one per customer call; the call without a customer sends none
        event = bodies[0]
        assert WEBHOOK_KEYS <= set(event)
        assert event["event"] == "spend_tracked" and event["event_group"] == "customer"
        assert event["customer_id"] == "krrish12" and event["team_id"] == "t1" and event["key_alias"] == "k1"
        assert Decimal(str(event["spend"])) == CUSTOM_COST and event["token"] == key["token"]
        assert event["event_message"] == f"Customer spend tracked. Customer=krrish12, spend={float(CUSTOM_COST)}"
        assert hook.received[0].headers["x-llmbill-event-id"]


def test_webhook_budget_crossed_events(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with WebhookReceiver() as hook:
        env = {**lago_env(lago, "end_user_id"), "WEBHOOK_URL": hook.url}
        with Proxy(seed_config(upstream, alerting=["webhook"]), env) as proxy:
            proxy.request("POST", "/budget/new", {"budget_id": "tier", "soft_budget": 0.00003, "max_budget": 0.00005},
                          MASTER)
            proxy.request("POST", "/customer/new", {"user_id": "x", "budget_id": "tier"}, MASTER)
            assert ask(proxy, "x")[0] == 200 and ask(proxy, "x")[0] == 200
            hook.wait_for(4)
        events = sorted((b["event"], b["event_group"]) for b in hook.bodies())
        assert events == [("budget_crossed", "customer"), ("soft_budget_crossed", "customer"),
                          ("spend_tracked", "customer"), ("spend_tracked", "customer")]


def test_two_replicas_on_postgres_share_one_customer_budget(upstream: FakeOpenAI, lago: FakeLago,
                                                            postgres_url: str) -> None:
    import uuid

    from tests.python.pg import create_database

    db = create_database(postgres_url, f"replicas_{uuid.uuid4().hex[:10]}")
    cfg = seed_config(upstream, database_url=db)
    budget = 10 * CUSTOM_COST
    env = lago_env(lago, "end_user_id")
    with Proxy(cfg, env) as a, Proxy(cfg, env) as b:
        s, body, _ = a.request("POST", "/customer/new", {"user_id": "shared", "max_budget": str(budget)}, MASTER)
        assert s == 200, body
        accepted = 0
        for i in range(40):
            replica = (a, b)[i % 2]
            if ask(replica, "shared", "custom-model", max_tokens=10)[0] == 200:
                accepted += 1
            time.sleep(0.1)  # a little slower than a cache refresh per 10 calls
        # Both replicas refuse once the shared spend is over; the bound for R=2 replicas is two
        # upper-bound calls plus what the other spent within a refresh interval.
        assert budget <= accepted * CUSTOM_COST <= budget + 2 * Decimal("0.00008") + 10 * CUSTOM_COST
        time.sleep(1.5)  # flush + refresh: both read the database's exact total
        spends = [Decimal(str(r.request("GET", "/customer/info?end_user_id=shared", None, MASTER)[1]["spend"]))
                  for r in (a, b)]
        assert spends == [accepted * CUSTOM_COST] * 2
    lago.wait_for(accepted, timeout=15)
    assert len(set(lago.transaction_ids())) == accepted
