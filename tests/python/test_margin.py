"""margin.py: LiteLLM's cost_margin_config / cost_discount_config shapes, precedence, exactness."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llmbill.margin import Margin, MarginError, MarginRules


def test_litellm_shapes_are_read_as_spelled() -> None:
    rules = MarginRules.parse({"global": 0.05, "openai": 0.10, "anthropic": {"fixed_amount": 0.001},
                               "bedrock": {"percentage": 0.08, "fixed_amount": 0.002}},
                              {"vertex_ai": 0.05})
    assert rules.margins["global"] == Margin(Decimal("0.05"))
    assert rules.margins["openai"] == Margin(Decimal("0.1"))
    assert rules.margins["anthropic"] == Margin(Decimal(0), Decimal("0.001"))
    assert rules.margins["bedrock"] == Margin(Decimal("0.08"), Decimal("0.002"))
    assert rules.discounts == {"vertex_ai": Decimal("0.05")}


def test_provider_entry_overrides_global_and_nothing_configured_is_none() -> None:
    rules = MarginRules.parse({"global": 0.05, "openai": 0.10}, None)
    assert rules.billed(Decimal("1"), "openai") == Decimal("1.1")
    assert rules.billed(Decimal("1"), "anthropic") == Decimal("1.05")
    assert MarginRules.parse(None, None).billed(Decimal("1"), "openai") is None
    assert MarginRules.parse({"openai": 0.1}, None).billed(Decimal("1"), "gemini") is None


def test_customer_beats_tier_beats_config() -> None:
    rules = MarginRules.parse({"global": 0.5}, None)
    tier = Margin.of_record({"margin_percent": Decimal(20)})
    customer = Margin.of_record({"margin_fixed": Decimal("0.01")})
    assert rules.billed(Decimal("1"), "openai", tier=tier) == Decimal("1.2")
    assert rules.billed(Decimal("1"), "openai", customer=customer, tier=tier) == Decimal("1.01")
    assert Margin.of_record({"budget_id": "t"}) is None  # no margin of its own: the next one applies


def test_discount_first_then_margin_and_fixed() -> None:
    rules = MarginRules.parse({"vertex_ai": {"percentage": 0.1, "fixed_amount": 0.001}}, {"vertex_ai": 0.05})
    # 2 × 0.95 × 1.1 + 0.001
    assert rules.billed(Decimal("2"), "vertex_ai") == Decimal("2.091")
    assert MarginRules.parse(None, {"vertex_ai": 0.05}).billed(Decimal("2"), "vertex_ai") == Decimal("1.9")


def test_exact_to_the_money_unit_half_even() -> None:
    rules = MarginRules.parse({"global": 0.15}, None)
    # 1e-19 × 1.15 = 1.15e-19 → 1e-19; 3e-19 × 1.15 = 3.45e-19 → 3e-19; 1e-18 × 1.15 → 1.15e-18 → 1.2e-18
    assert rules.billed(Decimal("1e-19"), "openai") == Decimal("1e-19")
    assert rules.billed(Decimal("3e-19"), "openai") == Decimal("3e-19")
    assert rules.billed(Decimal("1e-18"), "openai") == Decimal("1.2e-18")
    big = Decimal("123456.1234567890123456789")
    assert rules.billed(big, "openai") == (big * Decimal("1.15")).quantize(Decimal("1e-19"))


@pytest.mark.parametrize("margin, discount, message", [
    ({"openai": -0.1}, None, "cost_margin_config.openai: must be a non-negative"),
    ({"openai": "ten"}, None, "cost_margin_config.openai: expected a number"),
    ({"openai": {"percent": 0.1}}, None, "unknown key(s) percent"),
    ([0.1], None, "cost_margin_config: expected a mapping"),
    (None, {"openai": 1.5}, "a discount is a fraction"),
    (None, {"openai": True}, "expected a number, got bool"),
])
def test_bad_settings_name_the_key(margin: object, discount: object, message: str) -> None:
    with pytest.raises(MarginError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MarginRules.parse(margin, discount)
