"""POST /v1/responses (routes/responses.py) end to end: the real proxy, the openai SDK's
`client.responses.create` unchanged but for base_url, the fake OpenAI upstream's Responses API and
the strict fake Lago. Billed from the reply's usage (streamed: `response.completed`), exactly as the
table prices it, through the same budgets as chat calls.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

import llmbill
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy

MASTER = "sk-master-responses-0123456789"
CODE = "llm_tokens"


def gpt4o() -> Any:
    price = llmbill.default_prices().find("gpt-4o")
    assert price is not None and price.priced
    return price


def cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    """Tokens times the table's gpt-4o prices, cached prompt tokens at the cache-read price."""
    p = gpt4o()
    return Decimal((prompt - cached) * p.input_cost_per_token + cached * p.cache_read_input_token_cost
                   + completion * p.output_cost_per_token)


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeLago]]:
    with FakeOpenAI() as up, FakeLago(api_key="lago-key") as lago:
        lago.add_metric(CODE)
        yield up, lago


@pytest.fixture(scope="module")
def proxy(fakes: tuple[FakeOpenAI, FakeLago]) -> Iterator[Proxy]:
    up, lago = fakes
    config = {"model_list": [
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": up.url, "api_key": "sk-up"}},
        {"model_name": "mock-gpt", "litellm_params": {"model": "mock/gpt-4o"}},
    ], "litellm_settings": {"callbacks": ["lago"]}, "general_settings": {"master_key": MASTER}}
    env = {"LAGO_API_BASE": lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": CODE,
           "LAGO_API_CHARGE_BY": "end_user_id"}
    with Proxy(config, env) as p:
        yield p


@pytest.fixture
def up(fakes: tuple[FakeOpenAI, FakeLago]) -> Iterator[FakeOpenAI]:
    fake = fakes[0]
    yield fake
    fake.usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    fake.omit_usage = False
    assert not fake._failures, "a scripted failure was not consumed"


@pytest.fixture
def lago(fakes: tuple[FakeOpenAI, FakeLago]) -> FakeLago:
    return fakes[1]


def new_key(proxy: Proxy, max_budget: Decimal | None = None) -> str:
    body: dict[str, Any] = {} if max_budget is None else {"max_budget": str(max_budget)}
    status, reply, _ = proxy.request("POST", "/key/generate", body, MASTER)
    assert status == 200, reply
    return str(reply["key"])


def spend(proxy: Proxy, path: str) -> Decimal:
    status, info, _ = proxy.request("GET", path, None, MASTER)
    assert status == 200, info
    return Decimal(str(info["info"]["spend"] if "info" in info else info["spend"]))


def event(lago: FakeLago, call_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in lago.events:
            if e["transaction_id"] == call_id:
                return e
        time.sleep(0.02)
    raise AssertionError(f"no Lago event for call {call_id}")


def test_a_response_is_billed_from_its_usage(proxy: Proxy, up: FakeOpenAI, lago: FakeLago) -> None:
    key, customer = new_key(proxy), f"cust-{uuid.uuid4().hex[:8]}"
    with openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0) as client:
        raw = client.responses.with_raw_response.create(model="gpt-4o", input="Say hello.", user=customer)
    response = raw.parse()
    assert response.output_text == up.reply_text
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (12, 7)
    sent = up.calls("/responses")[-1]
    assert sent["path"] == "/v1/responses" and sent["body"]["input"] == "Say hello."
    assert {k.lower(): v for k, v in sent["headers"].items()}["authorization"] == "Bearer sk-up"

    expected = cost(12, 7)
    assert Decimal(raw.headers["x-litellm-response-cost"]) == expected
    props = event(lago, raw.headers["x-litellm-call-id"])["properties"]
    assert Decimal(props["response_cost"]) == expected
    assert (props["input_tokens"], props["output_tokens"], props["model"], props["end_user_id"]) == \
        (12, 7, "gpt-4o", customer)
    assert spend(proxy, f"/key/info?key={key}") == expected == spend(proxy, f"/customer/info?end_user_id={customer}")


