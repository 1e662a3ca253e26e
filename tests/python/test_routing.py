"""LiteLLM's routing keys, honoured or refused (proxy/routing.py): retries after a 429/5xx the provider
answered or a refused connection (never billed twice), timeouts, a deployment's own rpm with
simple-shuffle across deployments, drop_params, and the keys llmbill cannot honour refused at start
with one line naming them. Fallbacks: test_fallbacks.py and test_fallback_rules.py."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from llmbill.billing import ConfigError
from llmbill.proxy import upstream
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.httpclient import ConnectFailed, UpstreamError
from llmbill.proxy.routing import backoff, parse_router, shuffle_order
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.retry_support import FailingOnce, retrying

MASTER = "sk-master-routing-0123456789abcdef"
PRICES = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
COST = Decimal(12) * Decimal("1e-6") + Decimal(7) * Decimal("2e-6")  # the fake's usage: 12 in, 7 out


def entry(name: str, up: FakeOpenAI, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": "openai/m", "api_base": up.url, "api_key": "k",
                                                   **PRICES, **params}}


@pytest.mark.parametrize("raw,message", [
    ({"router_settings": {"routing_strategy": "latency-based-routing"}}, "router_settings.routing_strategy"),
    ({"router_settings": {"redis_host": "x"}}, "router_settings.redis_host"),
    ({"litellm_settings": {"num_retries": -1}}, "litellm_settings.num_retries"),
    ({"litellm_settings": {"request_timeout": 0}}, "litellm_settings.request_timeout"),
])
def test_what_cannot_be_honoured_stops_start_up_naming_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}], **raw})


def test_settings_reach_every_deployment() -> None:
    cfg = load_config_dict({
        "model_list": [{"model_name": "a", "litellm_params": {"model": "mock/a", "max_retries": 1, "rpm": 5,
                                                              "stream_timeout": 7}},
                       {"model_name": "b", "litellm_params": {"model": "mock/b", "timeout": 30}}],
        "litellm_settings": {"num_retries": 3, "request_timeout": 90, "drop_params": True}})
    a, b = cfg.deployments
    assert (a.max_retries, a.timeout, a.stream_timeout, a.rpm, a.weight) == (1, 90.0, 7.0, 5, 5.0)
    assert (b.max_retries, b.timeout, b.stream_timeout) == (3, 30.0, None)
    assert cfg.drop_params and parse_router({"router_settings": {"num_retries": 2}}).num_retries == 2


def test_shuffle_follows_the_weights_and_backoff_the_provider() -> None:
    rng = random.Random(7)
    firsts = [shuffle_order([9.0, 1.0], rng)[0] for _ in range(2000)]
    assert 0.85 < firsts.count(0) / 2000 < 0.95
    assert backoff(1, "2") == 2.0 and backoff(1, None) == 0.25 and backoff(9, None) == 4.0 and backoff(1, "60") == 0.25


def test_a_refused_connection_is_retried_a_broken_exchange_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "backoff", lambda attempt, retry_after: 0.0)
    d = load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": "http://127.0.0.1:9/v1", "api_key": "k", "max_retries": 2}}]}).deployments[0]
    sends = FailingOnce()
    sent = sends.sent
    assert retrying(d, sends.send(ConnectFailed("refused"))) == "answered"
    assert sent == ["ConnectFailed", "ConnectFailed"]  # nothing was written: sent again
    sent.clear()
    with pytest.raises(UpstreamError):  # written, then broken: it may have run, never sent twice
        retrying(d, sends.send(UpstreamError("reset")))
    assert sent == ["UpstreamError"]


@pytest.fixture
def up() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def test_a_refused_call_is_retried_and_billed_once(up: FakeOpenAI) -> None:
    config = {"model_list": [entry("retried", up, max_retries=2), entry("once", up)],
              "general_settings": {"master_key": MASTER}}
    with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
        up.fail_next(2, 503)
        raw = client.chat.completions.with_raw_response.create(model="retried", messages=[{"role": "user",
                                                                                           "content": "hi"}])
        assert Decimal(raw.headers["x-litellm-response-cost"]) == COST
        assert len(up.calls("/chat/completions")) == 3  # two refusals, then the answer
        up.fail_next(1, 429)
        with client.chat.completions.with_streaming_response.create(
                model="retried", stream=True, messages=[{"role": "user", "content": "hi"}]) as stream:
            assert stream.status_code == 200 and b"[DONE]" in b"".join(stream.iter_bytes())
        up.fail_next(1, 503)
        with pytest.raises(openai.InternalServerError):  # no retries configured: the provider's refusal
            client.chat.completions.create(model="once", messages=[{"role": "user", "content": "hi"}])
        status, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
        assert status == 200 and len(logs) == 2 and sum(Decimal(str(r["spend"])) for r in logs) == 2 * COST


def test_a_deployment_over_its_rpm_is_skipped_then_all_over_is_a_429(up: FakeOpenAI) -> None:
    config = {"model_list": [entry("pair", up, rpm=2), entry("pair", up, rpm=1)],
              "general_settings": {"master_key": MASTER}}
    if time.time() % 60 > 55:  # the counters are per minute: start the test inside one
        time.sleep(61 - time.time() % 60)
    with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
        for _ in range(3):  # 2 + 1 requests fit this minute across the two deployments
            client.chat.completions.create(model="pair", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as over:
            client.chat.completions.create(model="pair", messages=[{"role": "user", "content": "hi"}])
        assert "every deployment of model pair" in over.value.message


def test_drop_params_leaves_out_what_the_provider_cannot_take() -> None:
    from tests.python.fakes.anthropic_upstream import FakeAnthropic

    with FakeAnthropic() as fake:
        deployment = {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                                 "api_base": fake.url, "api_key": fake.api_key}}
        for drop in (False, True):
            config = {"model_list": [deployment], "litellm_settings": {"drop_params": drop},
                      "general_settings": {"master_key": MASTER}}
            with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
                ask = {"model": "claude", "max_tokens": 20, "logprobs": True,
                       "messages": [{"role": "user", "content": "hi"}]}
                if not drop:
                    with pytest.raises(openai.BadRequestError) as refused:
                        client.chat.completions.create(**ask)
                    assert "logprobs" in refused.value.message
                else:
                    assert client.chat.completions.create(**ask).choices[0].message.content == fake.reply_text
                    assert "logprobs" not in fake.requests[-1]["body"]
