"""Fallbacks end to end (proxy/fallbacks.py): the real proxy, the openai SDK (and raw HTTP), fake
providers. A call whose model failed unbilled goes on to its fallbacks; each is admitted as a call of
its own (the caller's access, its upper bound against the budgets, its per-model limits); the call is
billed once, as the model that answered; nothing follows a failure the provider may have billed."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from llmbill.proxy.config import load_config_dict
from llmbill.proxy.upper_bound import upper_bound_cost
from tests.python.fakes.anthropic_upstream import FakeAnthropic
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy, free_port

MASTER = "sk-master-fallbacks-0123456789ab"
CHEAP = {"input_cost_per_token": 1e-09, "output_cost_per_token": 1e-09}
DEAR = {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-03}
ASK = [{"role": "user", "content": "hi"}]
SMALL_USAGE = {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
DEAR_COST = 12 * Decimal("1e-6") + 2 * Decimal("1e-3")  # SMALL_USAGE at DEAR's prices
CHEAP_COST = 19 * Decimal("1e-9")  # the fake's default usage (12 + 7 tokens) at CHEAP's prices


def entry(name: str, up: FakeOpenAI | FakeAnthropic | str, prices: dict[str, float] | None = None,
          model: str = "openai/m", **params: Any) -> dict[str, Any]:
    base = up if isinstance(up, str) else up.url
    key = up.api_key if isinstance(up, FakeAnthropic) else "sk-upstream-fallbacks"
    return {"model_name": name, "litellm_params": {"model": model, "api_base": base, "api_key": key,
                                                   **(CHEAP if prices is None else prices), **params}}


def settings(**litellm: Any) -> dict[str, Any]:
    return {"litellm_settings": litellm, "general_settings": {"master_key": MASTER}}


@pytest.fixture
def primary() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def backup() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        fake.usage = dict(SMALL_USAGE)
        yield fake


@pytest.fixture
def bystander() -> Iterator[FakeOpenAI]:
    """A provider the tests expect never to be called."""
    with FakeOpenAI() as fake:
        yield fake


def new_key(proxy: Proxy, **fields: Any) -> str:
    status, body, _ = proxy.request("POST", "/key/generate", fields, MASTER)
    assert status == 200, body
    return str(body["key"])


def spend_rows(proxy: Proxy) -> list[tuple[str, Decimal, str]]:
    status, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
    assert status == 200, logs
    return sorted((r["model"], Decimal(str(r["spend"])), r["request_id"]) for r in logs)


def test_a_503_falls_back_admitted_by_the_larger_bound_and_billed_once_as_the_fallback(
        primary: FakeOpenAI, backup: FakeOpenAI, lago: FakeLago) -> None:
    config = {"model_list": [entry("cheap", primary, max_retries=1), entry("dear", backup, DEAR)],
              **settings(callbacks=["lago"], fallbacks=[{"cheap": ["dear"]}])}
    body = {"model": "cheap", "messages": ASK, "max_tokens": 10}
    cheap, dear = load_config_dict(config).deployments
    bound = upper_bound_cost(dear, "chat", body).cost
    budget = Decimal("0.005")
    assert upper_bound_cost(cheap, "chat", body).cost < budget <= bound  # the fallback's bound alone fills it
    env = {"LAGO_API_BASE": lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": "openai_tokens",
           "LAGO_API_CHARGE_BY": "team_id"}
    with Proxy(config, env) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as admin:
        key = new_key(proxy, max_budget=float(budget), team_id="team-fb")
        primary.fail_next(2, 503)  # the first send and its one retry
        backup.gate = threading.Event()
        done: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: done.update(
            reply=proxy.request("POST", "/chat/completions", body, key)))
        worker.start()
        try:
            assert backup.arrived.acquire(timeout=10)  # the fallback is in flight: its bound is held
            with openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0) as client:
                with pytest.raises(openai.UnprocessableEntityError) as refused:
                    client.chat.completions.create(model="cheap", messages=ASK, max_tokens=10)
        finally:
            backup.gate.set()
            worker.join(10)
        held = re.search(r"\(\+([0-9.]+) reserved by calls in flight\)", refused.value.message)
        assert held is not None and Decimal(held.group(1)) == bound, refused.value.message

        status, reply, headers = done["reply"]
        assert status == 200 and reply["model"] == "dear", reply
        assert headers["x-litellm-attempted-fallbacks"] == "1"
        assert Decimal(headers["x-litellm-response-cost"]) == DEAR_COST
        assert (len(primary.calls("/chat/completions")), len(backup.calls("/chat/completions"))) == (2, 1)
        call_id = headers["x-litellm-call-id"]
        assert spend_rows(proxy) == [("dear", DEAR_COST, call_id)]  # once, as the model that answered
        events = lago.wait_for(1, timeout=10)
        assert [(e["transaction_id"], e["properties"]["model"], Decimal(e["properties"]["response_cost"]))
                for e in events] == [(call_id, "dear", DEAR_COST)]
        status, info, _ = proxy.request("GET", f"/key/info?key={key}", None, MASTER)
        assert Decimal(str(info["info"]["spend"])) == DEAR_COST
        # Without a failure the primary answers, and no fallback header is sent.
        raw = admin.chat.completions.with_raw_response.create(model="cheap", messages=ASK)
        assert raw.parse().model == "cheap" and "x-litellm-attempted-fallbacks" not in raw.headers


WINDOW = {"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages "
                               "resulted in 9000 tokens.", "type": "invalid_request_error", "param": "messages",
                    "code": "context_length_exceeded"}}

FILTERED = {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                 "management policy.", "param": "prompt", "code": "content_filter", "status": 400}}


def test_context_window_and_content_policy_errors_go_to_their_own_lists(
        primary: FakeOpenAI, backup: FakeOpenAI, bystander: FakeOpenAI) -> None:
    with FakeAnthropic() as anthropic:
        config = {"model_list": [entry("small", primary), entry("big", backup, DEAR), entry("other", bystander),
                                 entry("claude", anthropic, model="anthropic/claude-sonnet-4-5")],
                  "router_settings": {"fallbacks": [{"small": ["other"]}],
                                      "context_window_fallbacks": [{"small": ["big"]}, {"claude": ["big"]}],
                                      "content_policy_fallbacks": [{"small": ["big"]}]},
                  **settings()}
        with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
            primary.fail_next(1, 400, WINDOW)
            raw = client.chat.completions.with_raw_response.create(model="small", messages=ASK)
            assert raw.parse().model == "big" and raw.headers["x-litellm-attempted-fallbacks"] == "1"
            primary.fail_next(1, 400, FILTERED)  # Azure's content filter: the content-policy list
            assert client.chat.completions.create(model="small", messages=ASK).model == "big"
            # A request the provider refuses for another reason is the client's to fix: no fallback.
            primary.fail_next(1, 400, {"error": {"message": "Unrecognized request argument supplied: foo",
                                                 "type": "invalid_request_error"}})
            with pytest.raises(openai.BadRequestError) as bad:
                client.chat.completions.create(model="small", messages=ASK)
            assert "Unrecognized request argument" in bad.value.message
            # Anthropic's "prompt is too long", through its adapter and on its own /v1/messages route.
            anthropic.fail_next(2, 400, "prompt is too long: 210000 tokens > 200000 maximum")
            reply = client.chat.completions.create(model="claude", messages=ASK, max_tokens=20)
            assert reply.model == "big" and reply.choices[0].message.content == backup.reply_text
            status, message, headers = proxy.request(
                "POST", "/v1/messages", {"model": "claude", "max_tokens": 20, "messages": ASK}, MASTER)
            assert status == 200 and message["type"] == "message" and message["model"] == "big", message
            assert headers["x-litellm-attempted-fallbacks"] == "1"
            assert not bystander.requests  # the general list was never used
            rows = spend_rows(proxy)
            assert [m for m, _, _ in rows] == ["big"] * 4
            assert all(spend == DEAR_COST for _, spend, _ in rows)


def test_a_fallback_the_caller_may_not_use_is_skipped_and_the_original_error_returned(
        primary: FakeOpenAI, backup: FakeOpenAI, bystander: FakeOpenAI) -> None:
    config = {"model_list": [entry("cheap", primary), entry("secret", bystander), entry("open", backup, DEAR),
                             entry("unpriced", bystander, {}, model="openai/no-such-model-anywhere")],
              **settings(fallbacks=[{"cheap": ["secret", "unpriced", "open"]}], set_verbose=True)}
    with Proxy(config) as proxy:
        # Not allowed `secret` nor `open`; `unpriced` is allowed but has no price, and the key has a budget.
        narrow = new_key(proxy, models=["cheap", "unpriced"], max_budget=1.0)
        with openai.OpenAI(api_key=narrow, base_url=proxy.url, max_retries=0) as client:
            primary.fail_next(1, 503)
            with pytest.raises(openai.InternalServerError) as failed:
                client.chat.completions.create(model="cheap", messages=ASK)
            assert failed.value.status_code == 503 and "fake upstream error 503" in failed.value.message
            assert failed.value.response.headers["x-litellm-attempted-fallbacks"] == "0"
        wider = new_key(proxy, models=["cheap", "open"])
        with openai.OpenAI(api_key=wider, base_url=proxy.url, max_retries=0) as client:
            primary.fail_next(1, 503)
            raw = client.chat.completions.with_raw_response.create(model="cheap", messages=ASK)
            assert raw.parse().model == "open" and raw.headers["x-litellm-attempted-fallbacks"] == "1"
        assert not bystander.requests and len(backup.requests) == 1
        assert [(m, s) for m, s, _ in spend_rows(proxy)] == [("open", DEAR_COST)]
    log = proxy.output
    assert "fallback secret skipped: this key may not call model 'secret'" in log
    assert "fallback unpriced skipped: model 'unpriced' has no price" in log


def test_a_streamed_call_falls_back_before_its_first_byte(primary: FakeOpenAI, backup: FakeOpenAI) -> None:
    with FakeAnthropic() as anthropic:
        config = {"model_list": [entry("cheap", primary), entry("dear", backup, DEAR),
                                 entry("claude", anthropic, model="anthropic/claude-sonnet-4-5")],
                  **settings(fallbacks=[{"cheap": ["dear"]}, {"claude": ["dear"]}])}
        with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
            call_ids = []
            for model, fail in (("cheap", lambda: primary.fail_next(1, 503)),
                                ("claude", lambda: anthropic.fail_next(1, 529))):  # Anthropic overloaded
                fail()
                with client.chat.completions.with_streaming_response.create(
                        model=model, messages=ASK, max_tokens=20, stream=True,
                        stream_options={"include_usage": True}) as stream:
                    assert stream.headers["x-litellm-attempted-fallbacks"] == "1"
                    call_ids.append(stream.headers["x-litellm-call-id"])
                    chunks = list(stream.parse())
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == backup.reply_text
                assert {c.model for c in chunks} == {"dear"}
                assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
            assert spend_rows(proxy) == sorted(("dear", DEAR_COST, i) for i in call_ids)


def test_request_fallbacks_completions_embeddings_and_a_refused_connection(
        primary: FakeOpenAI, backup: FakeOpenAI) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: the connection is refused
    config = {"model_list": [entry("cheap", primary), entry("dear", backup, DEAR), entry("down", down)],
              **settings()}
    with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
        primary.fail_next(1, 503)
        reply = client.chat.completions.create(model="cheap", messages=ASK, extra_body={"fallbacks": ["dear"]})
        assert reply.model == "dear"
        assert all("fallbacks" not in r["body"] for r in primary.requests + backup.requests)  # never sent upstream
        primary.fail_next(1, 502)
        text = client.completions.create(model="cheap", prompt="hi",
                                         extra_body={"fallbacks": [{"model": "dear", "max_tokens": 5}]})
        assert text.model == "dear" and backup.calls("/completions")[-1]["body"]["max_tokens"] == 5
        vectors = client.embeddings.create(model="down", input="hi", extra_body={"fallbacks": ["dear"]})
        assert vectors.model == "dear" and len(backup.calls("/embeddings")) == 1
        primary.fail_next(1, 503)
        answer = client.responses.create(model="cheap", input="hi", extra_body={"fallbacks": ["dear"]})
        assert answer.model == "dear" and "fallbacks" not in backup.calls("/responses")[-1]["body"]
        # disable_fallbacks: the provider's refusal is the answer.
        primary.fail_next(1, 503)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="cheap", messages=ASK,
                                           extra_body={"fallbacks": ["dear"], "disable_fallbacks": True})
        # mock_testing_fallbacks: the primary is not called at all.
        before = len(primary.requests)
        reply = client.chat.completions.create(model="cheap", messages=ASK,
                                               extra_body={"fallbacks": ["dear"], "mock_testing_fallbacks": True})
        assert reply.model == "dear" and len(primary.requests) == before
        status, refused, _ = proxy.request("POST", "/chat/completions",
                                           {"model": "cheap", "messages": ASK, "fallbacks": "dear"}, MASTER)
        assert status == 400 and refused["error"]["param"] == "fallbacks"
        rows = spend_rows(proxy)
        assert [m for m, _, _ in rows] == ["dear"] * 5


def test_nothing_follows_a_failure_the_provider_may_have_billed(primary: FakeOpenAI, backup: FakeOpenAI) -> None:
    config = {"model_list": [entry("slow", primary, timeout=0.3), entry("dear", backup, DEAR)],
              **settings(fallbacks=[{"slow": ["dear"]}])}
    with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
        primary.gate = threading.Event()  # the request was written; the reply never comes in time
        try:
            with pytest.raises(openai.APIStatusError) as timed_out:
                client.chat.completions.create(model="slow", messages=ASK)
        finally:
            primary.gate.set()
        assert timed_out.value.status_code == 502 and not backup.requests
        assert spend_rows(proxy) == []


def test_per_model_limits_count_the_model_actually_called(primary: FakeOpenAI, backup: FakeOpenAI) -> None:
    config = {"model_list": [entry("cheap", primary), entry("dear", backup, DEAR)],
              **settings(fallbacks=[{"cheap": ["dear"]}])}
    with Proxy(config) as proxy:
        key = new_key(proxy, model_max_budget={"dear": {"max_budget": 0.001}})
        with openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0) as client:
            primary.fail_next(1, 503)
            assert client.chat.completions.create(model="cheap", messages=ASK).model == "dear"
            # dear's own budget is spent now (0.002012 > 0.001): the next fallback to it is refused, so skipped.
            primary.fail_next(1, 503)
            with pytest.raises(openai.InternalServerError) as failed:
                client.chat.completions.create(model="cheap", messages=ASK)
            assert failed.value.response.headers["x-litellm-attempted-fallbacks"] == "0"
            # cheap's own calls are not charged with dear's spend.
            assert client.chat.completions.create(model="cheap", messages=ASK).model == "cheap"
        assert [(m, s) for m, s, _ in spend_rows(proxy)] == [("cheap", CHEAP_COST), ("dear", DEAR_COST)]


@pytest.fixture
def second() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def test_the_models_other_deployments_are_tried_before_its_fallbacks(
        primary: FakeOpenAI, second: FakeOpenAI, backup: FakeOpenAI) -> None:
    # `pair` has two deployments; the heavy one is picked first (all but certainly: weights 1e9 to 1).
    config = {"model_list": [entry("pair", primary, weight=1e9), entry("pair", second, DEAR, weight=1),
                             entry("dear", backup, DEAR)],
              **settings(fallbacks=[{"pair": ["dear"]}])}
    with Proxy(config) as proxy, openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0) as client:
        primary.fail_next(1, 503)
        raw = client.chat.completions.with_raw_response.create(model="pair", messages=ASK)
        assert raw.parse().model == "pair" and "x-litellm-attempted-fallbacks" not in raw.headers
        assert (len(primary.requests), len(second.requests), len(backup.requests)) == (1, 1, 0)
        # Both deployments refuse: then the fallback model.
        primary.fail_next(1, 503)
        second.fail_next(1, 429)
        raw = client.chat.completions.with_raw_response.create(model="pair", messages=ASK)
        assert raw.parse().model == "dear" and raw.headers["x-litellm-attempted-fallbacks"] == "1"
        assert (len(primary.requests), len(second.requests), len(backup.requests)) == (2, 2, 1)
        # Billed once each, as the deployment that answered (the second one's price: DEAR's).
        second_cost = 12 * Decimal("1e-6") + 7 * Decimal("1e-3")
        assert [(m, s) for m, s, _ in spend_rows(proxy)] == [("dear", DEAR_COST), ("pair", second_cost)]
