"""Every billed id is billable in Lago (issue 17, item 0): the pipeline's gate, the watcher's
answers, auto-provisioning, and the fake Lago's rule that an event received while Lago had no such
subscription is accepted and never billed.

End to end with the real proxy: a team's calls are held (readiness, /metrics, dead letters) while
Lago has no subscription for it, then delivered exactly once after it is created and the letters
are replayed; Lago's signed `subscription.started` releases the held events at once, on every proxy
sharing Redis (except those dated before the subscription started); with LAGO_AUTO_PROVISION_PLAN a
new customer's first call creates its Lago customer and subscription and its event is billed.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Callable

from llmbill._core import Pipeline
from llmbill.lago.reader import LagoReader
from llmbill.lago.subscriptions import LagoSubscriptions, missing_reason
from llmbill.proxy.subscription_watch import decide
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.lago_rsa import shared_key
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_support import KEY, eventually, submit_call
from tests.python.lago_wallet_support import lago_api
from tests.python.proxy_harness import Proxy
from tests.python.test_ops_e2e import chat, cli, reconcile_json
from tests.python.test_proxy_e2e import MASTER, config, lago_env

PLAN = "llm"


def add_plan(lago: FakeLago, metric: str = "openai_tokens", field: str = "input_tokens", amount: str = "0.01") -> None:
    """A plan billing `amount` USD per unit of `metric` (a sum of `field`)."""
    if metric not in lago.billing.metrics:
        status, _ = lago.billing.create_metric({"billable_metric": {"name": metric, "code": metric,
                                                                    "aggregation_type": "sum_agg",
                                                                    "field_name": field}})
        assert status == 200
    lago_id = lago.billing.metrics[metric]["lago_id"]
    status, body = lago.billing.create_plan({"plan": {
        "name": PLAN, "code": PLAN, "interval": "monthly", "amount_cents": 0, "amount_currency": "USD",
        "charges": [{"billable_metric_id": lago_id, "charge_model": "standard", "properties": {"amount": amount}}]}})
    assert status == 200, body


def subscribe(lago: FakeLago, ident: str, at: str = "2020-01-01T00:00:00Z") -> None:
    assert lago.billing.upsert_customer({"customer": {"external_id": ident, "name": ident}})[0] == 200
    status, body = lago.billing.create_subscription({"subscription": {
        "external_customer_id": ident, "plan_code": PLAN, "external_id": ident, "subscription_at": at}})
    assert status == 200, body


def usage_cents(lago: FakeLago, ident: str) -> tuple[int, int]:
    """(events billed, amount in cents) of the subscription's current usage."""
    status, body = lago.billing.current_usage(ident, {"external_subscription_id": ident})
    assert status == 200, body
    charges = body["customer_usage"]["charges_usage"]
    return sum(c["events_count"] for c in charges), body["customer_usage"]["amount_cents"]


# -- the fake Lago -------------------------------------------------------------------------------------

def test_fake_lago_never_bills_an_event_received_before_its_subscription(fake_lago: FakeLago,
                                                                        make_pipeline: Callable[..., Pipeline]) -> None:
    fake_lago.add_metric("llm_usage")
    add_plan(fake_lago, "llm_usage")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, event_codes=["llm_usage"])
    submit_call(pipeline, "early", end_user_id="cust-1")
    assert pipeline.flush(5)
    subscribe(fake_lago, "cust-1")  # started long before the event, created after it arrived
    submit_call(pipeline, "late", end_user_id="cust-1")
    assert pipeline.flush(5)
    assert sorted(fake_lago.transaction_ids()) == ["early", "late"]  # both accepted with a 200...
    assert usage_cents(fake_lago, "cust-1")[0] == 1  # ...only the one received after is billed


def test_subscription_status_and_idempotent_provisioning(fake_lago: FakeLago) -> None:
    add_plan(fake_lago)
    client = LagoSubscriptions(LagoReader(fake_lago.url, KEY))
    assert client.status("team-1") is None and not client.active("team-1")
    start_ms = 1_786_000_000_123
    client.provision("team-1", PLAN, start_ms)
    client.provision("team-1", PLAN, start_ms)  # a retry after a lost reply changes nothing
    assert client.active("team-1")
    (subscription,) = fake_lago.billing.subscriptions.values()
    assert subscription["started_at"] == Decimal(1_786_000_000)  # floored: not after the first event
    assert decide(client, {"team-1": 0, "team-2": 0}, "") == {"team-1": "", "team-2": missing_reason("team-2")}
    assert decide(client, {"team-2": start_ms}, PLAN) == {"team-2": ""} and client.active("team-2")


