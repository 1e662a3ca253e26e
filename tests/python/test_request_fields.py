"""The LLM call body's proxy fields (proxy/request_fields.py), end to end against the real proxy with
the openai SDK and raw HTTP, as LiteLLM's docs send them: `num_retries` honoured as the call's own
retries (only after a failure the provider did not bill), `drop_params` per call, `tags` on the spend
log, the refused fields answered 400 naming them and why, and the fields without effect left out of
what the provider receives. Nothing here is stored, so one database (SQLite) suffices."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from llmbill.proxy import request_fields, upstream
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.httpclient import ConnectFailed, UpstreamError
from llmbill.proxy.request_fields import NO_EFFECT, REFUSED, applied, read
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.retry_support import FailingOnce, retrying

MASTER = "sk-master-request-fields-0123456789"
PRICES = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
COST = Decimal(12) * Decimal("1e-6") + Decimal(7) * Decimal("2e-6")  # the fake's usage: 12 in, 7 out
HI = [{"role": "user", "content": "hi"}]


def entry(name: str, up: FakeOpenAI, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": "openai/m", "api_base": up.url, "api_key": "k",
                                                   **PRICES, **params}}


@pytest.fixture
def up() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def proxy(up: FakeOpenAI) -> Iterator[Proxy]:
    config = {"model_list": [entry("plain", up), entry("retried", up, max_retries=2)],
              "general_settings": {"master_key": MASTER}}
    with Proxy(config) as p:
        yield p


def sdk(p: Proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER, base_url=p.url, max_retries=0)


def spend_logs(p: Proxy) -> list[dict[str, Any]]:
    status, logs, _ = p.request("GET", "/spend/logs", None, MASTER)
    assert status == 200
    return list(logs)


def test_the_modules_example_holds() -> None:
    result = doctest.testmod(request_fields)
    assert result.attempted and not result.failed


def test_num_retries_is_the_calls_own_retries_and_the_call_is_billed_once(proxy: Proxy, up: FakeOpenAI) -> None:
    # LiteLLM's docs: num_retries in the request body, through the SDK's extra_body.
    with sdk(proxy) as client:
        up.fail_next(2, 503)
        raw = client.chat.completions.with_raw_response.create(model="plain", messages=HI,
                                                               extra_body={"num_retries": 2})
        assert Decimal(raw.headers["x-litellm-response-cost"]) == COST
        assert len(up.calls("/chat/completions")) == 3  # two refusals, then the answer
        assert all("num_retries" not in c["body"] for c in up.calls())  # never sent to the provider
        up.fail_next(1, 503)
        with pytest.raises(openai.InternalServerError):  # 0 overrides the deployment's max_retries: 2
            client.chat.completions.create(model="retried", messages=HI, extra_body={"num_retries": 0})
        assert len(up.calls("/chat/completions")) == 4
        up.fail_next(1, 429)  # max_retries, the SDK's name, when num_retries is not sent
        with client.chat.completions.with_streaming_response.create(
                model="plain", stream=True, messages=HI, extra_body={"max_retries": 1}) as stream:
            assert stream.status_code == 200 and b"[DONE]" in b"".join(stream.iter_bytes())
    assert len(spend_logs(proxy)) == 2  # the refused call is not billed; each answered one once


@pytest.mark.parametrize("value", [11, -1, True, "2", 1.5])
def test_num_retries_out_of_bounds_is_a_400_naming_it(proxy: Proxy, up: FakeOpenAI, value: Any) -> None:
    status, body, _ = proxy.request("POST", "/chat/completions", {"model": "plain", "messages": HI,
                                                                  "num_retries": value}, MASTER)
    assert status == 400 and body["error"]["param"] == "num_retries" and "0 to 10" in body["error"]["message"]
    assert up.calls() == []


def test_a_retry_asked_by_the_call_still_never_follows_a_failure_the_provider_may_have_billed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "backoff", lambda attempt, retry_after: 0.0)
    d = load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}}]}).deployments[0]
    assert d.max_retries == 0
    sends = FailingOnce()
    sent = sends.sent
    with applied(read({"num_retries": 3})):
        assert retrying(d, sends.send(ConnectFailed("refused"))) == "answered"
        assert sent == ["ConnectFailed", "ConnectFailed"]  # nothing was written: sent again
        sent.clear()
        with pytest.raises(UpstreamError):  # written, then broken: it may have run, never sent twice
            retrying(d, sends.send(UpstreamError("reset")))
        assert sent == ["UpstreamError"]
    assert request_fields.retries(d.max_retries) == 0  # the call's own retries end with it


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_field_is_a_400_naming_it_and_why(proxy: Proxy, up: FakeOpenAI, name: str) -> None:
    value: Any = {"api_base": "http://evil.example", "base_url": "http://evil.example", "api_key": "sk-mine",
                  "api_version": "2024-10-21", "user_config": {"model_list": []}, "base_model": "gpt-4o-mini",
                  "mock_response": "hi", "prompt_id": "p-1", "prompt_variables": {"x": "y"},
                  "guardrails": ["aporia-pre-guard"], "timeout": 1, "request_timeout": 1, "stream_timeout": 1}[name]
    status, body, _ = proxy.request("POST", "/chat/completions", {"model": "plain", "messages": HI, name: value},
                                    MASTER)
    assert status == 400 and body["error"]["param"] == name, body
    assert f"'{name}' is not supported by llmbill ({REFUSED[name]})" in body["error"]["message"]
    status, _, _ = proxy.request("POST", "/chat/completions", {"model": "plain", "messages": HI, name: None}, MASTER)
    assert status == 200  # null is the same as leaving it out
    assert len(up.calls()) == 1 and name not in up.calls()[0]["body"]
    assert spend_logs(proxy)[0]["spend"] == float(COST)  # the refused call was not billed


def test_a_fallback_may_not_set_proxy_fields_of_its_own(proxy: Proxy, up: FakeOpenAI) -> None:
    status, body, _ = proxy.request("POST", "/chat/completions", {
        "model": "plain", "messages": HI, "fallbacks": [{"model": "retried", "api_base": "http://evil.example"}]},
        MASTER)
    assert status == 400 and "may not set api_base" in body["error"]["message"] and up.calls() == []


def test_the_fields_without_effect_reach_no_provider_and_every_call_is_billed(proxy: Proxy, up: FakeOpenAI) -> None:
    asked = {"caching": True, "cache": {"no-cache": True, "ttl": 60}, "litellm_session_id": "session-1",
             "litellm_trace_id": "trace-1"}
    assert set(asked) == set(NO_EFFECT)
    with sdk(proxy) as client:
        for _ in range(2):  # no response cache: the second call reaches the provider too
            client.chat.completions.create(model="plain", messages=HI, extra_body=asked)
    assert [set(c["body"]) & set(asked) for c in up.calls()] == [set(), set()]
    assert len(spend_logs(proxy)) == 2


def test_tags_at_the_top_and_in_litellm_metadata_tag_the_spend_log(proxy: Proxy, up: FakeOpenAI) -> None:
    with sdk(proxy) as client:
        client.chat.completions.create(model="plain", messages=HI, extra_body={"tags": ["prod", "app:bot"]})
        client.chat.completions.create(model="plain", messages=HI, extra_body={"litellm_metadata": {"tags": ["eu"]}})
    assert all("tags" not in c["body"] and "litellm_metadata" not in c["body"] for c in up.calls())
    status, rows, _ = proxy.request("GET", "/spend/logs?tags=app:bot", None, MASTER)
    assert status == 200 and [r["request_tags"] for r in rows] == [["prod", "app:bot"]]
    status, rows, _ = proxy.request("GET", "/spend/logs?tags=eu", None, MASTER)
    assert [r["request_tags"] for r in rows] == [["eu"]]
    status, body, _ = proxy.request("POST", "/chat/completions", {"model": "plain", "messages": HI, "tags": "prod"},
                                    MASTER)
    assert status == 400 and body["error"]["param"] == "tags"


def test_drop_params_of_the_call_wins_over_the_config() -> None:
    from tests.python.fakes.anthropic_upstream import FakeAnthropic

    with FakeAnthropic() as fake:
        config = {"model_list": [{"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": fake.url, "api_key": fake.api_key}}],
            "general_settings": {"master_key": MASTER}}
        with Proxy(config) as proxy, sdk(proxy) as client:
            ask: dict[str, Any] = {"model": "claude", "max_tokens": 20, "logprobs": True, "messages": HI}
            with pytest.raises(openai.BadRequestError) as refused:  # litellm_settings.drop_params is off
                client.chat.completions.create(**ask)
            assert "logprobs" in refused.value.message
            reply = client.chat.completions.create(**ask, extra_body={"drop_params": True})
            assert reply.choices[0].message.content == fake.reply_text
            assert "logprobs" not in fake.requests[-1]["body"] and "drop_params" not in fake.requests[-1]["body"]


def test_num_retries_and_tags_on_the_anthropic_messages_route_reach_no_provider() -> None:
    from tests.python.fakes.anthropic_upstream import FakeAnthropic

    with FakeAnthropic() as fake:
        config = {"model_list": [{"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": fake.url, "api_key": fake.api_key}}],
            "general_settings": {"master_key": MASTER}}
        with Proxy(config) as proxy:
            fake.fail_next(1, 529)
            status, reply, _ = proxy.request("POST", "/v1/messages", {
                "model": "claude", "max_tokens": 20, "messages": HI, "num_retries": 1, "tags": ["anthropic-route"]},
                MASTER)
            assert status == 200, reply  # the Messages API refuses unknown fields: these were left out
            assert len(fake.requests) == 2  # the overloaded refusal, then the answer
            status, rows, _ = proxy.request("GET", "/spend/logs?tags=anthropic-route", None, MASTER)
            assert len(rows) == 1


def test_apply_and_restore_scope_a_calls_options_like_applied() -> None:
    """fallbacks.serve sets the call's options without a generator: restored, the outer ones hold."""
    with applied(read({"num_retries": 1})):
        token = request_fields.apply(read({"num_retries": 4, "drop_params": True}))
        assert request_fields.retries(2) == 4 and request_fields.drop_params(False) is True
        request_fields.restore(token)
        assert request_fields.retries(2) == 1 and request_fields.drop_params(False) is False
    assert request_fields.retries(2) == 2
