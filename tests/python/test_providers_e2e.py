"""Every provider with a fake, end to end: one real proxy process routes a model name to each fake
(Gemini, Vertex AI with its token endpoint, Bedrock behind SigV4, Azure, two OpenAI-compatible hosts,
Bedrock Titan and Azure embeddings), driven by the official openai SDK unchanged but for base_url.

Each provider is held to the same bill: the Lago event, the key's and the customer's spend equal the
tokens times the table's prices (computed here from `llmbill.default_prices()`, never typed in), a
streamed call costs what the unstreamed one does, a key budget refuses at the same call as for an
`openai/` deployment with the same prices, and a failed call is neither billed nor left holding its
reservation. The shared setup is in provider_e2e_support.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
import yaml

import llmbill
from llmbill.proxy.config import load_config_dict
from tests.python.fakes.azure_upstream import FakeAzure
from tests.python.fakes.bedrock_upstream import FakeBedrock
from tests.python.fakes.gemini_upstream import FakeGemini
from tests.python.fakes.google_oauth import FakeServiceAccount
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.fakes.vertex_upstream import FakeVertex
from tests.python.provider_e2e_support import (
    CASES, CODE, HI, IDS, PNG, WEATHER, Case, Fakes, config, cost, customer_events, customer_spend, events, fake_of,
    key_spend, new_key, sdk)
from tests.python.proxy_harness import Proxy


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with FakeOpenAI() as up, FakeGemini(api_key="gemini-key") as gemini, \
            FakeVertex(project="acme", location="us-east5") as vertex, FakeBedrock() as bedrock, \
            FakeAzure() as azure, FakeLago(api_key="lago-key") as lago:
        vertex.trust(FakeServiceAccount.generate(vertex.token_uri, project_id="acme"))
        lago.add_metric(CODE)
        yield Fakes(up, gemini, vertex, bedrock, azure, lago)


@pytest.fixture(scope="module")
def proxy(fakes: Fakes) -> Iterator[Proxy]:
    with Proxy(*config(fakes)) as p:
        yield p


@pytest.fixture
def f(fakes: Fakes) -> Iterator[Fakes]:
    yield fakes
    for fake in (fakes.openai, fakes.gemini, fakes.vertex, fakes.bedrock, fakes.azure):
        assert not fake._failures, "a scripted failure was not consumed"
    fakes.gemini.function_calls, fakes.vertex.function_calls, fakes.bedrock.tool_use = [], [], None


# --- plain and streamed calls -------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_plain_and_streamed_calls_bill_the_tables_price_exactly(proxy: Proxy, f: Fakes, case: Case) -> None:
    key, customer = new_key(proxy), f"cust-{uuid.uuid4().hex[:8]}"
    expected = cost(case.price(), 12, 7)  # every fake reports 12 prompt and 7 completion tokens
    client = sdk(proxy, key)
    raw = client.chat.completions.with_raw_response.create(model=case.model, messages=HI, user=customer)
    reply = raw.parse()
    assert reply.model == case.model
    assert reply.choices[0].message.content == fake_of(f, case).reply_text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 7)
    assert Decimal(raw.headers["x-litellm-response-cost"]) == expected
    plain_id = raw.headers["x-litellm-call-id"]

    with client.chat.completions.with_streaming_response.create(
            model=case.model, messages=HI, user=customer, stream=True,
            stream_options={"include_usage": True}) as stream:
        stream_id = stream.headers["x-litellm-call-id"]
        chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_of(f, case).reply_text
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (12, 7)
    assert chunks[-1].usage is not None and not chunks[-1].choices  # the usage chunk comes last
    client.close()

    billed = events(f.lago, [plain_id, stream_id])
    for event in billed.values():
        props = event["properties"]
        assert Decimal(props["response_cost"]) == expected  # streamed costs what unstreamed costs
        assert (props["input_tokens"], props["output_tokens"], props["model"]) == (12, 7, case.model)
        assert event["external_subscription_id"] == customer and "estimated" not in props
    assert key_spend(proxy, key) == 2 * expected
    assert customer_spend(proxy, customer) == 2 * expected


def test_a_stream_without_include_usage_is_billed_the_same(proxy: Proxy, f: Fakes) -> None:
    key = new_key(proxy)
    with sdk(proxy, key) as client:
        for case in CASES:
            with client.chat.completions.with_streaming_response.create(
                    model=case.model, messages=HI, stream=True, user="cust-no-usage") as stream:
                call_id = stream.headers["x-litellm-call-id"]
                assert all(c.usage is None for c in stream.parse())  # not asked for: not shown
            event = events(f.lago, [call_id])[call_id]
            assert Decimal(event["properties"]["response_cost"]) == cost(case.price(), 12, 7), case.model


# --- tools and images ----------------------------------------------------------------------------
def _script_tool_call(f: Fakes, case: Case) -> None:
    if case.fake in ("gemini", "vertex"):
        fake_of(f, case).function_calls = [{"name": "get_weather", "args": {"city": "Paris"}}]
    elif case.fake == "bedrock":
        f.bedrock.tool_use = {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}
        f.bedrock.reply_text = ""
    else:  # OpenAI-shaped: the reply passes through as the upstream wrote it
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
        fake_of(f, case).fail_next(1, 200, {
            "id": "chatcmpl-tool", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}})


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_tool_call_comes_back_as_openai_tool_calls(proxy: Proxy, f: Fakes, case: Case) -> None:
    key = new_key(proxy)
    text = f.bedrock.reply_text
    _script_tool_call(f, case)
    try:
        with sdk(proxy, key) as client:
            raw = client.chat.completions.with_raw_response.create(
                model=case.model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER])
            reply = raw.parse()
            call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
            assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
            assert reply.choices[0].finish_reason == "tool_calls"
            assert Decimal(raw.headers["x-litellm-response-cost"]) == cost(case.price(), 12, 7)
            if not case.translated:
                return
            _script_tool_call(f, case)
            stream = client.chat.completions.create(
                model=case.model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
                stream=True, stream_options={"include_usage": True})
            pieces = [t for c in stream if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert pieces[0].function is not None and pieces[0].function.name == "get_weather"
        arguments = "".join((p.function.arguments or "") if p.function else "" for p in pieces)
        assert json.loads(arguments) == {"city": "Paris"}
    finally:
        f.bedrock.reply_text = text
    assert key_spend(proxy, key) == 2 * cost(case.price(), 12, 7)


def _image_seen(f: Fakes, case: Case) -> bool:
    """Whether the provider received the image in its own shape."""
    if case.fake in ("gemini", "vertex"):
        parts = fake_of(f, case).requests[-1]["body"]["contents"][0]["parts"]
        return any((p.get("inlineData") or {}) == {"mimeType": "image/png", "data": PNG} for p in parts)
    if case.fake == "bedrock":
        blocks = f.bedrock.requests[-1]["body"]["messages"][0]["content"]
        return any((b.get("image") or {}).get("format") == "png" for b in blocks)
    content = fake_of(f, case).requests[-1]["body"]["messages"][0]["content"]
    return any(p.get("image_url", {}).get("url") == f"data:image/png;base64,{PNG}" for p in content)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_image_part_reaches_the_provider(proxy: Proxy, f: Fakes, case: Case) -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    messages: Any = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]
    with sdk(proxy, new_key(proxy)) as client:
        raw = client.chat.completions.with_raw_response.create(model=case.model, messages=messages)
    assert raw.parse().choices[0].message.content == fake_of(f, case).reply_text
    assert _image_seen(f, case)
    assert Decimal(raw.headers["x-litellm-response-cost"]) == cost(case.price(), 12, 7)


# --- errors ---------------------------------------------------------------------------------------
def _fail(f: Fakes, case: Case, kind: str) -> None:
    """Scripts the provider's next reply: "throttled" (its 429) or "unavailable" (overloaded)."""
    if case.fake in ("gemini", "vertex"):
        args = (429, "RESOURCE_EXHAUSTED") if kind == "throttled" else (503, "UNAVAILABLE")
        fake_of(f, case).fail_next(1, *args)
    elif case.fake == "bedrock":
        f.bedrock.fail_next(1, "ThrottlingException" if kind == "throttled" else "ServiceUnavailableException")
    else:
        fake_of(f, case).fail_next(1, 429 if kind == "throttled" else 503)