# -- the pipeline's gate ---------------------------------------------------------------------------------

def test_gate_waits_on_unknown_ids_sends_active_ones_and_dead_letters_held_ones(
        fake_lago: FakeLago, make_pipeline: Callable[..., Pipeline]) -> None:
    fake_lago.add_metric("llm_usage")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, event_codes=["llm_usage"], gate_subscriptions=True)
    submit_call(pipeline, "a1", end_user_id="a", timestamp_ms=1_786_000_000_000)
    submit_call(pipeline, "b1", end_user_id="b", timestamp_ms=1_786_000_001_000)
    submit_call(pipeline, "a2", end_user_id="a", timestamp_ms=1_786_000_002_000)
    eventually(lambda: pipeline.unverified_subscriptions() == {"a": 1_786_000_000_000})
    assert not pipeline.flush(0.3) and fake_lago.transaction_ids() == []  # nothing sent past an unknown id
    pipeline.set_subscriptions({"a": ""})
    eventually(lambda: "b" in pipeline.unverified_subscriptions() and fake_lago.transaction_ids() == ["a1"])
    time.sleep(0.2)  # a margin for a wrong send to show (there is no event to wait for)
    assert fake_lago.transaction_ids() == ["a1"]  # order kept: b1 waits, and a2 behind it
    pipeline.set_subscriptions({"b": "no subscription b"})
    assert pipeline.flush(5)
    assert sorted(fake_lago.transaction_ids()) == ["a1", "a2"]
    assert [(d["id"], d["reason"]) for d in pipeline.dead_letters()] == [("b1", "no subscription b")]
    assert pipeline.held_subscriptions() == {"b": "no subscription b"}
    stats = pipeline.stats()
    assert (stats["delivered"], stats["held"], stats["pending"]) == (2, 1, 0)
    submit_call(pipeline, "b2", end_user_id="b")  # a held id's new events are held at once
    assert pipeline.flush(5) and "b2" in [d["id"] for d in pipeline.dead_letters()]


def test_without_the_gate_nothing_waits(fake_lago: FakeLago, make_pipeline: Callable[..., Pipeline]) -> None:
    fake_lago.add_metric("llm_usage")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, event_codes=["llm_usage"])
    submit_call(pipeline, "x", end_user_id="nobody")
    assert pipeline.flush(5) and fake_lago.transaction_ids() == ["x"]
    assert pipeline.unverified_subscriptions() == {}


# -- end to end -----------------------------------------------------------------------------------------

def _team_key(proxy: Proxy, team: str) -> str:
    status, body, _ = proxy.request("POST", "/team/new", {"team_id": team}, MASTER)
    assert status == 200, body
    status, body, _ = proxy.request("POST", "/key/generate", {"team_id": team}, MASTER)
    assert status == 200, body
    return str(body["key"])


def test_calls_of_a_team_without_subscription_are_held_then_delivered_once_after_replay(
        upstream: FakeOpenAI, lago: FakeLago) -> None:
    add_plan(lago)
    env = {**lago_env(lago, "team_id"), "LAGO_CHECK_SUBSCRIPTIONS": "1"}
    with Proxy(config(upstream, None), env) as proxy:
        key = _team_key(proxy, "team-a")
        calls = []
        for _ in range(2):
            status, body, headers = proxy.request("POST", "/chat/completions", chat("cust-1"), key)
            assert status == 200, body  # served at once: Lago is asked behind the reply
            calls.append(headers["x-litellm-call-id"])

        def held() -> bool:
            ready = proxy.request("GET", "/health/readiness", None, MASTER)[1]["billing"]
            return bool(ready["held_subscriptions"] == ["team-a"] and ready["dead_letters"] == 2)
        eventually(held, timeout=10)
        assert lago.events == []
        assert "no active subscription with external_id 'team-a'" in proxy.output
        metrics = proxy.request("GET", "/metrics", None, MASTER)[1]
        assert re.search(r"^llmbill_billing_held_subscriptions(\{[^}]*\})? 1\.0$", str(metrics), re.M), metrics
        rc, out, _ = cli(proxy, "deadletters", "replay", "--all")
        assert rc == 1 and "still has no active subscription team-a" in out  # refused: would never bill
        report = reconcile_json(proxy)[1]
        assert report["unsubscribed"] == ["team-a"]

        subscribe(lago, "team-a")
        rc, out, err = cli(proxy, "deadletters", "replay", "--all", process=True)
        assert rc == 0, out + err
        lago.wait_for(2)
        time.sleep(0.2)
        assert lago.count_by_transaction_id() == {c: 1 for c in calls}  # exactly once
        assert usage_cents(lago, "team-a")[0] == 2  # and billable
        assert reconcile_json(proxy)[1]["unsubscribed"] == []


