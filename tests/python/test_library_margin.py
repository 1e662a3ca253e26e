"""Margins on the library path (library_margin.py): `llmbill.track` and `LagoLogger` put the exact
`billed_amount` in the Lago event from LiteLLM's `cost_margin_config` / `cost_discount_config`, set as
llmbill module settings, as LagoLogger arguments, or (for LiteLLM's own calls) on LiteLLM itself.
Every test reads what the strict fake Lago stored."""

from __future__ import annotations

import sys
import types
from decimal import Decimal
from typing import Any, Callable

import pytest

import llmbill
from llmbill._core import Pipeline
from llmbill.calls import BilledCall
from llmbill.library_margin import provider_of
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import KEY, OPENAI_USAGE
from tests.python.test_lago_logger import GPT4O_COST, START, ModelResponse, lago_env, litellm_kwargs, openai_reply

MakePipeline = Callable[..., Pipeline]
__all__ = ["lago_env"]  # the fixture, shared


@pytest.fixture(autouse=True)
def no_module_margins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without margins, and leaves none behind."""
    monkeypatch.setattr(llmbill, "cost_margin_config", {})
    monkeypatch.setattr(llmbill, "cost_discount_config", {})


def _properties(lago: FakeLago) -> dict[str, Any]:
    (event,) = lago.raw_events
    return dict(event["properties"])


def test_track_sends_the_module_margin_exactly(lago_env: FakeLago, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmbill, "cost_margin_config", {"global": 0.1, "openai": {"percentage": 0.15,
                                                                                  "fixed_amount": 0.3}})
    call = llmbill.track(openai_reply(), user="cust")
    assert llmbill.flush(5)
    want = GPT4O_COST * Decimal("1.15") + Decimal("0.3")  # the openai entry beats global
    assert call is not None and call.cost == GPT4O_COST and call.billed_amount == want and call.billed == want
    properties = _properties(lago_env)
    assert properties["response_cost"] == "0.00575"  # the provider's cost, unchanged
    assert Decimal(properties["billed_amount"]) == want == Decimal("0.3066125")


def test_discount_then_margin_for_the_named_provider(lago_env: FakeLago, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmbill, "cost_discount_config", {"azure": "0.05"})
    monkeypatch.setattr(llmbill, "cost_margin_config", {"azure": Decimal("0.2")})
    call = llmbill.track(openai_reply(), user="cust", provider="azure")
    assert llmbill.flush(5)
    want = GPT4O_COST * Decimal("0.95") * Decimal("1.2")
    assert call is not None and call.provider == "azure"
    assert Decimal(_properties(lago_env)["billed_amount"]) == want == Decimal("0.006555")


def test_without_a_margin_the_event_has_no_billed_amount(lago_env: FakeLago, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmbill, "cost_margin_config", {"anthropic": 0.5})  # not this call's provider
    call = llmbill.track(openai_reply(), user="cust")
    assert llmbill.flush(5)
    assert call is not None and call.billed_amount is None and call.billed == GPT4O_COST
    assert "billed_amount" not in _properties(lago_env)


def test_the_loggers_own_margin_beats_the_module_setting(lago_env: FakeLago, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmbill, "cost_margin_config", {"global": 0.1})
    monkeypatch.setattr(llmbill, "callbacks", [llmbill.LagoLogger(cost_margin_config={"global": {"fixed_amount": "0.01"}})])
    llmbill.track(openai_reply(), user="cust")
    assert llmbill.flush(5)
    assert Decimal(_properties(lago_env)["billed_amount"]) == GPT4O_COST + Decimal("0.01")


def test_litellm_hook_takes_the_loggers_margin(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY),
                                cost_margin_config={"openai": 0.25}, cost_discount_config={"openai": 0.2})
    logger.log_success_event(litellm_kwargs(), ModelResponse("r", "gpt-4o", OPENAI_USAGE), START, START)
    assert logger.pipeline.flush(5)
    assert Decimal(_properties(fake_lago)["billed_amount"]) == GPT4O_COST  # × 0.8 × 1.25


def test_litellm_hook_follows_litellms_own_settings_once(fake_lago: FakeLago, make_pipeline: MakePipeline,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A LiteLLM program that set litellm.cost_margin_config: its response_cost has the margin folded in
    # (for a model only LiteLLM prices); llmbill bills from the provider's cost and applies it once.
    fake = types.SimpleNamespace(cost_margin_config={"acme": 0.1}, cost_discount_config={})
    monkeypatch.setitem(sys.modules, "litellm", fake)
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY))
    kwargs = litellm_kwargs(model="acme/in-house-model", response_cost=0.01353)
    kwargs["custom_llm_provider"] = "acme"
    kwargs["standard_logging_object"]["cost_breakdown"] = {"original_cost": 0.0123, "margin_percent": 0.1,
                                                           "total_cost": 0.01353}
    logger.log_success_event(kwargs, ModelResponse("r", "acme/in-house-model", OPENAI_USAGE), START, START)
    assert logger.pipeline.flush(5)
    properties = _properties(fake_lago)
    assert properties["response_cost"] == "0.0123"
    assert Decimal(properties["billed_amount"]) == Decimal("0.01353")


def test_llmbills_setting_beats_litellms(fake_lago: FakeLago, make_pipeline: MakePipeline,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(cost_margin_config={"global": 0.5},
                                                                      cost_discount_config={}))
    monkeypatch.setattr(llmbill, "cost_margin_config", {"global": 0.1})
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY))
    logger.log_success_event(litellm_kwargs(), ModelResponse("r", "gpt-4o", OPENAI_USAGE), START, START)
    assert logger.pipeline.flush(5)
    assert Decimal(_properties(fake_lago)["billed_amount"]) == GPT4O_COST * Decimal("1.1")


def test_a_wrong_setting_is_named_where_it_was_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmbill, "callbacks", [])
    monkeypatch.setattr(llmbill, "cost_margin_config", {"openai": "lots"})
    with pytest.raises(llmbill.MarginError, match=r"^llmbill\.cost_margin_config\.openai: expected a number"):
        llmbill.track(openai_reply(), user="cust")
    with pytest.raises(llmbill.MarginError, match=r"^LagoLogger\.cost_discount_config\.openai: must be a non-negative"):
        llmbill.LagoLogger(cost_discount_config={"openai": -0.1})


def test_provider_is_named_else_the_prefix_else_the_price_table() -> None:
    usage = {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    assert provider_of(BilledCall.priced("gpt-4o", usage, provider="azure")) == "azure"
    assert provider_of(BilledCall.priced("anthropic/some-model", usage)) == "anthropic"
    assert provider_of(BilledCall.priced("gpt-4o", usage)) == "openai"
    assert provider_of(BilledCall.priced("in-house", usage)) == ""


def test_doctests() -> None:
    import doctest

    import llmbill.library_margin

    result = doctest.testmod(llmbill.library_margin)
    assert result.attempted and not result.failed
