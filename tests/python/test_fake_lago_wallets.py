"""The fake Lago's wallets (fakes/lago_wallets.py) hold to Lago's contract (lago-wallets.md): what
changes a balance and what does not, the stale ongoing fields, priorities, signed webhooks."""

from __future__ import annotations

import base64

from llmbill.proxy.credits import rsa, signature
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.webhook import WebhookReceiver
from tests.python.lago_wallet_support import lago_api, top_up, wallet


def _event(lago: FakeLago, tx: str, customer: str, cost: str) -> None:
    status, _ = lago_api(lago, "POST", "/api/v1/events", {"event": {
        "transaction_id": tx, "external_subscription_id": customer, "code": "openai_tokens",
        "timestamp": 1786000000, "properties": {"response_cost": cost}}})
    assert status == 200


def _wallets(lago: FakeLago, customer: str) -> dict[str, dict[str, object]]:
    status, body = lago_api(lago, "GET", f"/api/v1/wallets?external_customer_id={customer}")
    assert status == 200
    return {w["code"]: w for w in body["wallets"]}


def test_usage_never_lowers_balance_cents_and_ongoing_refreshes_only_when_told(lago: FakeLago) -> None:
    wallet(lago, "f1", granted="1.0")
    _event(lago, "t1", "f1", "0.30")
    w = _wallets(lago, "f1")["default"]
    assert (w["balance_cents"], w["credits_balance"], w["ongoing_balance_cents"]) == (100, "1.0", 0)
    lago.wallets.refresh_ongoing("f1")
    w = _wallets(lago, "f1")["default"]
    assert (w["balance_cents"], w["ongoing_balance_cents"], w["ongoing_usage_balance_cents"]) == (100, 70, 30)


def test_invoice_applies_credits_by_priority_within_applies_to(lago: FakeLago) -> None:
    wallet(lago, "f2", granted="1.0", code="late", priority=50)
    wallet(lago, "f2", granted="0.20", code="first", priority=1)
    wallet(lago, "f2", granted="5.0", code="seats", priority=1, applies_to={"billable_metric_codes": ["seats"]})
    _event(lago, "t2", "f2", "0.50")
    assert lago.wallets.invoice("f2", metric="openai_tokens") == 50
    w = _wallets(lago, "f2")
    assert (w["first"]["balance_cents"], w["late"]["balance_cents"], w["seats"]["balance_cents"]) == (0, 70, 500)
    assert (w["first"]["consumed_credits"], w["late"]["consumed_credits"]) == ("0.2", "0.3")
    assert lago.wallets.invoice("f2") == 0  # each event is invoiced once


def test_api_errors_follow_lago(lago: FakeLago) -> None:
    assert lago_api(lago, "GET", "/api/v1/wallets?external_customer_id=nobody")[0] == 404
    status, body = lago_api(lago, "POST", "/api/v1/wallet_transactions",
                            {"wallet_transaction": {"wallet_id": "nope", "granted_credits": "1"}})
    assert status == 422 and body["error_details"] == {"wallet_id": ["wallet_not_found"]}
    wid = wallet(lago, "f3", granted="1.0")
    status, body = lago_api(lago, "POST", "/api/v1/wallet_transactions",
                            {"wallet_transaction": {"wallet_id": wid, "voided_credits": "2"}})
    assert status == 422 and body["error_details"] == {"voided_credits": ["insufficient_credits"]}
    status, body = lago_api(lago, "POST", "/api/v1/wallet_transactions",
                            {"wallet_transaction": {"wallet_id": wid, "granted_credits": "0.001"}})
    assert status == 422 and body["error_details"] == {"granted_credits": ["amount_rounds_to_zero"]}


def test_webhooks_are_signed_both_ways_over_the_exact_body(lago: FakeLago) -> None:
    wid = wallet(lago, "f4", granted="1.0")
    status, body = lago_api(lago, "GET", "/api/v1/webhooks/json_public_key")
    numbers = rsa.public_numbers(base64.b64decode(body["webhook"]["public_key"]))
    with WebhookReceiver() as hook:
        lago.wallets.webhook_url = hook.url
        for algorithm in ("jwt", "hmac"):
            lago.wallets.webhook_algorithm = algorithm
            top_up(lago, wid, granted_credits="1.0")
            lago.wallets.wait_webhooks()
        sent = hook.received
        assert [r.json["webhook_type"] for r in sent].count("wallet.updated") == 2
        for r in sent:
            how = r.headers["x-lago-signature-algorithm"]
            ok = (signature.jwt_ok(numbers, "http://fake-lago", r.body, r.headers["x-lago-signature"]) if how == "jwt"
                  else signature.hmac_ok("fake-hmac-key", r.body, r.headers["x-lago-signature"]))
            assert ok, (how, r.body)