def test_auto_provisioning_makes_a_new_customers_first_call_billable(upstream: FakeOpenAI, lago: FakeLago) -> None:
    add_plan(lago)
    env = {**lago_env(lago, "end_user_id"), "LAGO_AUTO_PROVISION_PLAN": PLAN}
    with Proxy(config(upstream, None), env) as proxy:
        status, body, headers = proxy.request("POST", "/chat/completions", chat("new-cust"), MASTER)
        assert status == 200, body
        (event,) = lago.wait_for(1, timeout=10)
        assert event["transaction_id"] == headers["x-litellm-call-id"]
        assert lago.billing.customers["new-cust"]["external_id"] == "new-cust"
        assert lago.billing.subscriptions["new-cust"]["plan_code"] == PLAN
        assert usage_cents(lago, "new-cust") == (1, 12 * 1)  # 12 input tokens at one cent each
        ready = proxy.request("GET", "/health/readiness", None, MASTER)[1]["billing"]
        assert ready["held_subscriptions"] == [] and ready["dead_letters"] == 0


def test_a_team_created_through_the_api_is_provisioned_before_its_first_call(upstream: FakeOpenAI,
                                                                            lago: FakeLago) -> None:
    add_plan(lago)
    env = {**lago_env(lago, "team_id"), "LAGO_AUTO_PROVISION_PLAN": PLAN}
    with Proxy(config(upstream, None), env) as proxy:
        assert proxy.request("POST", "/team/new", {"team_id": "team-p"}, MASTER)[0] == 200
        eventually(lambda: "team-p" in lago.billing.subscriptions, timeout=10)
        assert "team-x" not in lago.billing.subscriptions
        assert proxy.request("POST", "/customer/new", {"user_id": "c-1"}, MASTER)[0] == 200  # not the billed kind
        time.sleep(0.3)
        assert "c-1" not in lago.billing.customers


def _held(proxy: Proxy, ident: str, letters: int) -> Callable[[], bool]:
    def check() -> bool:
        ready = proxy.request("GET", "/health/readiness", None, MASTER)[1]["billing"]
        return bool(ready["held_subscriptions"] == [ident] and ready["dead_letters"] == letters)
    return check


def _released(proxy: Proxy, letters: int) -> bool:
    ready = proxy.request("GET", "/health/readiness", None, MASTER)[1]["billing"]
    return bool(ready["held_subscriptions"] == [] and ready["dead_letters"] == letters)


def _call(proxy: Proxy, customer: str) -> str:
    status, body, headers = proxy.request("POST", "/chat/completions", chat(customer), MASTER)
    assert status == 200, body
    return str(headers["x-litellm-call-id"])


def _subscribe_through_the_api(lago: FakeLago, ident: str, at: str) -> None:
    status, body = lago_api(lago, "POST", "/api/v1/subscriptions", {"subscription": {
        "external_customer_id": ident, "plan_code": PLAN, "external_id": ident, "subscription_at": at}})
    assert status == 200 and body["subscription"]["status"] == "active", body


