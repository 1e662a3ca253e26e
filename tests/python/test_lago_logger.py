"""Billing from the user's side: `llmbill.callbacks = ["lago"]` + `llmbill.track`, configured from the
environment as LiteLLM's Lago logger is, and `LagoLogger` fed LiteLLM-shaped callback arguments.
Every test reads what the fake Lago stored."""

from __future__ import annotations

import asyncio
import json
import warnings
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import llmbill
from llmbill._core import Pipeline
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import CODE, KEY, MODEL, OPENAI_USAGE, eventually

MakePipeline = Callable[..., Pipeline]
GPT4O_COST = Decimal("0.00575")  # OPENAI_USAGE on gpt-4o (see test_lago_events.py)


# -- llmbill.callbacks = ["lago"] + track, configured by the environment ------------------------------


@pytest.fixture
def lago_env(fake_lago: FakeLago, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLago]:
    """LAGO_* and LLMBILL_* set for the process-wide pipeline, callbacks = ["lago"]; the pipeline is
    closed again afterwards so no other test sees it."""
    llmbill.close()
    monkeypatch.setenv("LAGO_API_BASE", fake_lago.url)
    monkeypatch.setenv("LAGO_API_KEY", KEY)
    monkeypatch.setenv("LAGO_API_EVENT_CODE", CODE)
    monkeypatch.setenv("LAGO_API_CHARGE_BY", "end_user_id")
    monkeypatch.setenv("LLMBILL_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setattr(llmbill, "callbacks", ["lago"])
    try:
        yield fake_lago
    finally:
        llmbill.close(1)


def openai_reply(reply_id: str = "chatcmpl-track-1") -> dict[str, Any]:
    return {"id": reply_id, "object": "chat.completion", "model": MODEL, "usage": OPENAI_USAGE,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}


def test_track_bills_the_customer_with_the_exact_cost(lago_env: FakeLago) -> None:
    call = llmbill.track(openai_reply(), user="cust")
    assert call is not None and call.cost == GPT4O_COST
    assert llmbill.flush(5)

    (event,) = lago_env.events
    assert event["transaction_id"] == "chatcmpl-track-1"
    assert event["external_subscription_id"] == "cust"
    assert event["code"] == CODE
    assert event["properties"]["response_cost"] == "0.00575"
    assert event["properties"]["end_user_id"] == "cust"
    assert event["timestamp"] == Decimal(call.timestamp_ms).scaleb(-3)
    assert llmbill.get_pipeline().describe().endswith("/api/v1/events/batch")


def test_failed_calls_are_not_billed(lago_env: FakeLago) -> None:
    assert llmbill.track(TimeoutError("upstream timed out"), user="cust") is None
    failed = {"model": MODEL, "error": {"message": "rate limited", "type": "requests", "code": "429"}}
    assert llmbill.track(failed, user="cust") is None
    llmbill.track(openai_reply("chatcmpl-ok"), user="cust")
    assert llmbill.flush(5)

    assert lago_env.transaction_ids() == ["chatcmpl-ok"]
    assert len(lago_env.raw_events) == 1
    assert llmbill.get_pipeline().stats()["enqueued"] == 1


def test_track_without_the_customer_is_dead_lettered_not_sent(lago_env: FakeLago) -> None:
    llmbill.track(openai_reply("chatcmpl-anonymous"))
    assert llmbill.flush(5)
    pipeline = llmbill.get_pipeline()
    assert pipeline.stats()["no_charge_id"] == 1
    assert [d["id"] for d in pipeline.dead_letters()] == ["chatcmpl-anonymous"]
    assert lago_env.raw_events == []


def test_track_takes_a_reply_as_json_text(lago_env: FakeLago) -> None:
    # track()'s docstring: "an OpenAI/Anthropic reply: object, dict or JSON".
    call = llmbill.track(json.dumps(openai_reply("chatcmpl-json")), user="cust")
    assert call is not None and call.cost == GPT4O_COST
    assert llmbill.flush(5)
    assert lago_env.transaction_ids() == ["chatcmpl-json"]  # the reply's id, as for a dict


def test_failed_call_as_json_text_is_not_billed(lago_env: FakeLago) -> None:
    failed = json.dumps({"error": {"message": "model overloaded", "type": "server_error"}})
    assert llmbill.track(failed, model=MODEL, user="cust") is None
    assert llmbill.flush(5)
    assert lago_env.raw_events == []


# -- configuration errors ----------------------------------------------------------------------------


def test_bad_charge_by_is_a_config_error_naming_it() -> None:
    with pytest.raises(llmbill.ConfigError, match="LAGO_API_CHARGE_BY") as error:
        llmbill.LagoSettings.from_env({"LAGO_API_CHARGE_BY": "customer"})
    assert "customer" in str(error.value)


def test_lago_base_without_event_code_is_a_config_error_naming_it() -> None:
    with pytest.raises(llmbill.ConfigError, match="LAGO_API_EVENT_CODE"):
        llmbill.LagoSettings.from_env({"LAGO_API_BASE": "http://localhost:3000", "LAGO_API_KEY": "k"})


def test_settings_from_env(tmp_path: Path) -> None:
    settings = llmbill.LagoSettings.from_env({
        "LAGO_API_BASE": "http://lago:3000/", "LAGO_API_KEY": "k", "LAGO_API_EVENT_CODE": "in, out",
        "LAGO_API_CHARGE_BY": "team_id", "LLMBILL_SPOOL_DIR": str(tmp_path / "s")})
    assert settings.event_codes == ("in", "out")
    assert (settings.charge_by, settings.api_key, settings.spool_dir) == ("team_id", "k", tmp_path / "s")
    assert llmbill.LagoSettings.from_env({}).charge_by == "end_user_id"  # LiteLLM's default


def test_process_pipeline_raises_the_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llmbill.close()
    monkeypatch.setenv("LLMBILL_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("LAGO_API_BASE", "http://127.0.0.1:9")
    monkeypatch.delenv("LAGO_API_EVENT_CODE", raising=False)
    monkeypatch.setattr(llmbill, "callbacks", ["lago"])
    try:
        with pytest.raises(llmbill.ConfigError, match="LAGO_API_EVENT_CODE"):
            llmbill.track(openai_reply(), user="cust")
    finally:
        llmbill.close()


# -- LagoLogger with LiteLLM-shaped arguments ------------------------------------------------------


class ModelResponse:
    """Shaped like litellm.ModelResponse: attributes, `.get()`, `.model_dump()`."""

    def __init__(self, reply_id: str, model: str, usage: dict[str, Any]) -> None:
        self.id, self.model, self.object = reply_id, model, "chat.completion"
        self.usage = usage
        self.choices = [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]

    def model_dump(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "object": self.object, "choices": self.choices,
                "usage": self.usage}

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


START = datetime(2026, 8, 6, 7, 6, 40, 123000, tzinfo=timezone.utc)  # 1786000000.123


def litellm_kwargs(call_id: str = "litellm-call-1", model: str = MODEL, response_cost: float = 0.00575,
                   end_user: str = "cust-9") -> dict[str, Any]:
    """What LiteLLM passes a CustomLogger as `kwargs` for a proxied call (the parts llmbill reads)."""
    return {
        "model": model,
        "litellm_call_id": call_id,
        "response_cost": response_cost,
        "custom_llm_provider": "openai",
        "optional_params": {},
        "litellm_params": {
            "metadata": {"user_api_key_user_id": "user-1", "user_api_key_team_id": "team-1",
                         "user_api_key_alias": "alias-1", "user_api_key_end_user_id": end_user},
            "proxy_server_request": {"body": {"model": model, "messages": [], "user": end_user}},
        },
        "standard_logging_object": {"id": call_id, "model": model, "end_user": end_user,
                                    "response_cost": response_cost},
    }


@pytest.mark.parametrize("hook", ["sync", "async"])
def test_logger_bills_a_litellm_call(fake_lago: FakeLago, make_pipeline: MakePipeline, hook: str) -> None:
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY))
    response = ModelResponse("chatcmpl-upstream", MODEL, OPENAI_USAGE)
    args = (litellm_kwargs(), response, START, datetime.now(timezone.utc))
    if hook == "sync":
        logger.log_success_event(*args)
    else:
        asyncio.run(logger.async_log_success_event(*args))
    assert logger.pipeline.flush(5)

    (event,) = fake_lago.raw_events
    assert event["transaction_id"] == "litellm-call-1"  # LiteLLM's call id, not the provider's
    assert event["timestamp"] == "1786000000.123"  # the call's start_time
    assert event["external_subscription_id"] == "cust-9"
    properties = event["properties"]
    assert {k: properties[k] for k in ("key_alias", "user_id", "team_id", "end_user_id")} == {
        "key_alias": "alias-1", "user_id": "user-1", "team_id": "team-1", "end_user_id": "cust-9"}
    assert (properties["prompt_tokens"], properties["completion_tokens"], properties["cached_tokens"],
            properties["reasoning_tokens"]) == (1200, 300, 200, 100)
    assert properties["response_cost"] == "0.00575"


