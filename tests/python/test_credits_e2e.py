"""Prepaid credits end to end (issue 17): a real proxy process gating on the fake Lago's wallets.
A customer with $1.00 of credits is served until refused and never billed past $1.00, under 50
parallel calls, streaming or not; a top-up unblocks the next call through the signed webhook
(within 2 s) or the poll (within its interval); a forged webhook changes nothing."""

from __future__ import annotations

import concurrent.futures
import json
import time
from decimal import Decimal
from typing import Any

import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.lago_rsa import shared_key
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_wallet_support import top_up, wallet
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config, lago_env

HOLD_OVER = Decimal("0.05")  # below one call's hold (~0.13 at these prices): refused with this much


def credit_config(upstream: FakeOpenAI, poll: float = 600, **credits: Any) -> dict[str, Any]:
    cfg = config(upstream, None)
    # Dear enough that $1.00 runs out in a few dozen calls: a call costs ~0.03, holds ~0.13.
    cfg["model_list"].append({"model_name": "pricey", "litellm_params": {
        "model": "openai/my-model", "api_base": upstream.url, "api_key": "upstream-key",
        "input_cost_per_token": 1e-3, "output_cost_per_token": 2e-3}})
    cfg["general_settings"].update(credits="lago", credits_settings={
        "poll_interval_seconds": poll, "webhook_hmac_key": "fake-hmac-key", "webhook_issuer": "http://fake-lago",
        **credits})
    return cfg


def chat(customer: str, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "pricey", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20,
                            "user": customer}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def call(proxy: Proxy, customer: str, stream: bool = False) -> tuple[int, Any]:
    status, body, _ = proxy.request("POST", "/chat/completions", chat(customer, stream), MASTER)
    return status, body


def billed(lago: FakeLago, customer: str) -> Decimal:
    return sum((Decimal(e["properties"]["response_cost"]) for e in lago.events
                if e.get("external_subscription_id") == customer), Decimal(0))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
def test_one_dollar_of_credits_is_never_overspent_under_50_parallel_calls(
        upstream: FakeOpenAI, lago: FakeLago, stream: bool) -> None:
    wallet(lago, "cust-c", granted="1.00")
    with Proxy(credit_config(upstream), lago_env(lago, "end_user_id")) as proxy:
        served = 0
        refused: list[Any] = []
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            for _ in range(20):  # rounds of 50 at once, until a whole round is refused
                replies = list(pool.map(lambda _: call(proxy, "cust-c", stream), range(50)))
                ok = sum(1 for status, _ in replies if status == 200)
                refused += [r for r in replies if r[0] != 200]
                served += ok
                if not ok:
                    break
        assert served >= 20, served  # $1.00 at ~0.03 a call: the credits were used, not refused early
        for status, body in refused:
            assert status == 422 and body["error"]["type"] == "insufficient_credits", body  # the budget status
        lago.wait_for(served, timeout=30)
        total = billed(lago, "cust-c")
        assert Decimal("0.80") < total <= Decimal("1.00"), total
        status, info, _ = proxy.request("GET", "/customer/info?end_user_id=cust-c", None, MASTER)
        credits = info["credits"]
        assert Decimal(str(credits["holds"])) == 0 and Decimal(str(credits["lago_balance"])) == Decimal("1.00")
        assert Decimal(str(credits["settled_not_invoiced"])) == total
        assert Decimal(str(credits["available"])) == Decimal("1.00") - total


@pytest.mark.parametrize("algorithm", ["jwt", "hmac"])
def test_a_granted_top_up_unblocks_the_next_call_within_2s_through_the_signed_webhook(
        upstream: FakeOpenAI, lago: FakeLago, algorithm: str) -> None:
    wid = wallet(lago, "cust-w", granted=str(HOLD_OVER))
    with Proxy(credit_config(upstream), lago_env(lago, "end_user_id")) as proxy:
        status, body = call(proxy, "cust-w")
        assert status == 422 and body["error"]["type"] == "insufficient_credits", body
        lago.wallets.webhook_url, lago.wallets.webhook_algorithm = proxy.url + "/lago/webhooks", algorithm
        shared_key()  # Lago's signing key exists before any webhook (the fake makes it on first use)
        started = time.monotonic()
        top_up(lago, wid, granted_credits="1.0")
        while call(proxy, "cust-w")[0] != 200:
            assert time.monotonic() - started < 2.0, ("not unblocked within 2 s", lago.wallets.webhooks_sent)
            time.sleep(0.02)
        assert {w["status"] for w in lago.wallets.wait_webhooks()} == {200}


def test_with_webhooks_off_the_poll_unblocks_within_its_interval(upstream: FakeOpenAI, lago: FakeLago) -> None:
    wid = wallet(lago, "cust-p", granted=str(HOLD_OVER))
    with Proxy(credit_config(upstream, poll=1), lago_env(lago, "end_user_id")) as proxy:
        assert call(proxy, "cust-p")[0] == 422
        top_up(lago, wid, granted_credits="1.0")
        started = time.monotonic()
        while call(proxy, "cust-p")[0] != 200:
            assert time.monotonic() - started < 1.0 + 0.5, "not unblocked within the poll interval"
            time.sleep(0.05)