def test_subscription_started_releases_the_held_events_of_every_proxy_at_once(
        upstream: FakeOpenAI, lago: FakeLago, redis_url: str) -> None:
    """Two proxies on one Redis hold a customer's calls; Lago's signed `subscription.started`
    reaches proxy A only; both release their held events within seconds (not at the minute's
    re-check), each delivered exactly once and billable."""
    add_plan(lago)
    env = {**lago_env(lago, "end_user_id"), "LAGO_CHECK_SUBSCRIPTIONS": "1"}
    cfg = config(upstream, None)
    cfg["general_settings"]["redis_url"] = redis_url
    with Proxy(cfg, env) as a, Proxy(cfg, env) as b:
        calls = [_call(a, "cust-h"), _call(b, "cust-h"), _call(b, "cust-h")]
        eventually(_held(a, "cust-h", 1), timeout=10, what="A holding cust-h")
        eventually(_held(b, "cust-h", 2), timeout=10, what="B holding cust-h")
        assert lago.events == []
        lago.wallets.webhook_url = a.url + "/lago/webhooks"  # Lago's one webhook endpoint: proxy A
        shared_key()
        started = time.monotonic()
        _subscribe_through_the_api(lago, "cust-h", "2020-01-01T00:00:00Z")
        lago.wait_for(3, timeout=10)
        assert time.monotonic() - started < 10  # the minute's re-check cannot have run yet
        assert [w["webhook_type"] for w in lago.wallets.wait_webhooks()] == ["subscription.started"]
        eventually(lambda: _released(a, 0) and _released(b, 0), timeout=5, what="both released")
        calls.append(_call(b, "cust-h"))  # new calls flow again
        lago.wait_for(4, timeout=10)
        time.sleep(0.2)  # a margin for a duplicate to show (there is no event to wait for)
        assert lago.count_by_transaction_id() == {c: 1 for c in calls}  # exactly once
        assert usage_cents(lago, "cust-h")[0] == 4  # and billable
        assert "replayed 2 held event(s) of cust-h" in b.output and "replayed 1 held event(s) of cust-h" in a.output


def test_held_events_dated_before_the_subscription_started_stay_dead_letters(upstream: FakeOpenAI,
                                                                               lago: FakeLago) -> None:
    """Lago would store them and never bill them: released, the id's new events flow, the old ones
    stay letters, loudly."""
    add_plan(lago)
    env = {**lago_env(lago, "end_user_id"), "LAGO_CHECK_SUBSCRIPTIONS": "1"}
    with Proxy(config(upstream, None), env) as proxy:
        _call(proxy, "cust-late")
        eventually(_held(proxy, "cust-late", 1), timeout=10, what="held")
        lago.wallets.webhook_url = proxy.url + "/lago/webhooks"
        shared_key()
        time.sleep(1.1)  # the subscription starts (whole seconds) after the held event's timestamp
        _subscribe_through_the_api(lago, "cust-late", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        eventually(lambda: _released(proxy, 1), timeout=10, what="released, the letter kept")
        eventually(lambda: "dated before its Lago subscription started" in proxy.output, timeout=5)
        new = _call(proxy, "cust-late")
        (event,) = lago.wait_for(1, timeout=10)
        assert event["transaction_id"] == new and lago.events == [event]


def test_a_forged_subscription_webhook_releases_nothing(upstream: FakeOpenAI, lago: FakeLago) -> None:
    add_plan(lago)
    env = {**lago_env(lago, "end_user_id"), "LAGO_CHECK_SUBSCRIPTIONS": "1"}
    with Proxy(config(upstream, None), env) as proxy:
        _call(proxy, "cust-f")
        eventually(_held(proxy, "cust-f", 1), timeout=10, what="held")
        payload = json.dumps({"webhook_type": "subscription.started", "object_type": "subscription",
                              "subscription": {"external_id": "cust-f", "status": "active"}}).encode()
        reads = len([r for r in lago.requests if r.path == "/api/v1/subscriptions/cust-f"])
        status, body, _ = proxy.request("POST", "/lago/webhooks", raw=payload, headers={
            "X-Lago-Signature": "AAAA", "X-Lago-Signature-Algorithm": "hmac"})
        assert status == 401 and body["error"]["type"] == "auth_error", body
        # Genuine, but Lago has no such subscription: asked once, still held.
        status, _, _ = proxy.request("POST", "/lago/webhooks", raw=payload, headers={
            "X-Lago-Signature": lago.wallets.sign(payload, "jwt")})
        assert status == 200
        eventually(lambda: len([r for r in lago.requests if r.path == "/api/v1/subscriptions/cust-f"]) == reads + 1,
                   timeout=5, what="the id re-checked")
        assert _held(proxy, "cust-f", 1)() and lago.events == []