def _upper_bound(case: Case, messages: list[dict[str, Any]], max_tokens: int) -> Decimal:
    """What the proxy reserves for a call (routes/llm.upper_bound_cost): a token per prompt byte."""
    return cost(case.price(), len(json.dumps(messages, separators=(",", ":"))), max_tokens)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_failures_map_to_the_right_status_are_not_billed_and_free_their_reservation(
        proxy: Proxy, f: Fakes, case: Case) -> None:
    # A call is admitted while spend + the reservations of calls in flight stay under the budget: here
    # a failure that kept its reservation would have every later call refused.
    key, customer = new_key(proxy, _upper_bound(case, HI, 16) / 2), f"cust-{uuid.uuid4().hex[:8]}"
    client = sdk(proxy, key)

    def call(model: str, stream: bool) -> None:
        if stream:
            for _ in client.chat.completions.create(model=model, messages=HI, max_tokens=16, user=customer,
                                                    stream=True):
                pass
        else:
            client.chat.completions.create(model=model, messages=HI, max_tokens=16, user=customer)

    for stream in (False, True):
        _fail(f, case, "throttled")
        with pytest.raises(openai.RateLimitError) as limited:
            call(case.model, stream)
        assert limited.value.status_code == 429
        _fail(f, case, "unavailable")
        with pytest.raises(openai.InternalServerError) as down:
            call(case.model, stream)
        assert down.value.status_code == 503
        if case.fake == "openai":  # the fake takes any key: the host's refusal is scripted
            f.openai.fail_next(1, 401, {"error": {"message": "Invalid API Key", "type": "invalid_request_error"}})
        with pytest.raises(openai.APIStatusError) as refused:
            call(case.bad_auth, stream)
        assert refused.value.status_code == 502  # the deployment's credentials, not the caller's key
        assert case.bad_auth in str(refused.value.message)
        assert key_spend(proxy, key) == 0
    raw = client.chat.completions.with_raw_response.create(model=case.model, messages=HI, max_tokens=16,
                                                           user=customer)  # admitted: no reservation was kept
    client.close()
    assert key_spend(proxy, key) == cost(case.price(), 12, 7)
    events(f.lago, [raw.headers["x-litellm-call-id"]])
    assert len(customer_events(f.lago, customer)) == 1  # the failures sent nothing to Lago


