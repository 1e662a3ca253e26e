"""Management replies in LiteLLM's shapes (llmbill adds fields, never drops LiteLLM's), end to end on
SQLite and PostgreSQL, with the request bodies of LiteLLM's documentation: /key/generate,
/team/update, /team/member_delete, /user/update by email, /global/spend/teams, /global/spend/report
by team, and /spend/logs?request_id= with the reply's own id (openai SDK, plain and streamed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, GPT4O_COST, MASTER, config, lago_env

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    db = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        db = create_database(str(request.getfixturevalue("postgres_url")), f"replies_{uuid.uuid4().hex[:10]}")
    with Proxy(config(upstream, db), lago_env(lago, "team_id")) as p:
        yield p


def post(p: Proxy, path: str, body: Any, key: str = MASTER) -> Any:
    s, b, _ = p.request("POST", path, body, key)
    assert s == 200, (path, b)
    return b


def get(p: Proxy, path: str, key: str = MASTER) -> Any:
    s, b, _ = p.request("GET", path, None, key)
    assert s == 200, (path, b)
    return b


def test_key_team_and_user_replies(proxy: Proxy) -> None:
    made = post(proxy, "/key/generate", {"models": ["gpt-4o"], "metadata": {"user": "ishaan@berri.ai"}})
    assert made["key"].startswith("sk-") and made["token_id"] == made["token"] and len(made["token_id"]) == 64
    assert made["updated_at"] == made["created_at"]
    updated = post(proxy, "/key/update", {"key": made["key"], "max_budget": 10})
    assert updated["updated_at"] > made["updated_at"]
    team = post(proxy, "/team/new", {"team_alias": "my-new-team", "members_with_roles": [
        {"role": "admin", "user_id": "krrish@berri.ai"}, {"role": "user", "user_id": "ishaan@berri.ai"}]})
    reply = post(proxy, "/team/update", {"team_id": team["team_id"], "max_budget": 10})
    assert set(reply) == {"team_id", "data"} and reply["team_id"] == team["team_id"]
    assert reply["data"]["max_budget"] == 10 and reply["data"]["team_alias"] == "my-new-team"
    reply = post(proxy, "/team/member_delete", {"team_id": team["team_id"], "user_id": "ishaan@berri.ai"})
    assert reply["team_id"] == team["team_id"] and reply["team_alias"] == "my-new-team"  # the updated team
    assert [m["user_id"] for m in reply["members_with_roles"]] == ["krrish@berri.ai"]
    assert reply["removed"]["user_id"] == "ishaan@berri.ai"
    post(proxy, "/user/new", {"user_id": "krrish", "user_email": "krrish@berri.ai"})
    reply = post(proxy, "/user/update", {"user_email": "krrish@berri.ai", "user_role": "proxy_admin_viewer"})
    assert reply["user_id"] == "krrish" and reply["data"]["user_role"] == "proxy_admin_viewer"
    assert reply["data"]["user_email"] == "krrish@berri.ai"
    assert get(proxy, "/user/info?user_id=krrish")["user_info"]["user_role"] == "proxy_admin_viewer"
    s, b, _ = proxy.request("POST", "/user/update", {"user_email": "nobody@berri.ai", "max_budget": 1}, MASTER)
    assert s == 404 and b["error"]["param"] == "user_email" and "nobody@berri.ai" in b["error"]["message"]


def test_spend_views_name_teams_by_alias(proxy: Proxy) -> None:
    post(proxy, "/team/new", {"team_id": "t-web", "team_alias": "Web"})
    post(proxy, "/team/new", {"team_id": "t-api"})  # no alias: named by its id
    web = post(proxy, "/key/generate", {"team_id": "t-web"})
    api = post(proxy, "/key/generate", {"team_id": "t-api"})
    alone = post(proxy, "/key/generate", {})
    for key, model in ((web, "gpt-4o"), (api, "custom-model"), (api, "custom-model"), (alone, "custom-model")):
        s, b, _ = proxy.request("POST", "/chat/completions", {"model": model, "messages": HI}, key["key"])
        assert s == 200, b
    teams = get(proxy, "/global/spend/teams")
    assert set(teams) >= {"daily_spend", "teams", "total_spend_per_team"}
    assert teams["teams"] == ["Web", "t-api", "Unassigned"]
    assert [(t["team_id"], t["team_alias"], Decimal(str(t["total_spend"]))) for t in teams["total_spend_per_team"]] \
        == [("t-web", "Web", GPT4O_COST), ("t-api", None, 2 * CUSTOM_COST), (None, "Unassigned", CUSTOM_COST)]
    [today] = teams["daily_spend"]
    assert today["date"] == datetime.now(timezone.utc).date().isoformat()
    assert {k: Decimal(str(v)) for k, v in today.items() if k != "date"} == {
        "Web": GPT4O_COST, "t-api": 2 * CUSTOM_COST, "Unassigned": CUSTOM_COST}
    [day] = get(proxy, "/global/spend/report?group_by=team")
    assert [(g["team_name"], g["team_id"], g["requests"]) for g in day["teams"]] == [
        ("Web", "t-web", 1), ("t-api", "t-api", 2), ("Unassigned Team", None, 1)]


def test_spend_logs_find_a_call_by_its_reply_id(proxy: Proxy) -> None:
    client = openai.OpenAI(api_key=MASTER, base_url=proxy.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="custom-model", messages=HI)
    completion = raw.parse()
    call_id = raw.headers["x-litellm-call-id"]
    assert completion.id.startswith("chatcmpl-") and completion.id != call_id
    chunks = list(client.chat.completions.create(model="custom-model", messages=HI, stream=True))
    streamed_id = chunks[0].id
    client.close()
    for asked, reply_id in ((completion.id, completion.id), (call_id, completion.id), (streamed_id, streamed_id)):
        [row] = get(proxy, f"/spend/logs?request_id={asked}")
        assert row["response_id"] == reply_id and Decimal(str(row["spend"])) == CUSTOM_COST
    [row] = get(proxy, f"/spend/logs?request_id={completion.id}")
    assert row["request_id"] == call_id  # the call id (Lago's transaction_id) stays the row's key
    assert get(proxy, "/spend/logs?request_id=chatcmpl-unknown") == []
    mine = post(proxy, "/key/generate", {})
    s, rows, _ = proxy.request("GET", f"/spend/logs?request_id={completion.id}", None, mine["key"])
    assert s == 200 and rows == []  # a key reads only its own calls, whichever id it names


def test_spend_logs_find_a_native_messages_call_by_its_msg_id(upstream: FakeOpenAI, lago: FakeLago) -> None:
    """/v1/messages on an Anthropic deployment: the id is Anthropic's (`msg_…`; in a stream, inside
    message_start's `message`)."""
    import anthropic

    from tests.python.fakes.anthropic_upstream import FakeAnthropic

    with FakeAnthropic() as fake:
        cfg = config(upstream, None)
        cfg["model_list"].append({"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": fake.url, "api_key": fake.api_key}})
        with Proxy(cfg, lago_env(lago, "team_id")) as proxy:
            client = anthropic.Anthropic(api_key=MASTER, base_url=proxy.url, max_retries=0)
            plain = client.messages.create(model="claude", max_tokens=20, messages=HI)
            with client.messages.stream(model="claude", max_tokens=20, messages=HI) as stream:
                streamed = stream.get_final_message()
            client.close()
            assert plain.id.startswith("msg_") and streamed.id.startswith("msg_") and plain.id != streamed.id
            for reply_id in (plain.id, streamed.id):
                [row] = get(proxy, f"/spend/logs?request_id={reply_id}")
                assert row["response_id"] == reply_id and row["model"] == "claude"
