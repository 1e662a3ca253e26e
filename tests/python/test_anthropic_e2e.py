"""Anthropic deployments end to end through a real proxy and the strict fake Anthropic API: the openai
SDK on /chat/completions (translated both ways), the anthropic SDK on /v1/messages (native, prompt
caching included) and LangChain's ChatOpenAI — each call's Lago event, key spend and customer spend
equal to its tokens × the table's prices, exactly; errors mapped and never billed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

import llmbill
from tests.python.fakes.anthropic_upstream import FakeAnthropic
from tests.python.fakes.lago import FakeLago
from tests.python.proxy_harness import Proxy
from tests.python.provider_e2e_support import MASTER, customer_spend, events, key_spend


CODE = "llm_tokens"
MODEL = "claude-sonnet-4-5"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Proxy, FakeAnthropic, FakeLago]]:
    with FakeAnthropic() as up, FakeLago(api_key="lago-key") as lago:
        lago.add_metric(CODE)
        params = {"api_base": up.url, "api_key": up.api_key}
        config = {"model_list": [
            {"model_name": "claude", "litellm_params": {"model": f"anthropic/{MODEL}", **params}},
            {"model_name": "claude-badkey", "litellm_params": {"model": f"anthropic/{MODEL}", "api_base": up.url,
                                                               "api_key": "sk-ant-wrong"}}],
            "litellm_settings": {"callbacks": ["lago"]}, "general_settings": {"master_key": MASTER}}
        env = {"LAGO_API_BASE": lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": CODE,
               "LAGO_API_CHARGE_BY": "end_user_id"}
        with Proxy(config, env) as proxy:
            yield proxy, up, lago


def price() -> Any:
    found = llmbill.default_prices().find(f"anthropic/{MODEL}")
    assert found is not None and found.priced
    return found


def expected(usage: dict[str, int]) -> Decimal:
    """Anthropic's counts (input excludes cache reads and writes) × the table's rates, exactly."""
    p = price()
    total = Decimal(usage["input_tokens"]) * p.input_cost_per_token
    total += Decimal(usage.get("cache_read_input_tokens") or 0) * p.cache_read_input_token_cost
    total += Decimal(usage.get("cache_creation_input_tokens") or 0) * p.cache_creation_input_token_cost
    return total + Decimal(usage["output_tokens"]) * p.output_cost_per_token


def key(proxy: Proxy) -> str:
    status, body, _ = proxy.request("POST", "/key/generate", {}, MASTER)
    assert status == 200, body
    return str(body["key"])


def test_openai_sdk_on_an_anthropic_deployment(setup: tuple[Proxy, FakeAnthropic, FakeLago]) -> None:
    proxy, up, lago = setup
    k = key(proxy)
    with openai.OpenAI(api_key=k, base_url=proxy.url, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="claude", user="oa-cust", max_tokens=100,
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        reply = raw.parse()
        sent = up.requests[-1]["body"]
        assert sent["system"] and sent["max_tokens"] == 100 and sent["model"] == MODEL
        assert reply.model == "claude" and reply.choices[0].message.content == up.reply_text
        assert reply.usage is not None
        plain_cost = Decimal(raw.headers["x-litellm-response-cost"])
        assert plain_cost == Decimal(reply.usage.prompt_tokens) * price().input_cost_per_token + \
            Decimal(reply.usage.completion_tokens) * price().output_cost_per_token
        stream = client.chat.completions.with_raw_response.create(
            model="claude", user="oa-cust", max_tokens=100, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        chunks = list(stream.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == up.reply_text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
        tools = client.chat.completions.create(
            model="claude", user="oa-cust", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "use get_weather for Oslo"}])
        assert tools.choices[0].finish_reason == "tool_calls"
        call = tools.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
    ids = [raw.headers["x-litellm-call-id"], stream.headers["x-litellm-call-id"]]
    found = events(lago, ids)
    assert [Decimal(found[i]["properties"]["response_cost"]) for i in ids] == [plain_cost, plain_cost]
    assert customer_spend(proxy, "oa-cust") == key_spend(proxy, k)


def test_anthropic_sdk_natively_with_prompt_caching(setup: tuple[Proxy, FakeAnthropic, FakeLago]) -> None:
    proxy, up, lago = setup
    k = key(proxy)
    system = [{"type": "text", "text": "You answer questions about a long manual. " * 200,
               "cache_control": {"type": "ephemeral"}}]
    with anthropic.Anthropic(api_key=k, base_url=proxy.url, max_retries=0) as client:
        costs, ids, usages = [], [], []
        for _ in range(2):  # the first call writes the cache, the second reads it
            raw = client.messages.with_raw_response.create(
                model="claude", max_tokens=50, system=system,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": "hi"}], metadata={"user_id": "an-cust"})
            msg = raw.parse()
            assert msg.model == "claude" and msg.content[0].type == "text"
            usages.append(msg.usage.model_dump())
            costs.append(Decimal(raw.headers["x-litellm-response-cost"]))
            ids.append(raw.headers["x-litellm-call-id"])
        assert usages[0]["cache_creation_input_tokens"] > 0 and usages[1]["cache_read_input_tokens"] > 0
        assert costs == [expected(u) for u in usages]
        with client.messages.stream(model="claude", max_tokens=50, system=system,  # type: ignore[arg-type]
                                    messages=[{"role": "user", "content": "hi"}],
                                    metadata={"user_id": "an-cust"}) as stream:
            final = stream.get_final_message()
        usages.append(final.usage.model_dump())
        tool = client.messages.create(
            model="claude", max_tokens=100, metadata={"user_id": "an-cust"},
            tools=[{"name": "get_weather", "description": "Weather", "input_schema": {
                "type": "object", "properties": {"city": {"type": "string"}}}}],
            messages=[{"role": "user", "content": "use get_weather for Oslo"}])
        assert tool.stop_reason == "tool_use" and tool.content[-1].type == "tool_use"
        usages.append(tool.usage.model_dump())
    found = events(lago, ids)
    assert [Decimal(found[i]["properties"]["response_cost"]) for i in ids] == costs
    assert found[ids[1]]["properties"]["cached_tokens"] == usages[1]["cache_read_input_tokens"]
    assert found[ids[0]]["properties"]["cache_creation_tokens"] == usages[0]["cache_creation_input_tokens"]
    assert key_spend(proxy, k) == sum((expected(u) for u in usages), Decimal(0))


def test_langchain_chat_openai_on_an_anthropic_deployment(setup: tuple[Proxy, FakeAnthropic, FakeLago]) -> None:
    from langchain_openai import ChatOpenAI

    proxy, up, _ = setup
    k = key(proxy)
    llm = ChatOpenAI(model="claude", api_key=k, base_url=proxy.url, max_retries=0,  # type: ignore[arg-type]
                     max_completion_tokens=64)
    answer = llm.invoke("hi")
    assert answer.content == up.reply_text
    assert key_spend(proxy, k) > 0


def test_provider_errors_are_mapped_and_never_billed(setup: tuple[Proxy, FakeAnthropic, FakeLago]) -> None:
    proxy, up, _ = setup
    k = key(proxy)
    with openai.OpenAI(api_key=k, base_url=proxy.url, max_retries=0) as client:
        up.fail_next(1, 529)
        with pytest.raises(openai.InternalServerError) as over:
            client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
        assert over.value.status_code == 503
        with pytest.raises(openai.APIStatusError) as auth:
            client.chat.completions.create(model="claude-badkey", messages=[{"role": "user", "content": "hi"}])
        assert auth.value.status_code == 502 and "claude-badkey" in str(auth.value)
    with anthropic.Anthropic(api_key=k, base_url=proxy.url, max_retries=0) as native:
        up.fail_next(1, 529)
        with pytest.raises(anthropic.APIStatusError) as busy:
            native.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert busy.value.status_code == 503 and busy.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert key_spend(proxy, k) == 0


def _stream_to_the_end(client: openai.OpenAI, customer: str) -> tuple[str, str, BaseException | None]:
    """A translated stream read to its end by the openai SDK: (call id, text, the SDK's error if any)."""
    raw = client.chat.completions.with_raw_response.create(
        model="claude", user=customer, max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}])
    text, error = "", None
    try:
        for chunk in raw.parse():
            text += "".join(c.delta.content or "" for c in chunk.choices)
    except openai.APIError as exc:
        error = exc
    return raw.headers["x-litellm-call-id"], text, error


