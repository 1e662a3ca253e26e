"""margin.py: LiteLLM's cost_margin_config / cost_discount_config shapes, precedence, exactness."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

import pytest

from llmbill.margin import Margin, MarginError, MarginRules

if TYPE_CHECKING:
    from tests.python.fakes.lago import FakeLago
    from tests.python.fakes.openai_upstream import FakeOpenAI


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


@pytest.mark.parametrize("margins, discounts", [(None, None), ({"global": 0.05}, None), ({"openai": 0.1}, None),
                                                 (None, {"openai": 0.05}), (None, {"vertex_ai": 0.05})])
@pytest.mark.parametrize("own", [None, Margin(Decimal("0.2"))])
def test_applies_is_known_before_the_cost_and_agrees_with_billed(margins: object, discounts: object,
                                                                 own: Margin | None) -> None:
    """settle.py bills a call at cost in one step with the core when applies() says no margin."""
    rules = MarginRules.parse(margins, discounts)
    for provider in ("openai", "anthropic", "vertex_ai"):
        for customer, tier in ((own, None), (None, own)):
            billed = rules.billed(Decimal("0.5"), provider, customer=customer, tier=tier)
            assert rules.applies(provider, customer, tier) == (billed is not None)


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


# -- end to end: the ledger check with margins -----------------------------------------------------------

def test_billed_amounts_in_spend_lago_and_its_invoice_agree_to_the_cent(upstream: "FakeOpenAI",
                                                                        lago: "FakeLago") -> None:
    from tests.python.proxy_harness import Proxy
    from tests.python.test_ops_e2e import chat, reconcile_json
    from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env
    from tests.python.test_subscription_watch import add_plan, subscribe

    add_plan(lago, "llm_billed", "billed_amount", "1")  # the README's plan: Σ billed_amount at 1 USD per unit
    cfg = config(upstream, None)
    cfg["litellm_settings"]["cost_margin_config"] = {"global": 0.1, "openai": {"percentage": 0.15, "fixed_amount": 0.3}}
    env = {**lago_env(lago, "end_user_id"), "LAGO_API_EVENT_CODE": "llm_billed"}
    with Proxy(cfg, env) as proxy:
        for ident in ("plain", "vip"):
            subscribe(lago, ident)
        status, body, _ = proxy.request("POST", "/customer/new", {"user_id": "vip", "margin_percent": 33.3,
                                                                  "margin_fixed": "0.05"}, MASTER)
        assert status == 200, body
        for ident in ("plain", "vip", "plain", "vip", "vip"):
            assert proxy.request("POST", "/chat/completions", chat(ident), MASTER)[0] == 200
        events = lago.wait_for(5)
        # openai entry (not global): 0.000026 × 1.15 + 0.3; the customer's own margin beats it
        plain, vip = CUSTOM_COST * Decimal("1.15") + Decimal("0.3"), CUSTOM_COST * Decimal("1.333") + Decimal("0.05")
        by_customer: dict[str, list[Decimal]] = {}
        for event in events:
            assert Decimal(event["properties"]["response_cost"]) == CUSTOM_COST  # the provider's cost, unchanged
            by_customer.setdefault(event["external_subscription_id"], []).append(
                Decimal(event["properties"]["billed_amount"]))
        assert by_customer == {"plain": [plain] * 2, "vip": [vip] * 3}
        status, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
        assert status == 200
        settled = sum((Decimal(str(row["spend"])) for row in logs), Decimal(0))
        assert settled == sum((Decimal(e["properties"]["billed_amount"]) for e in events), Decimal(0))
        info = proxy.request("GET", "/customer/info?end_user_id=vip", None, MASTER)[1]
        assert Decimal(str(info["spend"])) == 3 * vip and Decimal(str(info["margin_percent"])) == Decimal("33.3")
        for ident, amounts in by_customer.items():
            status, usage = lago.billing.current_usage(ident, {"external_subscription_id": ident})
            assert status == 200
            # Lago's invoice is llmbill's figure to the cent
            want = sum(amounts, Decimal(0)).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert usage["customer_usage"]["amount_cents"] == int(want * 100)
        rc, report = reconcile_json(proxy)
        assert rc == 0 and report["totals"]["proxy"]["billed"] == report["totals"]["lago"]["billed"]
        assert Decimal(report["totals"]["lago"]["billed"]) == settled


def test_a_customers_budget_counts_what_it_pays(upstream: "FakeOpenAI") -> None:
    from tests.python.proxy_harness import Proxy
    from tests.python.test_ops_e2e import chat
    from tests.python.test_proxy_e2e import MASTER, config

    with Proxy(config(upstream, None)) as proxy:
        # 0.000026 at cost; with a 1 USD fee per call the first call spends the whole budget
        status, body, _ = proxy.request("POST", "/customer/new", {"user_id": "c", "max_budget": 0.5,
                                                                  "margin_fixed": 1}, MASTER)
        assert status == 200, body
        assert proxy.request("POST", "/chat/completions", chat("c"), MASTER)[0] == 200
        assert Decimal(str(proxy.request("GET", "/customer/info?end_user_id=c", None, MASTER)[1]["spend"])) == \
            Decimal("1.000026")
        status, body, _ = proxy.request("POST", "/chat/completions", chat("c"), MASTER)
        assert status != 200 and "budget" in json.dumps(body).lower()


def test_config_reads_both_settings_and_names_a_bad_one() -> None:
    from llmbill.billing import ConfigError
    from llmbill.proxy.config import load_config_dict

    cfg = load_config_dict({"litellm_settings": {"cost_margin_config": {"global": 0.05},
                                                 "cost_discount_config": {"openai": 0.02}}})
    assert cfg.margins.billed(Decimal("1"), "openai") == Decimal("1.029")  # 0.98 × 1.05
    assert not any("cost_margin_config" in w for w in cfg.warnings)
    with pytest.raises(ConfigError, match=r"litellm_settings\.cost_margin_config\.openai\.fixed_amount"):
        load_config_dict({"litellm_settings": {"cost_margin_config": {"openai": {"fixed_amount": "x"}}}})


def test_event_carries_billed_amount_only_with_a_margin_and_reconcile_rebuilds_it() -> None:
    from datetime import datetime, timezone

    from llmbill import _core as core
    from llmbill.billing import LagoSettings
    from llmbill.lago.reconcile_run import expected_events
    from llmbill.proxy.store.base import SpendLog

    usage = core.Usage(prompt_tokens=12, completion_tokens=7)
    common = dict(call_id="c1", timestamp_ms=1_786_000_000_000, model="m", usage=usage, cost=Decimal("0.000026"),
                  codes=["llm"], end_user_id="cust")
    (plain,), _ = core.build_lago_events(**common)  # type: ignore[arg-type]
    (with_margin,), _ = core.build_lago_events(**common, billed_amount=Decimal("0.3000299"))  # type: ignore[arg-type]
    assert "billed_amount" not in plain
    assert with_margin == plain.replace('"response_cost":"0.000026"',
                                        '"response_cost":"0.000026","billed_amount":"0.3000299"')
    start = datetime.fromtimestamp(1_786_000_000, timezone.utc)
    row = SpendLog(request_id="c1", call_type="acompletion", model="m", api_key="", user="", team_id="",
                   end_user="cust", spend=Decimal("0.3000299"), prompt_tokens=12, completion_tokens=7,
                   cached_tokens=0, reasoning_tokens=0, start_time=start, end_time=start, status="success",
                   metadata={"response_cost": "0.000026"}, response_id="")
    settings = LagoSettings.from_env({"LAGO_API_EVENT_CODE": "llm"})
    (expected,), _ = expected_events([row], settings)
    assert expected.event_json == with_margin