def test_a_bedrock_error_named_in_its_header_maps_the_same_streamed_or_not(proxy: Proxy, f: Fakes) -> None:
    # ModelNotReadyException comes with HTTP 429 but means "unavailable": only the header says so.
    with sdk(proxy, new_key(proxy)) as client:
        for stream in (False, True):
            f.bedrock.fail_next(1, "ModelNotReadyException")
            with pytest.raises(openai.InternalServerError) as down:
                if stream:
                    list(client.chat.completions.create(model="bedrock-sonnet", messages=HI, stream=True))
                else:
                    client.chat.completions.create(model="bedrock-sonnet", messages=HI)
            assert down.value.status_code == 503 and "not ready" in down.value.message


# --- budgets ----------------------------------------------------------------------------------------
def _calls_until_refused(proxy: Proxy, model: str, budget: Decimal) -> tuple[int, str]:
    key = new_key(proxy, budget)
    with sdk(proxy, key) as client:
        for n in range(20):
            try:
                client.chat.completions.create(model=model, messages=HI, max_tokens=16)
            except openai.UnprocessableEntityError as exc:  # budget refusals: 422, as LiteLLM 1.108
                assert "budget" in exc.message
                return n, key
    raise AssertionError(f"{model}: never refused")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_key_budget_refuses_at_the_same_call_as_for_openai_traffic(proxy: Proxy, f: Fakes, case: Case) -> None:
    one = cost(case.price(), 12, 7)
    budget = one * 5 / 2  # admitted while spend is under it: three calls
    n, key = _calls_until_refused(proxy, case.model, budget)
    twin, _ = _calls_until_refused(proxy, f"twin-{case.model}", budget)
    assert n == twin == 3
    assert key_spend(proxy, key) == n * one


# --- what is priced apart from the chat cases -------------------------------------------------------
def test_an_azure_deployment_without_base_model_is_priced_by_the_model_its_reply_names(
        proxy: Proxy, f: Fakes) -> None:
    price = llmbill.default_prices().find("azure/gpt-4o-mini-2024-07-18")
    assert price is not None and price.priced
    key = new_key(proxy)
    with sdk(proxy, key) as client:
        raw = client.chat.completions.with_raw_response.create(model="azure-mini", messages=HI, user="cust-mini")
        assert raw.parse().model == "azure-mini"
        with client.chat.completions.with_streaming_response.create(model="azure-mini", messages=HI, stream=True,
                                                                    user="cust-mini") as stream:
            stream_id = stream.headers["x-litellm-call-id"]
            list(stream.parse())
    assert Decimal(raw.headers["x-litellm-response-cost"]) == cost(price, 12, 7)
    event = events(f.lago, [stream_id])[stream_id]
    assert Decimal(event["properties"]["response_cost"]) == cost(price, 12, 7)
    assert "unpriced" not in event["properties"]
    assert key_spend(proxy, key) == 2 * cost(price, 12, 7)


