"""The credit gate (proxy/credits/gate.py) against the fake Lago's wallets over HTTP: what it holds,
refuses and re-reads, with an injected clock for freshness."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from llmbill.proxy.credits.gate import CreditGate, CreditHold
from llmbill.proxy.credits.reader import WalletReader
from llmbill.proxy.credits.settings import CreditSettings, parse
from llmbill.proxy.errors import ProxyError
from tests.python.fakes.lago import FakeLago
from tests.python.lago_wallet_support import lago_api, top_up, wallet


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_gate(lago: FakeLago, clock: Clock | None = None, **settings: Any) -> CreditGate:
    return CreditGate(CreditSettings(default="lago", **settings), WalletReader(lago.url, lago.api_key, timeout=5),
                      "openai_tokens", "end_user_id", clock=clock or Clock())


def available(gate: CreditGate, payer: str) -> Decimal:
    return Decimal(asyncio.run(gate.info(payer))["available"])


def hold(gate: CreditGate, payer: str, amount: str, status: int = 429) -> CreditHold:
    return asyncio.run(gate.hold(payer, Decimal(amount), status))


def test_granted_credits_settle_at_once_paid_ones_only_when_their_invoice_is_paid(lago: FakeLago) -> None:
    wid = wallet(lago, "c1", granted="1.0")
    gate = make_gate(lago)
    asyncio.run(gate.ensure("c1"))
    assert available(gate, "c1") == Decimal("1.00")
    [paid] = top_up(lago, wid, paid_credits="5")
    assert paid["status"] == "pending"
    asyncio.run(gate.refresh("c1"))
    assert available(gate, "c1") == Decimal("1.00")  # pending credits pay nothing yet
    status, _ = lago_api(lago, "PUT", f"/api/v1/invoices/{paid['lago_invoice_id']}",
                         {"invoice": {"payment_status": "succeeded"}})
    assert status == 200
    asyncio.run(gate.refresh("c1"))
    assert available(gate, "c1") == Decimal("6.00")


def test_only_wallets_that_may_pay_the_metric_in_the_currency_count(lago: FakeLago) -> None:
    wallet(lago, "c2", granted="1.0", priority=1)
    wallet(lago, "c2", granted="2.0", code="llm-only", applies_to={"billable_metric_codes": ["openai_tokens"]})
    wallet(lago, "c2", granted="4.0", code="subs", applies_to={"fee_types": ["subscription"]})
    wallet(lago, "c2", granted="8.0", code="other", applies_to={"billable_metric_codes": ["seats"]})
    gone = wallet(lago, "c2", granted="16.0", code="gone")
    lago_api(lago, "DELETE", f"/api/v1/wallets/{gone}")
    gate = make_gate(lago)
    asyncio.run(gate.ensure("c2"))
    assert available(gate, "c2") == Decimal("3.00")


def test_the_gate_never_reads_the_ongoing_balance(lago: FakeLago) -> None:
    """Lago's ongoing_* fields are stale or float-derived; refreshing them must change nothing."""
    wallet(lago, "c3", granted="1.0")
    gate = make_gate(lago)
    asyncio.run(gate.ensure("c3"))
    taken = hold(gate, "c3", "0.4", 429)
    taken.settle(Decimal("0.3"))
    lago.wallets.refresh_ongoing("c3")  # no usage reached Lago: ongoing would say 1.00
    asyncio.run(gate.refresh("c3"))
    assert available(gate, "c3") == Decimal("0.70")


def test_hold_refuses_when_available_is_below_the_bound_and_settle_returns_the_rest(lago: FakeLago) -> None:
    wallet(lago, "c4", granted="1.0")
    gate = make_gate(lago)
    asyncio.run(gate.ensure("c4"))
    first = hold(gate, "c4", "0.6", 402)
    with pytest.raises(ProxyError) as refused:
        hold(gate, "c4", "0.5", 402)
    assert refused.value.status == 402 and refused.value.type == "insufficient_credits"
    assert "0.4 USD of credits available" in refused.value.message
    first.settle(Decimal("0.1"))
    first.release()  # after settling: a no-op
    assert available(gate, "c4") == Decimal("0.90")
    hold(gate, "c4", "0.5", 402).release()  # a failed call's hold comes back whole
    assert available(gate, "c4") == Decimal("0.90")


