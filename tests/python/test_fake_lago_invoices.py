"""The fake Lago's invoices and wallet transaction listing (fakes/lago_invoices.py, lago_wallets.py)
hold to lago-api's shapes: a usage invoice priced by the subscription's plan, the wallets paying it
by priority as outbound `invoiced` transactions, GET /invoices without billing periods and GET
/invoices/:id with them, credit invoices of paid top-ups, Lago's 404s."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.python.fakes.lago import FakeLago
from tests.python.lago_wallet_support import lago_api, top_up, wallet

T0 = Decimal(1786000000)  # 2026-08-06T07:06:40Z


def plan(lago: FakeLago, code: str, field: str, amount: str, amount_cents: int = 0) -> None:
    """A monthly plan billing `amount` USD per unit of a sum of `field` (metric `code`)."""
    if code not in lago.billing.metrics:
        lago.add_metric(code, field)
    status, body = lago_api(lago, "POST", "/api/v1/plans", {"plan": {
        "name": code, "code": code, "interval": "monthly", "amount_cents": amount_cents, "amount_currency": "USD",
        "charges": [{"billable_metric_id": lago.billing.metrics[code]["lago_id"], "charge_model": "standard",
                     "properties": {"amount": amount}}]}})
    assert status == 200, body


def subscribe(lago: FakeLago, customer: str, plan_code: str) -> None:
    status, body = lago_api(lago, "POST", "/api/v1/subscriptions", {"subscription": {
        "external_customer_id": customer, "plan_code": plan_code, "external_id": customer,
        "subscription_at": "2026-01-01T00:00:00Z"}})
    assert status == 200, body


def event(lago: FakeLago, tx: str, customer: str, code: str, at: Decimal, **properties: Any) -> None:
    status, body = lago_api(lago, "POST", "/api/v1/events", {"event": {
        "transaction_id": tx, "external_subscription_id": customer, "code": code, "timestamp": str(at),
        "properties": properties}})
    assert status == 200, body


def test_a_usage_invoice_is_priced_by_the_plan_and_paid_by_the_wallets(lago: FakeLago) -> None:
    lago.now = T0
    plan(lago, "billed", "billed_amount", "1", amount_cents=10)  # + a 0.10 subscription fee
    first = wallet(lago, "c1", granted="0.25", code="first", priority=1)
    fees_only = wallet(lago, "c1", granted="5.0", code="fees", priority=2, applies_to={"fee_types": ["subscription"]})
    rest = wallet(lago, "c1", granted="5.0", code="rest")
    subscribe(lago, "c1", "billed")
    lago.now = T0 + 10
    event(lago, "e1", "c1", "billed", T0 + 1, billed_amount="0.304", response_cost="0.004")
    event(lago, "e2", "c1", "billed", T0 + 2, billed_amount="0.3", response_cost="0.1")
    event(lago, "late", "c1", "billed", T0 + 20, billed_amount="9")  # after the invoiced period's end
    # 0.604 → a 60 cent fee, + the 10 cent subscription fee; wallet by wallet, largest bucket first:
    # first 25 (charge), fees 10 (the subscription fee only), rest 35 (the charge's remainder)
    assert lago.wallets.invoice("c1") == 70

    status, listed = lago_api(lago, "GET", "/api/v1/invoices?external_customer_id=c1")
    assert status == 200 and listed["meta"]["total_count"] == 1
    (row,) = listed["invoices"]
    assert "billing_periods" not in row and "fees" not in row  # the index's includes
    assert (row["invoice_type"], row["status"], row["fees_amount_cents"], row["prepaid_credit_amount_cents"],
            row["total_amount_cents"], row["total_due_amount_cents"], row["payment_status"]) == (
        "subscription", "finalized", 70, 70, 0, 0, "succeeded")
    status, shown = lago_api(lago, "GET", f"/api/v1/invoices/{row['lago_id']}")
    assert status == 200
    (period,) = shown["invoice"]["billing_periods"]
    assert period["external_subscription_id"] == "c1"
    assert (period["charges_from_datetime"], period["charges_to_datetime"]) == ("2026-08-01T00:00:00Z",
                                                                                "2026-08-06T07:06:50Z")
    debits: dict[str, list[tuple[str, str]]] = {}
    for wid in (first, fees_only, rest):
        status, body = lago_api(lago, "GET", f"/api/v1/wallets/{wid}/wallet_transactions"
                                             "?transaction_type=outbound&transaction_status=invoiced")
        assert status == 200
        debits[wid] = [(tx["amount"], tx["lago_invoice_id"]) for tx in body["wallet_transactions"]]
        assert all(tx["status"] == "settled" for tx in body["wallet_transactions"])
    assert debits == {first: [("0.25", row["lago_id"])], fees_only: [("0.1", row["lago_id"])],
                      rest: [("0.35", row["lago_id"])]}


def test_paid_top_ups_are_credit_invoices_and_unknown_ids_are_404(lago: FakeLago) -> None:
    wid = wallet(lago, "c2")
    (paid,) = top_up(lago, wid, paid_credits="2.5")
    status, listed = lago_api(lago, "GET", "/api/v1/invoices?external_customer_id=c2")
    (credit,) = listed["invoices"]
    assert (credit["lago_id"], credit["invoice_type"], credit["fees_amount_cents"], credit["payment_status"]) == (
        paid["lago_invoice_id"], "credit", 250, "pending")
    assert lago_api(lago, "PUT", f"/api/v1/invoices/{credit['lago_id']}",
                    {"invoice": {"payment_status": "succeeded"}})[0] == 200
    status, shown = lago_api(lago, "GET", f"/api/v1/invoices/{credit['lago_id']}")
    assert (shown["invoice"]["payment_status"], shown["invoice"]["billing_periods"]) == ("succeeded", [])
    status, body = lago_api(lago, "GET", f"/api/v1/wallets/{wid}/wallet_transactions?transaction_type=inbound")
    assert [(tx["transaction_status"], tx["status"], tx["amount"]) for tx in body["wallet_transactions"]] == [
        ("purchased", "settled", "2.5")]
    assert lago_api(lago, "GET", "/api/v1/invoices/nope") == (
        404, {"status": 404, "error": "Not Found", "code": "invoice_not_found"})
    assert lago_api(lago, "GET", "/api/v1/wallets/nope/wallet_transactions")[1]["code"] == "wallet_not_found"
