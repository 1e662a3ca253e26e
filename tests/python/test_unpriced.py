"""A model without a price cannot slip past budgets: refused (403 model_unpriced, naming it) wherever
a budget applies and always under require_prices, or priced by an operator's explicit fallback."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from llmbill.billing import ConfigError
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.deployments import wildcard_price
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, lago_env


def config(upstream: FakeOpenAI, **general: Any) -> dict[str, Any]:
    params = {"api_base": upstream.url, "api_key": "k"}
    models = [{"model_name": "*", "litellm_params": {"model": "openai/*", **params}}]
    if not general.get("require_prices"):
        models.append({"model_name": "free-model", "litellm_params": {"model": "openai/no-such-model-xyz", **params}})
    return {"model_list": models, "litellm_settings": {"callbacks": ["lago"]},
            "general_settings": {"master_key": MASTER, **general}}


def call(proxy: Proxy, key: str, model: str, **extra: Any) -> tuple[int, Any, dict[str, str]]:
    return proxy.request("POST", "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}],
                                                       **extra}, key)


def test_unpriced_models_are_refused_where_a_budget_applies(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream), lago_env(lago, "end_user_id")) as proxy:
        assert "refused where a budget applies" in proxy.output  # said at start
        s, limited, _ = proxy.request("POST", "/key/generate", {"max_budget": "0.0001", "key_alias": "small"}, MASTER)
        s, free, _ = proxy.request("POST", "/key/generate", {}, MASTER)
        for _ in range(20):  # the 20 calls: none passes
            s, b, _ = call(proxy, limited["key"], "free-model")
            assert s == 403 and b["error"]["type"] == "model_unpriced" and b["error"]["param"] == "model", b
            assert "'free-model'" in b["error"]["message"] and "key small" in b["error"]["message"]
        s, b, _ = call(proxy, limited["key"], "some-model-the-table-lacks")  # through the wildcard
        assert s == 403 and "'some-model-the-table-lacks'" in b["error"]["message"]
        assert upstream.calls() == []
        s, b, h = call(proxy, limited["key"], "gpt-4o-mini")  # priced by the table: fine
        assert s == 200 and Decimal(h["x-litellm-response-cost"]) > 0
        s, b, h = call(proxy, free["key"], "free-model")  # no budget anywhere: billed by tokens, cost 0
        assert s == 200 and h["x-litellm-response-cost"] == "0"
        proxy.request("POST", "/customer/new", {"user_id": "capped", "max_budget": "5"}, MASTER)
        s, b, _ = call(proxy, free["key"], "free-model", user="capped")  # the customer's budget applies
        assert s == 403 and "customer capped" in b["error"]["message"]


def test_require_prices_is_honoured_at_call_time(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream, require_prices=True), lago_env(lago, "end_user_id")) as proxy:
        s, b, _ = call(proxy, MASTER, "some-model-the-table-lacks")
        assert s == 403 and b["error"]["type"] == "model_unpriced" and "require_prices" in b["error"]["message"]
        assert call(proxy, MASTER, "gpt-4o-mini")[0] == 200
    assert len(upstream.calls()) == 1


def test_a_configured_fallback_prices_them_and_budgets_apply(upstream: FakeOpenAI, lago: FakeLago) -> None:
    fallback = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    with Proxy(config(upstream, unpriced_model_fallback=fallback), lago_env(lago, "end_user_id")) as proxy:
        assert "billed at general_settings.unpriced_model_fallback" in proxy.output
        s, key, _ = proxy.request("POST", "/key/generate", {"max_budget": str(2 * CUSTOM_COST)}, MASTER)
        for model in ("free-model", "some-model-the-table-lacks"):
            s, b, h = call(proxy, key["key"], model)
            assert s == 200 and Decimal(h["x-litellm-response-cost"]) == CUSTOM_COST, b  # 12*1e-6 + 7*2e-6
        s, b, _ = call(proxy, key["key"], "free-model")
        assert s == 422 and b["error"]["type"] == "budget_exceeded"


@pytest.mark.parametrize("general,message", [
    ({"unpriced_model_fallback": {"input_cost_per_token": 1e-6}, "require_prices": True}, "contradicts"),
    ({"unpriced_model_fallback": {"input_cost_per_tokens": 1e-6}}, "input_cost_per_tokens: not a price field"),
    ({"unpriced_model_fallback": {"cache_read_input_token_cost": 1e-6}}, "needs input_cost_per_token"),
    ({"unpriced_model_fallback": {"input_cost_per_token": -1}}, "must not be negative"),
    ({"unpriced_model_fallback": "1e-6"}, "expected a mapping"),
])
def test_a_fallback_is_honoured_or_refused_at_start_never_ignored(general: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config_dict({"model_list": [], "general_settings": general})


def test_model_info_limits_are_read_and_checked() -> None:
    entry = {"model_name": "m", "litellm_params": {"model": "openai/my-m", "input_cost_per_token": 1e-6},
             "model_info": {"max_output_tokens": 500, "max_input_tokens": 8000}}
    d = load_config_dict({"model_list": [entry]}).deployments[0]
    assert (d.max_input_tokens, d.max_output_tokens) == (8000, 500)
    with pytest.raises(ConfigError, match=r"model_list\[0\].model_info.max_output_tokens"):
        load_config_dict({"model_list": [{**entry, "model_info": {"max_output_tokens": 0}}]})
    notes = load_config_dict({"model_list": [{**entry, "model_info": {}}]}).warnings
    assert any("no known output limit" in n for n in notes)


def test_a_wildcard_deployment_honours_its_own_prices() -> None:
    """Its litellm_params prices used to be dropped for the table's at call time."""
    cfg = load_config_dict({"model_list": [{"model_name": "*", "litellm_params": {
        "model": "openai/*", "api_key": "k", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}]})
    price = wildcard_price(cfg.deployments[0], "gpt-4o-mini", None)
    assert price is not None and price.input_cost_per_token == Decimal("0.000001")
    bare = load_config_dict({"model_list": [{"model_name": "*", "litellm_params": {"model": "openai/*", "api_key": "k"}}]})
    table = wildcard_price(bare.deployments[0], "gpt-4o-mini", None)
    assert table is not None and table.input_cost_per_token == Decimal("1.5e-7")
    assert wildcard_price(bare.deployments[0], "not-in-the-table", None) is None
    assert wildcard_price(bare.deployments[0], "not-in-the-table", {"output_cost_per_token": 1e-06}) is not None


@pytest.mark.parametrize("value,message", [(float("inf"), "finite"), (float("nan"), "finite"), ("1e999", "out of range"),
                                           (1e-30, "finer than 1e-19")])
def test_a_custom_price_the_core_cannot_hold_stops_start_up(value: Any, message: str) -> None:
    """It used to leave the deployment silently unpriced (free under every budget)."""
    for general, entry_prices in (({}, {"input_cost_per_token": value}),
                                  ({"unpriced_model_fallback": {"output_cost_per_token": value}}, {})):
        entry = {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "k", **entry_prices}}
        with pytest.raises(ConfigError, match=rf"_cost_per_token: .*{message}"):
            load_config_dict({"model_list": [entry], "general_settings": general})