def test_lago_unreachable_keeps_gating_on_the_last_balance_then_fails_closed(lago: FakeLago) -> None:
    clock = Clock()
    wallet(lago, "c5", granted="1.0")
    gate = make_gate(lago, clock, max_age_s=60)
    asyncio.run(gate.ensure("c5"))
    hold(gate, "c5", "0.3", 429).settle(Decimal("0.3"))
    lago.set_down("refuse")
    clock.now += 30
    assert asyncio.run(gate.refresh("c5")) is False
    assert available(gate, "c5") == Decimal("0.70")  # last known balance minus local usage
    hold(gate, "c5", "0.1", 429).release()
    clock.now += 31
    with pytest.raises(ProxyError) as stale:
        hold(gate, "c5", "0.1", 429)
    assert stale.value.status == 503 and stale.value.type == "credits_unavailable"


def _sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_stale_balances_and_refusals_are_on_metrics(lago: FakeLago) -> None:
    """/metrics: the oldest balance's age and how many balances are too old to gate (brought up to
    date every second, not only at the poll, which may be what keeps failing), and refusals by reason."""
    clock = Clock()
    wallet(lago, "m1", granted="0.10")
    wallet(lago, "m2", granted="0.10")
    gate = make_gate(lago, clock, max_age_s=60)
    asyncio.run(gate.ensure("m1"))
    clock.now += 50
    asyncio.run(gate.ensure("m2"))
    gate.report_age()
    assert _sample("llmbill_credit_balance_age_seconds") == 50
    assert _sample("llmbill_credit_stale_balances") == 0
    insufficient = _sample("llmbill_credit_refusals_total", reason="insufficient")
    with pytest.raises(ProxyError):
        hold(gate, "m2", "0.50")
    assert _sample("llmbill_credit_refusals_total", reason="insufficient") == insufficient + 1
    clock.now += 11  # m1's balance is 61 s old now, past max_age
    gate.report_age()
    assert (_sample("llmbill_credit_balance_age_seconds"), _sample("llmbill_credit_stale_balances")) == (61, 1)
    stale = _sample("llmbill_credit_refusals_total", reason="stale")
    with pytest.raises(ProxyError) as refused:
        hold(gate, "m1", "0.01")
    assert refused.value.type == "credits_unavailable"
    assert _sample("llmbill_credit_refusals_total", reason="stale") == stale + 1
    asyncio.run(gate.refresh("m1"))
    gate.report_age()
    assert (_sample("llmbill_credit_balance_age_seconds"), _sample("llmbill_credit_stale_balances")) == (11, 0)


def test_an_unknown_customer_has_no_credits(lago: FakeLago) -> None:
    gate = make_gate(lago)
    asyncio.run(gate.ensure("nobody"))
    with pytest.raises(ProxyError) as refused:
        hold(gate, "nobody", "0.01", 429)
    assert refused.value.type == "insufficient_credits"


def test_an_invoice_applying_credits_is_not_counted_twice(lago: FakeLago) -> None:
    wallet(lago, "c6", granted="1.0")
    gate = make_gate(lago)
    asyncio.run(gate.ensure("c6"))
    hold(gate, "c6", "0.5", 429).settle(Decimal("0.25"))
    status, _ = lago_api(lago, "POST", "/api/v1/events", {"event": {  # the call's event reaches Lago
        "transaction_id": "t1", "external_subscription_id": "c6", "code": "openai_tokens",
        "timestamp": 1786000000, "properties": {"response_cost": "0.25"}}})
    assert status == 200
    assert lago.wallets.invoice("c6") == 25
    asyncio.run(gate.refresh("c6"))
    info = asyncio.run(gate.info("c6"))
    assert (info["lago_balance"], info["settled_not_invoiced"], info["available"]) == (
        Decimal("0.75"), Decimal(0), Decimal("0.75"))


def test_settings_parse_and_refuse_bad_values() -> None:
    s = parse("lago", {"poll_interval_seconds": 2, "max_age_seconds": 10, "refused_status_code": 402})
    assert (s.default, s.poll_interval_s, s.max_age_s, s.refused_status) == ("lago", 2.0, 10.0, 402)
    from llmbill.billing import ConfigError
    for mode, raw in (("maybe", {}), ("lago", {"poll_interval_seconds": 0}), ("lago", {"refused_status_code": 200})):
        with pytest.raises(ConfigError):
            parse(mode, raw)