@pytest.mark.parametrize("charge_by, billed", [("user_id", "user-1"), ("team_id", "team-1")])
def test_logger_charges_the_key_owner(fake_lago: FakeLago, make_pipeline: MakePipeline, charge_by: str,
                                      billed: str) -> None:
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY, charge_by=charge_by))
    logger.log_success_event(litellm_kwargs(), ModelResponse("r", MODEL, OPENAI_USAGE), START, START)
    assert logger.pipeline.flush(5)
    (event,) = fake_lago.events
    assert event["external_subscription_id"] == billed


def test_logger_uses_litellm_cost_for_a_model_llmbill_cannot_price(fake_lago: FakeLago,
                                                                   make_pipeline: MakePipeline) -> None:
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY))
    kwargs = litellm_kwargs(model="acme/in-house-model", response_cost=0.0123)
    kwargs["custom_llm_provider"] = "acme"
    logger.log_success_event(kwargs, ModelResponse("r", "acme/in-house-model", OPENAI_USAGE), START, START)
    assert logger.pipeline.flush(5)
    (event,) = fake_lago.raw_events
    assert event["properties"]["response_cost"] == "0.0123"
    assert "unpriced" not in event["properties"]


def test_naive_local_start_time_is_read_as_local_time(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    # LiteLLM stamps calls with datetime.now(): naive, local time.
    logger = llmbill.LagoLogger(make_pipeline(api_base=fake_lago.url, api_key=KEY))
    start = datetime.now()
    logger.log_success_event(litellm_kwargs(), ModelResponse("r", MODEL, OPENAI_USAGE), start, start)
    assert logger.pipeline.flush(5)
    (event,) = fake_lago.events
    assert abs(event["timestamp"] - Decimal(repr(start.astimezone(timezone.utc).timestamp()))) < Decimal("0.002")


@pytest.mark.parametrize("hook", ["sync", "async"])
def test_logger_bills_nothing_for_a_failed_call(fake_lago: FakeLago, make_pipeline: MakePipeline,
                                               hook: str) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    logger = llmbill.LagoLogger(pipeline)
    kwargs = litellm_kwargs() | {"exception": TimeoutError("upstream"), "response_cost": 0.0}
    if hook == "sync":
        logger.log_failure_event(kwargs, None, START, START)
    else:
        asyncio.run(logger.async_log_failure_event(kwargs, None, START, START))
    assert pipeline.flush(1)
    assert logger.failures_seen == 1
    assert pipeline.stats()["enqueued"] == 0
    assert fake_lago.requests == []


# -- the real LiteLLM, when it is installed -----------------------------------------------------------


def test_litellm_completion_is_billed_to_the_user(fake_lago: FakeLago, make_pipeline: MakePipeline,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # litellm's own import-time deprecation warnings
        litellm = pytest.importorskip("litellm")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    logger = llmbill.LagoLogger(pipeline)
    monkeypatch.setattr(litellm, "callbacks", [logger])
    response = litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": "hello"}],
                                  mock_response="hi", user="cust")
    assert response.choices[0].message.content == "hi"

    eventually(lambda: pipeline.stats()["enqueued"] >= 1, timeout=10, what="LiteLLM's success callback")
    assert pipeline.flush(5)
    (event,) = fake_lago.events
    assert event["external_subscription_id"] == "cust"
    assert event["properties"]["model"].endswith("gpt-4o")
    assert Decimal(event["properties"]["response_cost"]) > 0
