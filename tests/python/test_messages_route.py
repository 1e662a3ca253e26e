"""POST /v1/messages end to end with the official anthropic SDK, for a deployment that does not speak
Messages (translated to chat and back): the same keys, budgets, spend and Lago events as /chat/completions,
Anthropic's shapes in and out, errors included."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import anthropic
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env


@pytest.fixture
def proxy(upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    with Proxy(config(upstream, None), lago_env(lago, "end_user_id")) as p:
        yield p


@pytest.fixture
def clients() -> Iterator[list[anthropic.Anthropic]]:
    made: list[anthropic.Anthropic] = []
    yield made
    for c in made:
        c.close()


def _client(made: list[anthropic.Anthropic], proxy: Proxy, key: str) -> anthropic.Anthropic:
    made.append(anthropic.Anthropic(api_key=key, base_url=proxy.url, max_retries=0))
    return made[-1]


def _key(proxy: Proxy, **fields: object) -> str:
    status, body, _ = proxy.request("POST", "/key/generate", {"key_alias": "claude", **fields}, MASTER)
    assert status == 200, body
    return str(body["key"])


def test_plain_call_is_billed_like_chat(clients: list[anthropic.Anthropic], proxy: Proxy,
                                        upstream: FakeOpenAI, lago: FakeLago) -> None:
    key = _key(proxy)
    client = _client(clients, proxy, key)
    raw = client.messages.with_raw_response.create(
        model="custom-model", max_tokens=50, system="be brief", messages=[{"role": "user", "content": "hi"}],
        metadata={"user_id": "cust-a"})
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "custom-model"
    assert msg.content[0].type == "text" and msg.content[0].text == upstream.reply_text
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (12, 7)
    assert Decimal(raw.headers["x-litellm-response-cost"]) == CUSTOM_COST
    forwarded = upstream.requests[-1]["body"]
    assert forwarded["messages"][0] == {"role": "system", "content": "be brief"}
    assert forwarded["max_tokens"] == 50 and forwarded["user"] == "cust-a"
    events = lago.wait_for(1, timeout=10)
    assert events[0]["transaction_id"] == raw.headers["x-litellm-call-id"]
    assert events[0]["external_subscription_id"] == "cust-a"
    assert Decimal(events[0]["properties"]["response_cost"]) == CUSTOM_COST
    status, info, _ = proxy.request("GET", f"/key/info?key={key}", None, MASTER)
    assert Decimal(str(info["info"]["spend"])) == CUSTOM_COST
    status, logs, _ = proxy.request("GET", f"/spend/logs?request_id={raw.headers['x-litellm-call-id']}", None, MASTER)
    assert logs[0]["call_type"] == "anthropic_messages"


def test_stream_costs_what_the_plain_call_costs(clients: list[anthropic.Anthropic], proxy: Proxy,
                                                upstream: FakeOpenAI, lago: FakeLago) -> None:
    key = _key(proxy)
    client = _client(clients, proxy, key)
    with client.messages.stream(model="custom-model", max_tokens=50, metadata={"user_id": "cust-s"},
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == upstream.reply_text
    assert final.usage.output_tokens == 7 and final.stop_reason == "end_turn"
    events = lago.wait_for(1, timeout=10)
    assert Decimal(events[0]["properties"]["response_cost"]) == CUSTOM_COST
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_errors_use_anthropics_shape(clients: list[anthropic.Anthropic], proxy: Proxy,
                                     lago: FakeLago) -> None:
    bad = _client(clients, proxy, "sk-not-a-key")
    with pytest.raises(anthropic.AuthenticationError) as auth:
        bad.messages.create(model="custom-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert auth.value.body["type"] == "error"  # type: ignore[index]
    key = _key(proxy, max_budget=0.00001)
    client = _client(clients, proxy, key)
    status, body, _ = proxy.request("POST", "/v1/messages", {"model": "custom-model",
                                                            "messages": [{"role": "user", "content": "hi"}]}, key)
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as unsupported:
        client.messages.create(model="custom-model", max_tokens=5, extra_body={"top_k": 3},
                               messages=[{"role": "user", "content": "hi"}])
    assert "top_k" in unsupported.value.body["error"]["message"]  # type: ignore[index]
    client.messages.create(model="custom-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.UnprocessableEntityError) as over:  # LiteLLM's budget status, 422
        client.messages.create(model="custom-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "Budget has been exceeded" in over.value.body["error"]["message"]  # type: ignore[index]


def test_count_tokens(clients: list[anthropic.Anthropic], proxy: Proxy) -> None:
    client = _client(clients, proxy, _key(proxy))
    count = client.messages.count_tokens(model="custom-model", messages=[{"role": "user", "content": "hello"}])
    assert count.input_tokens > 0
