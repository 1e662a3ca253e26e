"""Where a payer's unapplied usage starts (proxy/credits/seed.py, reader.current_usage): Lago's
current_usage of our metric, read after the spool has delivered what it holds, against the fake
Lago's strict current_usage."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmbill.lago.reader import LagoReadError
from llmbill.proxy.credits.gate import CreditGate
from llmbill.proxy.credits.reader import WalletReader
from llmbill.proxy.credits.seed import Seeder
from llmbill.proxy.credits.settings import CreditSettings
from tests.python.fakes.lago import FakeLago
from tests.python.lago_wallet_support import lago_api, wallet

METRIC = "openai_tokens"


def subscribe(lago: FakeLago, customer: str, metric: str = METRIC, currency: str = "USD") -> None:
    """A subscription (external_id = the customer id, as llmbill bills) to a plan charging the metric
    one currency unit per unit: the README's plan when the metric sums `billed_amount`."""
    plan = f"plan-{metric}-{currency}"
    if plan not in lago.billing.plans:
        status, body = lago_api(lago, "POST", "/api/v1/plans", {"plan": {
            "name": plan, "code": plan, "interval": "monthly", "amount_cents": 0, "amount_currency": currency,
            "charges": [{"billable_metric_id": lago.billing.metrics[metric]["lago_id"], "charge_model": "standard",
                         "properties": {"amount": "1"}}]}})
        assert status == 200, body
    started = datetime.now(timezone.utc) - timedelta(minutes=5)  # calls of this second are in its period
    status, body = lago_api(lago, "POST", "/api/v1/subscriptions", {"subscription": {
        "external_customer_id": customer, "plan_code": plan, "external_id": customer,
        "subscription_at": started.strftime("%Y-%m-%dT%H:%M:%SZ")}})
    assert status == 200, body


def send(lago: FakeLago, customer: str, code: str = METRIC, **properties: Any) -> None:
    status, body = lago_api(lago, "POST", "/api/v1/events", {"event": {
        "transaction_id": uuid.uuid4().hex, "external_subscription_id": customer, "code": code,
        "timestamp": int(time.time()), "properties": properties}})
    assert status == 200, body


@pytest.fixture
def money_lago() -> Any:
    """A fake Lago whose metric sums billed_amount (the README's plan) beside one summing seats."""
    with FakeLago(api_key="lago-key") as lago:
        lago.add_metric(METRIC, "billed_amount")
        lago.add_metric("seats", "seats")
        yield lago


def reader(lago: FakeLago) -> WalletReader:
    return WalletReader(lago.url, lago.api_key, timeout=5)


def test_current_usage_is_the_period_s_usage_of_our_metric_in_lago_s_money(money_lago: FakeLago) -> None:
    wallet(money_lago, "cu", granted="5")
    subscribe(money_lago, "cu")
    for amount in ("0.0345", "0.0210", "0.0100"):
        send(money_lago, "cu", billed_amount=amount)
    send(money_lago, "cu", code="seats", seats="40")  # another metric: not our usage
    # Σ 0.0655 priced as Lago prices it: one fee, rounded half up to the cent (0.07), plus the half
    # cent that rounding may have taken off: never less than the usage
    assert reader(money_lago).current_usage("cu", METRIC, "USD") == Decimal("0.075")


def test_no_customer_no_subscription_or_another_currency_is_no_usage(money_lago: FakeLago) -> None:
    r = reader(money_lago)
    assert r.current_usage("nobody", METRIC, "USD") == 0  # 404 customer_not_found
    wallet(money_lago, "unsubscribed", granted="1")
    send(money_lago, "unsubscribed", billed_amount="0.5")  # Lago takes it and never bills it
    assert r.current_usage("unsubscribed", METRIC, "USD") == 0  # 405 no_active_subscription
    lago_api(money_lago, "POST", "/api/v1/customers", {"customer": {"external_id": "eur", "currency": "EUR"}})
    subscribe(money_lago, "eur", currency="EUR")
    send(money_lago, "eur", billed_amount="3")
    assert r.current_usage("eur", METRIC, "USD") == 0  # our wallets never pay a EUR fee


def test_lago_unreachable_is_an_error_never_zero_usage(money_lago: FakeLago) -> None:
    money_lago.set_down("refuse")
    try:
        with pytest.raises(LagoReadError):
            reader(money_lago).current_usage("cu", METRIC, "USD")
    finally:
        money_lago.set_down(False)


def test_the_fake_refuses_usage_filters_it_does_not_compute(money_lago: FakeLago) -> None:
    wallet(money_lago, "cf", granted="1")
    subscribe(money_lago, "cf")
    status, body = lago_api(money_lago, "GET", "/api/v1/customers/cf/current_usage?external_subscription_id=cf"
                                               "&billable_metric_code=seats")
    assert status == 501 and body["code"] == "fake_lago_unsupported", body
    status, body = lago_api(money_lago, "GET", "/api/v1/customers/cf/current_usage?external_subscription_id=cf"
                                               "&apply_taxes=false")
    assert status == 200 and body["customer_usage"]["charges_usage"][0]["charge"]["code"] is None, body


class Drain:
    def __init__(self, ok: bool = True) -> None:
        self.ok, self.calls = ok, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.ok


def test_the_spool_is_drained_before_the_first_seed_and_again_for_a_reseed(money_lago: FakeLago) -> None:
    drain = Drain()
    seeder = Seeder(reader(money_lago), METRIC, "USD", drain)

    async def run() -> None:
        await asyncio.gather(*(seeder.usage("a") for _ in range(5)))
        assert drain.calls == 1  # the recovered backlog: once, however many payers ask at once
        await seeder.usage("b")
        assert drain.calls == 1
        await seeder.usage("a", again=True)
        assert drain.calls == 2
    asyncio.run(run())


def test_a_spool_that_cannot_deliver_keeps_the_credits_closed(money_lago: FakeLago) -> None:
    seeder = Seeder(reader(money_lago), METRIC, "USD", Drain(ok=False))
    with pytest.raises(LagoReadError, match="spool"):
        asyncio.run(seeder.usage("a"))
    gate = CreditGate(CreditSettings(default="lago"), reader(money_lago), METRIC, "end_user_id", seeder=seeder)
    wallet(money_lago, "closed", granted="1")
    asyncio.run(gate.ensure("closed"))
    assert gate.account("closed").read_at is None  # never read: every call is refused 503 until it is


def test_the_first_read_counts_usage_lago_has_not_invoiced(money_lago: FakeLago) -> None:
    """A proxy that starts knows nothing of earlier calls, but Lago does: they are not available."""
    wallet(money_lago, "seeded", granted="1")
    subscribe(money_lago, "seeded")
    send(money_lago, "seeded", billed_amount="0.25", response_cost="0.25")  # the fake invoices response_cost
    gate = CreditGate(CreditSettings(default="lago"), reader(money_lago), METRIC, "end_user_id")
    asyncio.run(gate.ensure("seeded"))
    info = asyncio.run(gate.info("seeded"))
    assert (info["lago_balance"], info["settled_not_invoiced"], info["available"]) == (
        Decimal("1.00"), Decimal("0.255"), Decimal("0.745"))
    assert money_lago.wallets.invoice("seeded", metric=METRIC) == 25  # Lago applies it: the balance drops
    asyncio.run(gate.refresh("seeded"))
    info = asyncio.run(gate.info("seeded"))
    assert (info["lago_balance"], info["settled_not_invoiced"], info["available"]) == (
        Decimal("0.75"), Decimal("0.005"), Decimal("0.745"))
