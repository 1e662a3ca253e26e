"""The LiteLLM request fields llmbill honours, end to end against the real proxy — on SQLite and
PostgreSQL, with raw HTTP and the openai SDK, using request bodies as LiteLLM's documentation writes
them (virtual keys, team model aliases, per-model budgets and limits, temporary budget increases,
key types, permissions, team member budgets, customers' models, tags)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.fakes.webhook import WebhookReceiver
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, GPT4O_COST, MASTER, config, lago_env

TINY = "0.00002"  # below one custom-model call (0.000026): the first call passes, the second is refused


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago, hook: WebhookReceiver) -> Iterator[Proxy]:
    db = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        db = create_database(str(request.getfixturevalue("postgres_url")), f"fields_{uuid.uuid4().hex[:10]}")
    cfg = config(upstream, db)
    cfg["general_settings"]["alerting"] = ["webhook"]
    with Proxy(cfg, {**lago_env(lago, "team_id"), "WEBHOOK_URL": hook.url}) as p:
        yield p


def post(p: Proxy, path: str, body: Any, key: str = MASTER) -> tuple[int, Any]:
    s, b, _ = p.request("POST", path, body, key)
    return s, b


def get(p: Proxy, path: str, key: str = MASTER) -> tuple[int, Any]:
    s, b, _ = p.request("GET", path, None, key)
    return s, b


def key_of(p: Proxy, body: dict[str, Any]) -> str:
    s, b = post(p, "/key/generate", body)
    assert s == 200, b
    return str(b["key"])


def chat(p: Proxy, key: str, model: str = "custom-model", **extra: Any) -> tuple[int, Any, dict[str, str]]:
    return p.request("POST", "/chat/completions",
                     {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}, key)


def refused_for_budget(reply: tuple[int, Any, dict[str, str]]) -> str:
    status, body, headers = reply
    assert status in (400, 422, 429) and body["error"]["type"] == "budget_exceeded", reply
    assert headers.get("x-should-retry") == "false"
    return str(body["error"]["message"])


def sdk(p: Proxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=p.url, max_retries=0)


def test_key_aliases_and_team_model_aliases_resolve_before_access_and_bill_the_target(proxy: Proxy) -> None:
    # LiteLLM's docs: a team alias and a key alias; the key may call only the target model.
    assert post(proxy, "/team/new", {"team_id": "aliased", "model_aliases": {"team-fast": "gpt-4o"}})[0] == 200
    key = key_of(proxy, {"models": ["custom-model", "gpt-4o"], "team_id": "aliased",
                         "aliases": {"my-free-tier": "custom-model"}})
    with sdk(proxy, key) as client:
        reply = client.chat.completions.with_raw_response.create(
            model="my-free-tier", messages=[{"role": "user", "content": "hi"}])
    assert reply.parse().model == "custom-model"
    assert Decimal(reply.headers["x-litellm-response-cost"]) == CUSTOM_COST
    s, _, headers = chat(proxy, key, "team-fast")
    assert s == 200 and Decimal(headers["x-litellm-response-cost"]) == GPT4O_COST
    s, logs = get(proxy, "/spend/logs")
    assert sorted(r["model"] for r in logs) == ["custom-model", "gpt-4o"]
    # The alias is checked as its target: a key limited to custom-model may not reach gpt-4o by alias.
    narrow = key_of(proxy, {"models": ["custom-model"], "aliases": {"sneaky": "gpt-4o"}})
    s, body, _ = chat(proxy, narrow, "sneaky")
    assert s == 403 and "gpt-4o" in body["error"]["message"]


def test_user_new_makes_its_key_with_duration_alias_and_team(proxy: Proxy) -> None:
    assert post(proxy, "/team/new", {"team_id": "onboard"})[0] == 200
    s, user = post(proxy, "/user/new", {"user_id": "ishaan", "user_email": "ishaan@berri.ai", "team_id": "onboard",
                                        "duration": "1h", "key_alias": "ishaan-key", "max_budget": 5})
    assert s == 200, user
    assert user["key_alias"] == "ishaan-key" and user["expires"] is not None
    expires = datetime.fromisoformat(user["expires"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < expires - datetime.now(timezone.utc) <= timedelta(hours=1)
    s, info = get(proxy, f"/key/info?key={user['key']}")
    assert info["info"]["team_id"] == "onboard" and info["info"]["user_id"] == "ishaan"
    s, team = get(proxy, "/team/info?team_id=onboard")
    assert [m["user_id"] for m in team["team_info"]["members_with_roles"]] == ["ishaan"]
    assert chat(proxy, user["key"])[0] == 200


def test_spend_set_on_update_lifts_the_budget_and_is_audited(proxy: Proxy) -> None:
    key = key_of(proxy, {"max_budget": TINY, "user_id": "spender"})
    assert chat(proxy, key)[0] == 200
    refused_for_budget(chat(proxy, key))
    assert post(proxy, "/key/update", {"key": key, "spend": 0}, key)[0] == 403  # only a proxy admin resets spend
    s, updated = post(proxy, "/key/update", {"key": key, "spend": 0})
    assert s == 200 and updated["spend"] == 0
    audit = updated["spend_audit"][-1]
    assert Decimal(audit["from"]) == CUSTOM_COST and audit["to"] == "0" and audit["by"] == "master key"
    assert chat(proxy, key)[0] == 200
    s, user = post(proxy, "/user/update", {"user_id": "spender", "spend": 1.5})
    assert s == 200 and get(proxy, "/user/info?user_id=spender")[1]["user_info"]["spend"] == 1.5


def test_key_on_a_budget_tier_and_a_temporary_budget_increase(proxy: Proxy) -> None:
    assert post(proxy, "/budget/new", {"budget_id": "key-tier", "max_budget": TINY})[0] == 200
    key = key_of(proxy, {"budget_id": "key-tier"})
    assert chat(proxy, key)[0] == 200
    assert "Max budget: 0.00002" in refused_for_budget(chat(proxy, key))
    # LiteLLM's docs: a temporary increase until a date.
    own = key_of(proxy, {"max_budget": TINY})
    assert chat(proxy, own)[0] == 200
    refused_for_budget(chat(proxy, own))
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    s, b = post(proxy, "/key/update", {"key": own, "temp_budget_increase": 100, "temp_budget_expiry": tomorrow})
    assert s == 200, b
    assert chat(proxy, own)[0] == 200
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    assert post(proxy, "/key/update", {"key": own, "temp_budget_expiry": yesterday})[0] == 200
    refused_for_budget(chat(proxy, own))


def test_per_model_budgets_and_limits_on_keys(proxy: Proxy) -> None:
    key = key_of(proxy, {"model_max_budget": {"custom-model": {"budget_limit": TINY, "time_period": "1d"}}})
    assert chat(proxy, key)[0] == 200
    message = refused_for_budget(chat(proxy, key))
    assert "exceeded budget for model=custom-model" in message and message.startswith("LiteLLM Virtual Key")
    assert chat(proxy, key, "gpt-4o")[0] == 200  # other models are not limited by it
    limited = key_of(proxy, {"model_rpm_limit": {"gpt-4o": 1}, "model_tpm_limit": {"custom-model": 1000}})
    assert chat(proxy, limited, "gpt-4o")[0] == 200
    s, body, headers = chat(proxy, limited, "gpt-4o")
    assert s == 429 and "rpm limit 1 for model gpt-4o" in body["error"]["message"] and headers["retry-after"]
    assert chat(proxy, limited, "custom-model")[0] == 200
    daily = key_of(proxy, {"tpd_limit": 10})
    assert chat(proxy, daily)[0] == 200  # 19 tokens
    s, body, _ = chat(proxy, daily)
    assert s == 429 and "tpd limit 10" in body["error"]["message"]


def test_per_model_budget_of_a_tier_with_its_reset_time_for_customers(proxy: Proxy) -> None:
    reset = "2031-01-01T00:00:00+00:00"
    s, tier = post(proxy, "/budget/new", {"budget_id": "tier-m", "budget_duration": "30d", "budget_reset_at": reset,
                                          "model_max_budget": {"custom-model": {"budget_limit": TINY,
                                                                                "time_period": "1d"}}})
    assert s == 200 and tier["budget_reset_at"].startswith("2031-01-01") and tier["model_max_budget"]
    assert post(proxy, "/customer/new", {"user_id": "c-tier", "budget_id": "tier-m"})[0] == 200
    s, info = get(proxy, "/customer/info?end_user_id=c-tier")
    assert info["litellm_budget_table"]["budget_reset_at"].startswith("2031-01-01")
    assert chat(proxy, MASTER, user="c-tier")[0] == 200
    assert "LiteLLM End User: c-tier, exceeded budget for model=custom-model" in refused_for_budget(
        chat(proxy, MASTER, user="c-tier"))


def test_key_types_allowed_routes_and_the_spend_permission(proxy: Proxy) -> None:
    llm_only = key_of(proxy, {"key_type": "llm_api"})
    assert chat(proxy, llm_only)[0] == 200
    assert get(proxy, "/key/info", llm_only)[0] == 403
    read_only = key_of(proxy, {"key_type": "read_only"})
    assert chat(proxy, read_only)[0] == 403 and get(proxy, "/key/info", read_only)[0] == 200
    routes = key_of(proxy, {"allowed_routes": ["/chat/completions"]})
    assert chat(proxy, routes)[0] == 200
    assert proxy.request("POST", "/embeddings", {"model": "custom-model", "input": "x"}, routes)[0] == 403
    spender = key_of(proxy, {"permissions": {"get_spend_routes": True}})
    plain = key_of(proxy, {})
    assert get(proxy, "/global/spend/keys", spender)[0] == 200 and get(proxy, "/global/spend/keys", plain)[0] == 403


def test_team_member_budget_customer_models_tags_and_soft_budget(proxy: Proxy, hook: WebhookReceiver) -> None:
    s, team = post(proxy, "/team/new", {"team_alias": "members-team", "team_member_budget": TINY,
                                        "members_with_roles": [{"role": "user", "user_id": "krrish"}]})
    assert s == 200, team
    member_key = key_of(proxy, {"team_id": team["team_id"], "user_id": "krrish"})
    assert chat(proxy, member_key)[0] == 200
    assert "Max budget in team: 0.00002" in refused_for_budget(chat(proxy, member_key))
    assert post(proxy, "/customer/new", {"user_id": "c-models", "models": ["custom-model"]})[0] == 200
    assert chat(proxy, MASTER, "gpt-4o", user="c-models")[0] == 403
    assert chat(proxy, MASTER, "custom-model", user="c-models")[0] == 200
    tagged = key_of(proxy, {"tags": ["team-a"], "soft_budget": "0.00001"})
    with sdk(proxy, tagged) as client:
        reply = client.chat.completions.create(model="custom-model", messages=[{"role": "user", "content": "x"}],
                                               extra_body={"metadata": {"tags": ["jobID:214590"]}})
    assert reply.model == "custom-model"
    s, rows = get(proxy, "/spend/logs?tags=jobID:214590")
    assert s == 200 and len(rows) == 1 and rows[0]["request_tags"] == ["team-a", "jobID:214590"]
    assert get(proxy, "/spend/logs?tags=nothing-tagged")[1] == []
    events = [e for e in hook.wait_for(2) if e["event"] == "soft_budget_crossed"]  # and one spend_tracked
    assert events and events[0]["event_group"] == "key"
