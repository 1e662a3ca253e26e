"""The real proxy process, driven by the official openai SDK and raw HTTP, against a fake OpenAI
upstream and the strict fake Lago — on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy

MASTER = "sk-master-0123456789abcdef"
# Fake upstream usage: 12 prompt, 7 completion tokens.
# custom-model: 12*1e-6 + 7*2e-6 = 0.000026 USD; gpt-4o (table): 12*2.5e-6 + 7*1e-5 = 0.0001 USD.
CUSTOM_COST = Decimal("0.000026")
GPT4O_COST = Decimal("0.0001")


def config(upstream: FakeOpenAI, database_url: str | None) -> dict[str, Any]:
    general: dict[str, Any] = {"master_key": MASTER}
    if database_url:
        general["database_url"] = database_url
    return {
        "model_list": [
            {"model_name": "custom-model", "litellm_params": {"model": "openai/my-model", "api_base": upstream.url,
                                                              "api_key": "upstream-key", "input_cost_per_token": 1e-06,
                                                              "output_cost_per_token": 2e-06}},
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream.url,
                                                        "api_key": "upstream-key"}},
        ],
        "litellm_settings": {"callbacks": ["lago"]},
        "general_settings": general,
    }


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None  # a fresh file in the proxy's own directory
    from tests.python.pg import create_database

    server = str(request.getfixturevalue("postgres_url"))
    return create_database(server, f"e2e_{uuid.uuid4().hex[:12]}")  # a fresh database per test


def lago_env(lago: FakeLago, charge_by: str) -> dict[str, str]:
    """The proxy's Lago settings, with the billable metric they name created in the fake Lago (the
    proxy holds events of a code Lago does not know)."""
    if "openai_tokens" not in lago.billing.metrics:
        lago.add_metric("openai_tokens")
    return {"LAGO_API_BASE": lago.url, "LAGO_API_KEY": "lago-key", "LAGO_API_EVENT_CODE": "openai_tokens",
            "LAGO_API_CHARGE_BY": charge_by}


@pytest.mark.parametrize("charge_by", ["team_id", "user_id", "end_user_id"])
def test_seed_quick_start_bills_each_call_once_to_the_right_id(
        upstream: FakeOpenAI, lago: FakeLago, database_url: str | None, charge_by: str) -> None:
    with Proxy(config(upstream, database_url), lago_env(lago, charge_by)) as proxy:
        # Step 2: a key for an internal team (and user).
        status, body, _ = proxy.request("POST", "/key/generate", {"team_id": "my-unique-id", "user_id": "u-1"}, MASTER)
        assert status == 200, body
        key = body["key"]
        assert key.startswith("sk-")
        # Step 3: calls with it, by curl-style HTTP and by the openai SDK (sync, async, streaming).
        status, reply, headers = proxy.request("POST", "/chat/completions", {
            "model": "custom-model", "messages": [{"role": "user", "content": "what llm are you"}],
            "user": "cust-1"}, key)
        assert status == 200, reply
        assert reply["model"] == "custom-model"
        assert Decimal(headers["x-litellm-response-cost"]) == CUSTOM_COST
        call_ids = [headers["x-litellm-call-id"]]

        client = openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user="cust-1")
        call_ids.append(raw.headers["x-litellm-call-id"])
        assert raw.parse().choices[0].message.content == upstream.reply_text

        async def async_call() -> str:
            async with openai.AsyncOpenAI(api_key=key, base_url=proxy.url, max_retries=0) as aclient:
                r = await aclient.chat.completions.with_raw_response.create(
                    model="custom-model", messages=[{"role": "user", "content": "hi"}], user="cust-1")
                return str(r.headers["x-litellm-call-id"])

        call_ids.append(asyncio.run(async_call()))
        with client.chat.completions.with_streaming_response.create(
                model="custom-model", messages=[{"role": "user", "content": "hi"}], user="cust-1",
                stream=True) as stream:
            call_ids.append(stream.headers["x-litellm-call-id"])
            text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
        assert text == upstream.reply_text
        client.close()

        expected = 3 * CUSTOM_COST + GPT4O_COST
        events = lago.wait_for(4, timeout=10)
        assert sorted(e["transaction_id"] for e in events) == sorted(call_ids)
        ids = {"team_id": "my-unique-id", "user_id": "u-1", "end_user_id": "cust-1"}
        assert {e["external_subscription_id"] for e in events} == {ids[charge_by]}
        assert sum(Decimal(e["properties"]["response_cost"]) for e in events) == expected

        # Spend of key, user, team and customer equals the sum of call costs, exactly.
        status, info, _ = proxy.request("GET", f"/key/info?key={key}", None, MASTER)
        assert Decimal(str(info["info"]["spend"])) == expected
        status, team, _ = proxy.request("GET", "/team/info?team_id=my-unique-id", None, MASTER)
        assert Decimal(str(team["team_info"]["spend"])) == expected
        status, user, _ = proxy.request("GET", "/user/info?user_id=u-1", None, MASTER)
        assert Decimal(str(user["user_info"]["spend"])) == expected
        status, cust, _ = proxy.request("GET", "/customer/info?end_user_id=cust-1", None, MASTER)
        assert Decimal(str(cust["spend"])) == expected
        status, logs, _ = proxy.request("GET", "/spend/logs?team_id=my-unique-id", None, MASTER)
        assert sorted(r["request_id"] for r in logs) == sorted(call_ids)
        assert sum(Decimal(str(r["spend"])) for r in logs) == expected
    # A second start on the same database sees the persisted spend.
    with Proxy(config(upstream, database_url), lago_env(lago, charge_by), workdir=proxy.dir) as again:
        status, team, _ = again.request("GET", "/team/info?team_id=my-unique-id", None, MASTER)
        assert Decimal(str(team["team_info"]["spend"])) == expected
    assert len(lago.transaction_ids()) == 4  # nothing re-sent by the restart


def test_streaming_usage_is_asked_for_billed_and_stripped(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream, None), lago_env(lago, "end_user_id")) as proxy:
        client = openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0)
        chunks = list(client.chat.completions.create(model="custom-model", user="c", stream=True,
                                                     messages=[{"role": "user", "content": "hi"}]))
        assert all(c.usage is None for c in chunks)  # the client did not ask: usage chunk stripped
        assert upstream.calls("/chat/completions")[-1]["body"]["stream_options"] == {"include_usage": True}
        chunks = list(client.chat.completions.create(model="custom-model", user="c", stream=True,
                                                     stream_options={"include_usage": True},
                                                     messages=[{"role": "user", "content": "hi"}]))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
        assert all(c.model == "custom-model" for c in chunks)
        client.close()
        events = lago.wait_for(2, timeout=10)
        assert [Decimal(e["properties"]["response_cost"]) for e in events] == [CUSTOM_COST, CUSTOM_COST]


def test_errors_are_openai_shaped_and_bill_nothing(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream, None), lago_env(lago, "end_user_id")) as proxy:
        chat = {"model": "custom-model", "messages": [{"role": "user", "content": "hi"}], "user": "c"}

        def err(status: int, body: Any, type_: str, param: str | None = None) -> None:
            assert set(body["error"]) == {"message", "type", "param", "code"}, body
            assert body["error"]["type"] == type_, body
            assert body["error"]["code"] == str(status)
            if param:
                assert body["error"]["param"] == param

        s, b, _ = proxy.request("POST", "/chat/completions", chat)
        assert s == 401
        err(s, b, "auth_error")
        s, b, _ = proxy.request("POST", "/chat/completions", chat, "sk-wrong")
        assert s == 401
        s, b, _ = proxy.request("POST", "/chat/completions", None, MASTER, raw=b"{not json")
        assert s == 400
        err(s, b, "bad_request_error")
        s, b, _ = proxy.request("POST", "/chat/completions", {**chat, "model": "nope"}, MASTER)
        assert s == 400
        err(s, b, "bad_request_error", "model")
        s, b, _ = proxy.request("POST", "/chat/completions", {**chat, "messages": "hi"}, MASTER)
        assert s == 400
        err(s, b, "bad_request_error", "messages")
        s, key, _ = proxy.request("POST", "/key/generate", {"models": ["gpt-4o"], "max_budget": 0.00005}, MASTER)
        assert s == 200
        s, b, _ = proxy.request("POST", "/chat/completions", chat, key["key"])
        assert s == 403
        err(s, b, "key_model_access_denied")
        s, b, _ = proxy.request("POST", "/key/generate", {}, key["key"])
        assert s == 403
        err(s, b, "auth_error")
        s, b, _ = proxy.request("POST", "/key/generate", {"max_budget": "lots"}, MASTER)
        assert s == 400
        err(s, b, "bad_request_error", "max_budget")
        # An upstream failure passes its status through and is not billed.
        upstream.fail_next(1, 503)
        s, b, _ = proxy.request("POST", "/chat/completions", chat, MASTER)
        assert s == 503
        assert b["error"]["message"].startswith("custom-model: ")
        # Budget: the first call crosses 0.00005, the second is refused before the upstream.
        s, _, _ = proxy.request("POST", "/chat/completions", {**chat, "model": "gpt-4o"}, key["key"])
        assert s == 200
        before = len(upstream.requests)
        s, b, h = proxy.request("POST", "/chat/completions", {**chat, "model": "gpt-4o"}, key["key"])
        assert s == 422 and h.get("x-should-retry") == "false"
        err(s, b, "budget_exceeded")
        assert b["error"]["message"].startswith("Budget has been exceeded! Current cost: 0.0001")
        assert len(upstream.requests) == before
        lago.wait_for(1, timeout=10)
        s, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
        assert len(logs) == 1  # only the one successful call
    assert len(lago.transaction_ids()) == 1


def test_config_mistake_stops_start_up_with_one_line(tmp_path: Any) -> None:
    proxy = Proxy({"model_list": [{"model_name": "m", "litellm_params": {"model": "bogus/m"}}]}, workdir=tmp_path)
    with pytest.raises(RuntimeError) as info:
        proxy.start()
    lines = [line for line in str(info.value).splitlines() if "config error" in line]
    assert len(lines) == 1 and lines[0].startswith(
        "llmbill-proxy: config error: model_list[0].litellm_params.model: unknown provider 'bogus' in 'bogus/m' "
        "(supported: mock, text-completion-openai, openai, groq,")
    assert all(p in lines[0] for p in ("anthropic", "azure", "bedrock", "gemini", "vertex_ai"))
