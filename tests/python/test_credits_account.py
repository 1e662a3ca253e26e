"""One payer's credits, exactly (proxy/credits/wallets.py, account.py): the settled balance from
`balance_cents`, applicable wallets only, usage Lago has not applied, holds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from llmbill.proxy.credits.account import Account
from llmbill.proxy.credits.holds import LocalHolds
from llmbill.proxy.credits.wallets import Wallet, WalletFormatError


def wallet(lago_id: str = "w1", **over: Any) -> Wallet:
    raw = {"lago_id": lago_id, "code": lago_id, "status": "active", "currency": "USD", "rate_amount": "1.0",
           "balance_cents": 100, "credits_balance": "1.0", "consumed_credits": "0.0", "priority": 50,
           # The float-derived fields are deliberately wrong: nothing may read them.
           "ongoing_balance_cents": 999999, "credits_ongoing_balance": "9999.99", **over}
    return Wallet.from_api(raw)


def test_balance_is_balance_cents_exactly_in_the_currency_exponent() -> None:
    assert wallet(balance_cents=12345).balance() == Decimal("123.45")
    assert wallet(currency="JPY", balance_cents=500).balance() == Decimal(500)
    assert wallet(currency="KWD", balance_cents=1234).balance() == Decimal("1.234")


def test_consumed_credits_become_money_at_the_rate_rounded_half_up() -> None:
    assert wallet(rate_amount="5", consumed_credits="0.00101").consumed() == Decimal("0.01")
    assert wallet(rate_amount="0.5", consumed_credits="3").consumed() == Decimal("1.50")


def test_a_wallet_pays_only_active_in_its_currency_and_within_applies_to() -> None:
    assert wallet().pays("llm", "usd")
    assert not wallet(status="terminated").pays("llm", "USD")
    assert not wallet(currency="EUR").pays("llm", "USD")
    assert wallet(applies_to={"billable_metric_codes": ["llm"]}).pays("llm", "USD")
    assert not wallet(applies_to={"billable_metric_codes": ["other"]}).pays("llm", "USD")
    assert wallet(applies_to={"fee_types": ["charge"]}).pays("llm", "USD")
    assert not wallet(applies_to={"fee_types": ["subscription"]}).pays("llm", "USD")


def test_a_wallet_with_a_float_balance_is_refused_not_guessed() -> None:
    with pytest.raises(WalletFormatError):
        wallet(balance_cents=1.5)
    with pytest.raises(WalletFormatError):
        wallet(rate_amount="abc")


def test_available_is_applicable_balance_minus_unapplied_usage_minus_holds() -> None:
    account = Account("c")
    account.update((wallet("a", balance_cents=100), wallet("b", balance_cents=50, priority=1),
                    wallet("eur", currency="EUR", balance_cents=1000),
                    wallet("other", applies_to={"billable_metric_codes": ["x"]}, balance_cents=700)),
                   now=0.0, metric="llm", currency="USD")
    assert account.balance("llm", "USD") == Decimal("1.50")
    account.settled += Decimal("0.40")
    assert account.available("llm", "USD", held=Decimal("0.25")) == Decimal("0.85")


def test_an_invoice_applying_credits_moves_usage_from_unapplied_into_the_balance() -> None:
    account = Account("c")
    account.update((wallet("a", balance_cents=100, consumed_credits="2"),), now=0.0, metric="llm", currency="USD")
    account.settled += Decimal("0.30")
    assert account.available("llm", "USD", Decimal(0)) == Decimal("0.70")
    # Lago invoices the 0.30: the balance drops and consumed_credits grows by the same amount.
    account.update((wallet("a", balance_cents=70, consumed_credits="2.3"),), now=1.0, metric="llm", currency="USD")
    assert account.unapplied() == 0
    assert account.available("llm", "USD", Decimal(0)) == Decimal("0.70")  # not counted twice


def test_local_holds_sum_per_payer_and_drop_once() -> None:
    holds = LocalHolds()
    a, b = holds.take("p", Decimal("0.5")), holds.take("p", Decimal("0.25"))
    holds.take("q", Decimal(1))
    assert holds.held("p") == Decimal("0.75")
    assert holds.drop(a) == Decimal("0.5") and holds.drop(a) == 0
    holds.drop(b)
    assert holds.held("p") == 0 and "p" not in holds._totals


def test_what_an_invoice_applied_beyond_our_usage_never_lets_later_usage_through() -> None:
    """A subscription fee (or taxes) paid from the wallet is not our usage: it must not be taken from
    usage settled later."""
    account = Account("c")
    account.update((wallet("a", balance_cents=1000),), now=0.0, metric="llm", currency="USD")
    account.settled += Decimal("0.30")
    # The invoice applies our 0.30 and a 5.00 subscription fee.
    account.update((wallet("a", balance_cents=470, consumed_credits="5.3"),), now=1.0, metric="llm", currency="USD")
    assert account.unapplied() == 0
    account.settled += Decimal("0.40")
    assert account.available("llm", "USD", Decimal(0)) == Decimal("4.30")


def test_what_a_wallet_paying_other_fees_consumed_is_not_our_usage_applied() -> None:
    seats = {"applies_to": {"billable_metric_codes": ["seats"]}}
    account = Account("c")
    account.update((wallet("a"), wallet("s", balance_cents=500, **seats)), now=0.0, metric="llm", currency="USD")
    account.settled += Decimal("0.30")
    account.update((wallet("a"), wallet("s", balance_cents=200, consumed_credits="3", **seats),
                    wallet("eur", currency="EUR", consumed_credits="9")), now=1.0, metric="llm", currency="USD")
    assert account.unapplied() == Decimal("0.30")
    assert account.available("llm", "USD", Decimal(0)) == Decimal("0.70")


def test_the_seed_starts_the_tally_at_the_first_read_only() -> None:
    account = Account("c")
    account.update((wallet("a"),), now=0.0, metric="llm", currency="USD", seed=Decimal("0.25"))
    account.settled += Decimal("0.10")
    account.update((wallet("a"),), now=1.0, metric="llm", currency="USD", seed=Decimal("0.5"))
    assert account.unapplied() == Decimal("0.35") and account.seed == Decimal("0.5")