def test_a_wildcard_deployment_of_an_adapted_provider_calls_the_model_asked_for(proxy: Proxy, f: Fakes) -> None:
    price = llmbill.default_prices().find("gemini/gemini-2.5-pro")
    assert price is not None and price.priced
    with sdk(proxy, new_key(proxy)) as client:
        raw = client.chat.completions.with_raw_response.create(model="gemini-2.5-pro", messages=HI)
        assert raw.parse().model == "gemini-2.5-pro"
        assert f.gemini.requests[-1]["path"] == "/v1beta/models/gemini-2.5-pro:generateContent"
        list(client.chat.completions.create(model="gemini-2.5-pro", messages=HI, stream=True))
        assert f.gemini.requests[-1]["path"] == "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    assert Decimal(raw.headers["x-litellm-response-cost"]) == cost(price, 12, 7)


def test_vertex_exchanges_its_service_account_key_for_a_token_once(proxy: Proxy, f: Fakes) -> None:
    assert f.vertex.oauth is not None
    with sdk(proxy, new_key(proxy)) as client:
        client.chat.completions.create(model="vertex-flash", messages=HI)
        exchanges = f.vertex.oauth.exchanges
        for _ in range(3):
            client.chat.completions.create(model="vertex-flash", messages=HI)
    assert exchanges >= 1 and f.vertex.oauth.exchanges == exchanges  # cached until it nears expiry
    assert f.vertex.requests[-1]["headers"]["authorization"].startswith("Bearer ya29.fake-")


def test_a_custom_price_written_with_an_exponent_in_yaml_is_a_price() -> None:
    # PyYAML reads `3e-07` (no dot) as a string; it was once passed on as such and left the model unpriced.
    raw = yaml.safe_load("model_list:\n- model_name: m\n  litellm_params: {model: hosted_vllm/m, api_base: "
                         "'http://127.0.0.1:9', input_cost_per_token: 3e-07, output_cost_per_token: 6E-7}\n")
    assert raw["model_list"][0]["litellm_params"]["input_cost_per_token"] == "3e-07"
    price = load_config_dict(raw).deployments[0].price
    assert price is not None
    assert (price.input_cost_per_token, price.output_cost_per_token) == (Decimal("3e-07"), Decimal("6e-07"))
    with pytest.raises(llmbill.ConfigError, match="input_cost_per_token: expected a number"):
        load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {
            "model": "hosted_vllm/m", "api_base": "http://127.0.0.1:9", "input_cost_per_token": "NaN"}}]})


def test_an_openai_compatible_host_with_custom_prices(proxy: Proxy, f: Fakes) -> None:
    key = new_key(proxy)
    with sdk(proxy, key) as client:
        raw = client.chat.completions.with_raw_response.create(model="vllm", messages=HI)
    assert f.openai.requests[-1]["body"]["model"] == "my-llama"
    expected = Decimal(12) * Decimal("3e-07") + Decimal(7) * Decimal("6e-07")
    assert Decimal(raw.headers["x-litellm-response-cost"]) == expected == key_spend(proxy, key)


@pytest.mark.parametrize("model,price_name,tokens", [
    ("azure-embed", "azure/text-embedding-3-small", lambda texts: 12),  # the fake's usage
    ("bedrock-titan", "bedrock/amazon.titan-embed-text-v2:0",
     lambda texts: sum(max(1, -(-len(t) // 5)) for t in texts)),  # Titan counts per text (the fake: 5 chars)
], ids=["azure", "bedrock-titan"])
def test_embeddings_are_billed_from_the_providers_token_count(
        proxy: Proxy, f: Fakes, model: str, price_name: str, tokens: Callable[[list[str]], int]) -> None:
    price = llmbill.default_prices().find(price_name)
    assert price is not None and price.priced
    texts = ["the quick brown fox", "jumps over the lazy dog, twice"]
    key, customer = new_key(proxy), f"cust-{uuid.uuid4().hex[:8]}"
    with sdk(proxy, key) as client:
        raw = client.embeddings.with_raw_response.create(model=model, input=texts, user=customer)
        reply = raw.parse()
        assert len(reply.data) == 2 and reply.model == model
        if model == "bedrock-titan":
            f.bedrock.fail_next(1, "ThrottlingException")
        else:
            f.azure.fail_next(1, 429)
        with pytest.raises(openai.RateLimitError):
            client.embeddings.create(model=model, input=texts, user=customer)
    expected = cost(price, tokens(texts))
    assert Decimal(raw.headers["x-litellm-response-cost"]) == expected
    call_id = raw.headers["x-litellm-call-id"]
    assert events(f.lago, [call_id])[call_id]["properties"]["input_tokens"] == tokens(texts)
    assert key_spend(proxy, key) == expected == customer_spend(proxy, customer)
