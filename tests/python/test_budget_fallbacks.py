"""A key's `budget_fallbacks` (proxy/budget_fallbacks.py), end to end on SQLite and PostgreSQL with the
bodies of LiteLLM's budget-fallbacks docs: once the key's `model_max_budget` for a model is spent, its
calls go to the first fallback admitted — over its own budget or not the caller's, a fallback is
skipped — and are billed as the model that answered; nothing else reroutes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_litellm_fields_e2e import TINY, chat, get, key_of, post, refused_for_budget
from tests.python.test_proxy_e2e import CUSTOM_COST, GPT4O_COST, MASTER, config, lago_env

BACKUP_COST = Decimal(12) * Decimal("3e-6") + Decimal(7) * Decimal("4e-6")  # the fake's 12 in, 7 out


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    db = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        db = create_database(str(request.getfixturevalue("postgres_url")), f"budget_fb_{uuid.uuid4().hex[:10]}")
    cfg = config(upstream, db)
    cfg["model_list"].append({"model_name": "backup", "litellm_params": {
        "model": "openai/backup-model", "api_base": upstream.url, "api_key": "upstream-key",
        "input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06}})
    with Proxy(cfg, lago_env(lago, "team_id")) as p:
        yield p


def budget(*models: str) -> dict[str, Any]:
    return {m: {"budget_limit": TINY, "time_period": "1d"} for m in models}


def test_a_spent_model_budget_sends_the_call_down_the_keys_chain_billed_as_the_model_that_answered(
        proxy: Proxy, upstream: FakeOpenAI) -> None:
    chain = {"custom-model": ["gpt-4o", "backup"]}
    key = key_of(proxy, {"model_max_budget": budget("custom-model", "gpt-4o"), "budget_fallbacks": chain})
    assert get(proxy, f"/key/info?key={key}")[1]["info"]["budget_fallbacks"] == chain
    with openai.OpenAI(api_key=key, base_url=proxy.url, max_retries=0) as client:
        costs, models = [], []
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="custom-model", messages=[{"role": "user", "content": "hi"}])
            models.append(raw.parse().model)
            costs.append(Decimal(raw.headers["x-litellm-response-cost"]))
    # custom-model until its budget is spent, then gpt-4o until its own is, then backup.
    assert models == ["custom-model", "gpt-4o", "backup"]
    assert costs == [CUSTOM_COST, GPT4O_COST, BACKUP_COST]
    assert [c["body"]["model"] for c in upstream.calls("/chat/completions")] == ["my-model", "gpt-4o", "backup-model"]
    s, logs = get(proxy, "/spend/logs")
    assert sorted((r["model"], Decimal(str(r["spend"]))) for r in logs) == sorted(zip(models, costs))
    message = refused_for_budget(chat(proxy, key, "gpt-4o"))  # no chain of its own: refused as before
    assert "exceeded budget for model=gpt-4o" in message


def test_a_fallback_the_key_may_not_call_is_skipped_and_with_none_left_the_original_refusal(proxy: Proxy) -> None:
    key = key_of(proxy, {"models": ["custom-model", "backup"], "model_max_budget": budget("custom-model", "backup"),
                         "budget_fallbacks": {"custom-model": ["gpt-4o", "not-deployed", "backup"]}})
    assert chat(proxy, key)[0] == 200
    s, reply, _ = chat(proxy, key)
    assert s == 200 and reply["model"] == "backup"  # gpt-4o is not the key's, not-deployed is nowhere
    message = refused_for_budget(chat(proxy, key))  # every fallback over budget: custom-model's refusal
    assert "exceeded budget for model=custom-model" in message


def test_only_the_keys_own_model_budget_reroutes(proxy: Proxy) -> None:
    assert post(proxy, "/team/new", {"team_id": "fb-team", "model_max_budget": budget("custom-model")})[0] == 200
    key = key_of(proxy, {"team_id": "fb-team", "budget_fallbacks": {"custom-model": ["gpt-4o"]}})
    assert chat(proxy, key)[0] == 200
    assert "LiteLLM Team: fb-team, exceeded budget for model=custom-model" in refused_for_budget(chat(proxy, key))


@pytest.mark.parametrize("value", [{"custom-model": "gpt-4o"}, {"custom-model": []}, ["gpt-4o"]])
def test_a_malformed_chain_is_a_400_naming_it(proxy: Proxy, value: Any) -> None:
    s, body = post(proxy, "/key/generate", {"budget_fallbacks": value})
    assert s == 400 and body["error"]["param"] == "budget_fallbacks", body