def test_a_forged_webhook_changes_nothing(upstream: FakeOpenAI, lago: FakeLago) -> None:
    wid = wallet(lago, "cust-f", granted=str(HOLD_OVER))
    with Proxy(credit_config(upstream), lago_env(lago, "end_user_id")) as proxy:
        assert call(proxy, "cust-f")[0] == 422
        top_up(lago, wid, granted_credits="1.0")  # no webhook is sent: the proxy cannot know yet
        payload = json.dumps({"webhook_type": "wallet.updated", "object_type": "wallet",
                              "wallet": {"external_customer_id": "cust-f", "lago_id": wid}}).encode()
        reads = len([r for r in lago.requests if r.path == "/api/v1/wallets"])
        other = json.dumps({"webhook_type": "wallet.created", "object_type": "wallet"}).encode()
        forgeries = [
            {"X-Lago-Signature": "AAAA", "X-Lago-Signature-Algorithm": "hmac"},
            {"X-Lago-Signature": lago.wallets.sign(payload, "jwt").replace(".", ".x", 1)},  # tampered claims
            {"X-Lago-Signature": lago.wallets.sign(other, "jwt")},  # genuine, for another body
            {"X-Lago-Signature": lago.wallets.sign(payload, "hmac"), "X-Lago-Signature-Algorithm": "none"},
            {},
        ]
        for headers in forgeries:
            status, body, _ = proxy.request("POST", "/lago/webhooks", raw=payload, headers=headers)
            assert status == 401 and body["error"]["type"] == "auth_error", (headers, body)
        assert len([r for r in lago.requests if r.path == "/api/v1/wallets"]) == reads  # nothing re-read
        assert call(proxy, "cust-f")[0] == 422  # still refused
        status, _, _ = proxy.request("POST", "/lago/webhooks", raw=payload, headers={
            "X-Lago-Signature": lago.wallets.sign(payload, "hmac"), "X-Lago-Signature-Algorithm": "hmac"})
        assert status == 200
        assert call(proxy, "cust-f")[0] == 200


def test_credits_off_for_one_customer_and_on_by_tier(upstream: FakeOpenAI, lago: FakeLago) -> None:
    """Opt-in per customer or tier: `credits: off` exempts a customer under a `lago` default, and a
    tier's `credits: lago` gates its customers when the default is off."""
    cfg = credit_config(upstream)
    cfg["general_settings"]["credits"] = "off"
    with Proxy(cfg, lago_env(lago, "end_user_id")) as proxy:
        assert call(proxy, "free")[0] == 200  # the default: off, no wallet needed
        status, body, _ = proxy.request("POST", "/budget/new", {"budget_id": "prepaid", "credits": "lago"}, MASTER)
        assert status == 200, body
        status, body, _ = proxy.request("POST", "/customer/new", {"user_id": "tiered", "budget_id": "prepaid"}, MASTER)
        assert status == 200, body
        status, body = call(proxy, "tiered")  # no wallet in Lago: no credits
        assert status == 422 and body["error"]["type"] == "insufficient_credits", body
        status, body, _ = proxy.request("POST", "/customer/update", {"user_id": "tiered", "credits": "off"}, MASTER)
        assert status == 200, body
        assert call(proxy, "tiered")[0] == 200


def test_a_team_billed_by_team_id_pays_from_its_own_wallet(upstream: FakeOpenAI, lago: FakeLago) -> None:
    """LAGO_API_CHARGE_BY=team_id: the team's wallets are the limit, opted in on the team itself."""
    cfg = credit_config(upstream)
    cfg["general_settings"]["credits"] = "off"
    wallet(lago, "team-prepaid", granted=str(HOLD_OVER))
    with Proxy(cfg, lago_env(lago, "team_id")) as proxy:
        status, body, _ = proxy.request("POST", "/team/new", {"team_id": "team-prepaid", "credits": "lago"}, MASTER)
        assert status == 200, body
        status, body, _ = proxy.request("POST", "/key/generate", {"team_id": "team-prepaid"}, MASTER)
        assert status == 200, body
        key = body["key"]
        status, body, _ = proxy.request("POST", "/chat/completions", chat("anyone"), key)
        assert status == 422 and body["error"]["type"] == "insufficient_credits", body
        assert call(proxy, "anyone")[0] == 200  # the master key has no team: nothing to charge credits to


def test_credits_asked_for_without_lago_fail_closed(upstream: FakeOpenAI) -> None:
    """A customer set to `credits: lago` on a proxy billing to a file (no LAGO_API_BASE) is refused,
    not served unmetered; others are served."""
    cfg = credit_config(upstream)
    cfg["general_settings"]["credits"] = "off"
    with Proxy(cfg) as proxy:  # no LAGO_* settings: events go to a file
        status, body, _ = proxy.request("POST", "/customer/new", {"user_id": "prepaid", "credits": "lago"}, MASTER)
        assert status == 200, body
        status, body = call(proxy, "prepaid")
        assert status == 503 and body["error"]["type"] == "credits_unavailable", body
        assert call(proxy, "postpaid")[0] == 200