def test_a_streamed_response_costs_what_the_plain_one_does(proxy: Proxy, up: FakeOpenAI, lago: FakeLago) -> None:
    up.usage = {"prompt_tokens": 2000, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1536}}
    key = new_key(proxy)
    expected = cost(2000, 300, cached=1536)
    with openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0) as client:
        plain = client.responses.with_raw_response.create(model="gpt-4o", input="Say hello.", user="cust-r")
        with client.responses.with_streaming_response.create(model="gpt-4o", input="Say hello.", user="cust-r",
                                                             stream=True) as stream:
            call_id = stream.headers["x-litellm-call-id"]
            events = list(stream.parse())
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == up.reply_text
    completed = [e for e in events if e.type == "response.completed"]
    assert len(completed) == 1 and completed[0].response.usage is not None
    assert completed[0].response.usage.input_tokens_details.cached_tokens == 1536
    assert completed[0].response.model == "gpt-4o"

    assert Decimal(plain.headers["x-litellm-response-cost"]) == expected
    props = event(lago, call_id)["properties"]
    assert Decimal(props["response_cost"]) == expected
    assert (props["input_tokens"], props["cached_tokens"], props["output_tokens"]) == (2000, 1536, 300)
    assert "estimated" not in props
    assert spend(proxy, f"/key/info?key={key}") == 2 * expected


def test_a_response_without_usage_is_estimated_never_free(proxy: Proxy, up: FakeOpenAI, lago: FakeLago) -> None:
    up.omit_usage = True
    with openai.OpenAI(api_key=new_key(proxy), base_url=proxy.url, max_retries=0) as client:
        raw = client.responses.with_raw_response.create(model="gpt-4o", input="Say hello.", user="cust-r")
    props = event(lago, raw.headers["x-litellm-call-id"])["properties"]
    assert props["estimated"] == "true" and Decimal(props["response_cost"]) > 0


def test_a_failed_response_is_not_billed_and_frees_its_reservation(proxy: Proxy, up: FakeOpenAI) -> None:
    # Admitted while spend + the reservations in flight are under the budget: a kept reservation
    # (the call's upper bound, far above this budget) would refuse every later call.
    key = new_key(proxy, cost(12, 7) / 2)
    with openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0) as client:
        for stream in (False, True):
            up.fail_next(1, 429, {"error": {"message": "Rate limit reached", "type": "requests", "code": None}})
            with pytest.raises(openai.RateLimitError) as limited:
                client.responses.create(model="gpt-4o", input="Say hello.", stream=stream)
            assert "gpt-4o" in limited.value.message
        assert spend(proxy, f"/key/info?key={key}") == 0
        client.responses.create(model="gpt-4o", input="Say hello.")
        assert spend(proxy, f"/key/info?key={key}") == cost(12, 7)
        with pytest.raises(openai.UnprocessableEntityError) as over:  # now over its budget, as for chat calls
            client.responses.create(model="gpt-4o", input="Say hello.")
        assert "budget" in over.value.message.lower()


def test_a_deployment_without_the_responses_api_is_a_400(proxy: Proxy) -> None:
    with openai.OpenAI(api_key=new_key(proxy), base_url=proxy.url, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="mock-gpt", input="Say hello.")
    assert "Responses API" in refused.value.message


def test_azure_deployments_serve_the_responses_api(lago: FakeLago) -> None:
    """An azure/ deployment: the resource's /openai/responses with api-version and api-key, the body's
    model naming the deployment; billed by model_info.base_model's prices, plain and streamed."""
    from tests.python.fakes.azure_upstream import API_KEY, FakeAzure

    with FakeAzure() as az:
        config = {"model_list": [{"model_name": "az-4o", "litellm_params": {
            "model": "azure/prod-4o", "api_base": az.url, "api_key": API_KEY, "api_version": "2025-03-01-preview"},
            "model_info": {"base_model": "gpt-4o"}}],
            "litellm_settings": {"callbacks": ["lago"]}, "general_settings": {"master_key": MASTER}}
        env = {"LAGO_API_BASE": lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": CODE,
               "LAGO_API_CHARGE_BY": "end_user_id"}
        with Proxy(config, env) as p, openai.OpenAI(api_key=new_key(p), base_url=p.url, max_retries=0) as client:
            raw = client.responses.with_raw_response.create(model="az-4o", input="Say hello.", user="az-cust")
            assert raw.parse().model == "az-4o"
            sent = az.requests[-1]
            assert sent["body"]["model"] == "gpt-4o-2024-08-06"  # the fake's deployment prod-4o → its base model
            assert Decimal(raw.headers["x-litellm-response-cost"]) == cost(12, 7)
            with client.responses.create(model="az-4o", input="Say hello.", user="az-cust", stream=True) as stream:
                kinds = [e.type for e in stream]
            assert kinds[-1] == "response.completed"
            assert Decimal(event(lago, raw.headers["x-litellm-call-id"])["properties"]["response_cost"]) == cost(12, 7)
            assert spend(p, "/customer/info?end_user_id=az-cust") == 2 * cost(12, 7)
        assert not az.rejected, az.rejected