@pytest.mark.parametrize("fault", ["error_after", "cut_after"])
def test_a_translated_stream_that_fails_midway_is_billed_once_for_what_anthropic_reported(
        setup: tuple[Proxy, FakeAnthropic, FakeLago], fault: str) -> None:
    """message_start (input tokens, 1 output token), ping, the text block's start and first word —
    then an overloaded error event, or the connection closed: the client gets the word and an error
    (no [DONE]); the call is billed once, on the usage Anthropic had reported."""
    proxy, up, lago = setup
    k = key(proxy)
    with openai.OpenAI(api_key=k, base_url=proxy.url, max_retries=0) as client:
        if fault == "error_after":
            up.stream_error_after = 4
        else:
            up.cut_stream_after = 4
        try:
            call_id, text, error = _stream_to_the_end(client, f"mid-{fault}")
        finally:
            up.stream_error_after = up.cut_stream_after = None
    assert text == up.reply_text.split(" ")[0]
    assert error is not None
    assert ("Overloaded" if fault == "error_after" else "ended before message_stop") in str(error)
    event = events(lago, [call_id])[call_id]["properties"]
    assert event["output_tokens"] == 1 and event["input_tokens"] > 0
    assert Decimal(event["response_cost"]) == key_spend(proxy, k) == customer_spend(proxy, f"mid-{fault}") > 0


def test_a_translated_stream_that_fails_before_generating_is_never_billed(
        setup: tuple[Proxy, FakeAnthropic, FakeLago]) -> None:
    proxy, up, lago = setup
    k = key(proxy)
    with openai.OpenAI(api_key=k, base_url=proxy.url, max_retries=0) as client:
        up.stream_error_after = 0  # the error event first
        try:
            call_id, text, error = _stream_to_the_end(client, "first-fails")
        finally:
            up.stream_error_after = None
        assert text == "" and error is not None and "Overloaded" in str(error)
        next_id, after, _ = _stream_to_the_end(client, "first-fails")  # the next call is billed as usual
    assert after == up.reply_text
    billed = events(lago, [next_id])[next_id]["properties"]  # delivered after the first's would have been
    assert key_spend(proxy, k) == Decimal(billed["response_cost"]) > 0
    assert call_id not in {e["transaction_id"] for e in lago.events}
