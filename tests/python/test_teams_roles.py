"""Teams with members, internal-user roles, key lifecycle, routing conveniences and spend views,
end to end against the real proxy — on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, GPT4O_COST, MASTER, config, lago_env


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    db = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        db = create_database(str(request.getfixturevalue("postgres_url")), f"teams_{uuid.uuid4().hex[:10]}")
    with Proxy(config(upstream, db), lago_env(lago, "team_id")) as p:
        yield p


def post(p: Proxy, path: str, body: Any, key: str = MASTER) -> tuple[int, Any]:
    s, b, _ = p.request("POST", path, body, key)
    return s, b


def get(p: Proxy, path: str, key: str = MASTER) -> tuple[int, Any]:
    s, b, _ = p.request("GET", path, None, key)
    return s, b


def call(p: Proxy, key: str, model: str = "custom-model") -> tuple[int, Any]:
    return post(p, "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}, key)


def test_team_lifecycle_and_members(proxy: Proxy) -> None:
    s, t = post(proxy, "/team/new", {"team_id": "eng", "team_alias": "Engineering", "metadata": {"cc": "42"},
                                     "models": ["custom-model"], "max_budget": 10, "tpm_limit": 100000,
                                     "members_with_roles": [{"role": "admin", "user_id": "ann"},
                                                            {"role": "user", "user_email": "bo@example.com"}]})
    assert s == 200, t
    assert [m["role"] for m in t["members_with_roles"]] == ["admin", "user"]
    s, users = get(proxy, "/user/list")
    assert {u["user_id"] for u in users["users"]} >= {"ann"} and any(u["user_email"] == "bo@example.com"
                                                                      for u in users["users"])
    s, b = post(proxy, "/team/member_add", {"team_id": "eng", "member": {"role": "user", "user_id": "ann"}})
    assert s == 400 and "ann" in b["error"]["message"]
    s, b = post(proxy, "/team/member_add", {"team_id": "eng", "member": [{"user_id": "cy"}, {"user_id": "di"}],
                                            "max_budget_in_team": 1})
    assert s == 200 and [m["user_id"] for m in b["added"]] == ["cy", "di"]
    s, b = post(proxy, "/team/member_delete", {"team_id": "eng", "user_id": "zed"})
    assert s == 400 and "zed" in b["error"]["message"]
    s, b = post(proxy, "/team/member_update", {"team_id": "eng", "user_id": "cy", "role": "admin",
                                               "max_budget_in_team": 2})
    assert s == 200 and b["member"]["role"] == "admin" and b["member"]["max_budget_in_team"] == 2
    s, b = post(proxy, "/team/member_delete", {"team_id": "eng", "user_id": "di"})
    assert s == 200
    s, u = get(proxy, "/user/info?user_id=di")
    assert u["teams"] == []
    s, b = post(proxy, "/team/update", {"team_id": "eng", "team_alias": "Eng", "max_budget": 20, "models": [],
                                        "rpm_limit": 50, "metadata": {"cc": "43"}, "budget_duration": "30d"})
    assert s == 200 and b["team_id"] == "eng"  # LiteLLM's shape: the team under `data`
    assert b["data"]["team_alias"] == "Eng" and b["data"]["max_budget"] == 20 and b["data"]["budget_reset_at"]
    s, k = post(proxy, "/key/generate", {"team_id": "eng", "user_id": "ann"})
    assert call(proxy, k["key"])[0] == 200
    s, info = get(proxy, "/team/info?team_id=eng")
    assert Decimal(str(info["team_info"]["spend"])) == CUSTOM_COST and len(info["keys"]) == 1
    assert {m["user_id"] for m in info["team_info"]["members_with_roles"]} == {"ann", "cy", info["team_info"][
        "members_with_roles"][1]["user_id"]}
    post(proxy, "/team/block", {"team_id": "eng"})
    assert call(proxy, k["key"])[0] == 401
    post(proxy, "/team/unblock", {"team_id": "eng"})
    assert call(proxy, k["key"])[0] == 200
    s, b = post(proxy, "/team/delete", {"team_ids": ["eng", "ghost"]})
    assert s == 404 and "ghost" in b["error"]["message"]
    assert call(proxy, k["key"])[0] == 200  # nothing changed
    s, b = post(proxy, "/team/delete", {"team_ids": ["eng"]})
    assert s == 200 and b["deleted_teams"] == ["eng"] and b["deleted_keys"] == [k["token"]]
    assert call(proxy, k["key"])[0] == 401  # its keys went with it


def test_users_keys_and_model_listing(proxy: Proxy) -> None:
    post(proxy, "/team/new", {"team_id": "t", "models": ["custom-model", "gpt-4o"]})
    s, u = post(proxy, "/user/new", {"user_id": "u", "user_email": "u@example.com", "teams": ["t"],
                                     "models": ["custom-model"], "user_role": "internal_user"})
    assert s == 200 and u["key"].startswith("sk-") and u["teams"] == ["t"]
    s, k = post(proxy, "/key/generate", {"user_id": "u", "team_id": "t", "models": ["all-team-models"],
                                         "key_alias": "u-key"})
    client = openai.OpenAI(api_key=k["key"], base_url=proxy.url + "/v1", max_retries=0)
    # The team's models (as in LiteLLM, the user's list governs only the user's keys outside teams).
    assert [m.id for m in client.models.list()] == ["custom-model", "gpt-4o"]
    client.close()
    assert call(proxy, k["key"], "gpt-4o")[0] == 200 and call(proxy, u["key"], "gpt-4o")[0] == 403
    assert call(proxy, k["key"])[0] == 200
    s, r = post(proxy, "/key/regenerate", {"key": k["key"]})
    assert s == 200 and r["key"] != k["key"] and r["key_alias"] == "u-key"
    assert call(proxy, k["key"])[0] == 401
    assert call(proxy, r["key"])[0] == 200
    s, info = get(proxy, f"/key/info?key={r['key']}")
    assert Decimal(str(info["info"]["spend"])) == 2 * CUSTOM_COST + GPT4O_COST  # the record kept its spend
    post(proxy, "/key/block", {"key": r["key"]})
    assert call(proxy, r["key"])[0] == 401
    post(proxy, "/key/unblock", {"key": r["key"]})
    assert call(proxy, r["key"])[0] == 200
    for i in range(3):
        post(proxy, "/key/generate", {"user_id": "u", "key_alias": f"extra-{i}"})
    s, page = get(proxy, "/key/list?user_id=u&size=2&page=2")
    assert page["total_count"] == 5 and len(page["keys"]) == 2 and page["total_pages"] == 3
    s, page = get(proxy, "/key/list?key_alias=u-key")
    assert [x["key_alias"] for x in page["keys"]] == ["u-key"]
    s, b = post(proxy, "/user/update", {"user_id": "u", "user_alias": "You", "max_budget": 5})
    assert s == 200 and b["user_id"] == "u" and b["data"]["user_alias"] == "You" and b["data"]["max_budget"] == 5
    s, b = post(proxy, "/user/new", {"user_id": "u"})
    assert s == 400 and b["error"]["param"] == "user_id"
    s, b = post(proxy, "/user/delete", {"user_ids": ["u"]})
    assert s == 200 and len(b["deleted_keys"]) == 5
    assert call(proxy, r["key"])[0] == 401
    s, b = get(proxy, "/user/info?user_id=u")
    assert s == 404


def test_budgets_at_every_level_name_the_first_crossed(proxy: Proxy) -> None:
    # each budget below is crossed by the first call (0.000026); the next call is refused, naming it
    # (the team's budget: 3 calls before it + 1 = 0.000104 crosses 0.00008)
    post(proxy, "/team/new", {"team_id": "tb", "members_with_roles": [{"user_id": "m", "role": "user"}]})
    cases = [
        ({"max_budget": 0.00001}, {}, {}, "Budget has been exceeded! Current cost: "),
        ({}, {"max_budget": 0.00001}, {}, "ExceededBudget: User="),
        ({}, {}, {"max_budget_in_team": 0.00001}, "Budget has been exceeded! Team=tb Member="),
        ({}, {}, {"team": 0.00008}, "Budget has been exceeded! Team=tb Current cost: 0.000104, Max budget: 0.00008"),
    ]
    for i, (key_fields, user_fields, member_fields, prefix) in enumerate(cases):
        user = f"m{i}"
        post(proxy, "/user/new", {"user_id": user, "auto_create_key": False, **user_fields})
        post(proxy, "/team/member_add", {"team_id": "tb", "member": {"user_id": user},
                                         **({"max_budget_in_team": member_fields["max_budget_in_team"]}
                                            if "max_budget_in_team" in member_fields else {})})
        if "team" in member_fields:
            post(proxy, "/team/update", {"team_id": "tb", "max_budget": member_fields["team"]})
        s, k = post(proxy, "/key/generate", {"team_id": "tb", "user_id": user, **key_fields})
        s, b = call(proxy, k["key"])
        assert s == 200, (i, b)
        s, b = call(proxy, k["key"])
        assert s == 422 and b["error"]["message"].startswith(prefix), (i, b)


def test_wildcard_and_text_completion_deployments(upstream: FakeOpenAI, lago: FakeLago) -> None:
    cfg = config(upstream, None)
    cfg["model_list"] += [
        {"model_name": "*", "litellm_params": {"model": "openai/*", "api_base": upstream.url, "api_key": "k"}},
        {"model_name": "instruct", "litellm_params": {"model": "text-completion-openai/gpt-3.5-turbo-instruct",
                                                      "api_base": upstream.url, "api_key": "k"}},
    ]
    with Proxy(cfg, lago_env(lago, "end_user_id")) as p:
        s, b, h = p.request("POST", "/chat/completions", {"model": "gpt-4o-mini", "user": "c",
                                                          "messages": [{"role": "user", "content": "x"}]}, MASTER)
        assert s == 200 and b["model"] == "gpt-4o-mini"
        assert upstream.requests[-1]["body"]["model"] == "gpt-4o-mini"
        assert Decimal(h["x-litellm-response-cost"]) == Decimal("0.0000060")  # 12*1.5e-7 + 7*6e-7
        s, b, h = p.request("POST", "/completions", {"model": "instruct", "prompt": "x", "user": "c"}, MASTER)
        assert s == 200 and upstream.requests[-1]["path"].endswith("/completions")
        assert Decimal(h["x-litellm-response-cost"]) == Decimal("0.000032")  # 12*1.5e-6 + 7*2e-6
        s, b, _ = p.request("POST", "/chat/completions", {"model": "instruct", "messages": [{"role": "user",
                                                                                              "content": "x"}]}, MASTER)
        assert s == 400 and b["error"]["param"] == "model"
        s, key, _ = p.request("POST", "/key/generate", {"models": ["custom-model"]}, MASTER)
        s, b, _ = p.request("POST", "/chat/completions", {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "x"}]}, key["key"])
        assert s == 403  # a restricted key does not reach the wildcard


def test_global_spend_views(proxy: Proxy) -> None:
    s, k1 = post(proxy, "/key/generate", {"team_id": "a", "key_alias": "k1"})
    s, k2 = post(proxy, "/key/generate", {"team_id": "b", "key_alias": "k2"})
    call(proxy, k1["key"])
    call(proxy, k2["key"], "gpt-4o")
    post(proxy, "/chat/completions", {"model": "custom-model", "user": "cust",
                                      "messages": [{"role": "user", "content": "x"}]}, k1["key"])
    s, teams = get(proxy, "/global/spend/teams")
    assert [(t["team_id"], Decimal(str(t["total_spend"]))) for t in teams["total_spend_per_team"]] == [
        ("b", GPT4O_COST), ("a", 2 * CUSTOM_COST)]
    assert teams["teams"] == ["b", "a"]  # named by alias, else id (these have no alias)
    assert sum(Decimal(str(v)) for d in teams["daily_spend"] for kk, v in d.items() if kk != "date") == \
        GPT4O_COST + 2 * CUSTOM_COST
    s, keys = get(proxy, "/global/spend/keys?limit=1")
    assert [k["key_alias"] for k in keys] == ["k2"]
    s, users = get(proxy, "/global/spend/end_users")
    assert [(u["end_user"], Decimal(str(u["spend"]))) for u in users] == [("cust", CUSTOM_COST)]


def test_migration_from_litellm_docs_bills_team_and_user(upstream: FakeOpenAI, lago: FakeLago) -> None:
    """Teams, users and keys made exactly as LiteLLM's docs show, then calls billed in Lago."""
    with Proxy(config(upstream, None), lago_env(lago, "team_id")) as p:
        s, team = post(p, "/team/new", {"team_alias": "my-new-team_4", "members_with_roles": [
            {"role": "admin", "user_id": "user-1234", "user_email": "krrish@berri.ai"}]})
        assert s == 200, team
        team_id = team["team_id"]
        s, user = post(p, "/user/new", {"user_email": "krrish@berri.ai", "user_role": "internal_user",
                                        "user_id": "krrish-1"})
        assert s == 200, user
        s, b = post(p, "/team/member_add", {"team_id": team_id, "member": {"role": "user", "user_id": "krrish-1"}})
        assert s == 200, b
        s, key = post(p, "/key/generate", {"user_id": "krrish-1", "team_id": team_id,
                                           "models": ["all-team-models"], "metadata": {"purpose": "migration"}})
        assert s == 200, key
        client = openai.OpenAI(api_key=key["key"], base_url=p.url, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        client.close()
        events = lago.wait_for(3, timeout=10)
        assert {e["external_subscription_id"] for e in events} == {team_id}
        assert {e["properties"]["user_id"] for e in events} == {"krrish-1"}
        s, u = get(p, "/user/info?user_id=krrish-1")
        assert Decimal(str(u["user_info"]["spend"])) == 3 * GPT4O_COST


ROLES = ["master", "proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer", "team_admin"]
_n = itertools.count()


def _routes(other_key: str, other_team: str, admin_team: str, member: str) -> list[tuple[str, str, Any, dict[str, int]]]:
    """(method, path, body, expected status per role); 200 for the master key unless noted."""
    def exp(admin_viewer: int, user: int, user_viewer: int, team_admin: int | None = None) -> dict[str, int]:
        return {"master": 200, "proxy_admin": 200, "proxy_admin_viewer": admin_viewer, "internal_user": user,
                "internal_user_viewer": user_viewer, "team_admin": user if team_admin is None else team_admin}
    u = lambda: f"x{next(_n)}"  # noqa: E731 - fresh ids so each admin call succeeds
    return [
        ("GET", "/key/list", None, exp(200, 200, 200)),
        ("GET", f"/key/info?key={other_key}", None, exp(200, 403, 403)),
        ("POST", "/key/generate", lambda: {}, exp(403, 200, 403)),
        ("POST", "/key/generate", lambda: {"user_id": "someone-else"}, exp(403, 403, 403)),
        ("POST", "/key/generate", lambda: {"team_id": admin_team, "user_id": member}, exp(403, 403, 403, 200)),
        ("POST", "/key/update", lambda: {"key": other_key, "metadata": {"n": u()}}, exp(403, 403, 403)),
        ("POST", "/key/block", lambda: {"key": other_key}, exp(403, 403, 403)),
        ("POST", "/key/unblock", lambda: {"key": other_key}, exp(403, 403, 403)),
        ("POST", "/team/new", lambda: {"team_id": u()}, exp(403, 403, 403)),
        ("GET", "/team/list", None, exp(200, 200, 200)),
        ("GET", f"/team/info?team_id={other_team}", None, exp(200, 403, 403)),
        ("POST", "/team/update", lambda: {"team_id": other_team, "metadata": {"n": u()}}, exp(403, 403, 403)),
        ("POST", "/team/member_add", lambda: {"team_id": admin_team, "member": {"user_id": u()}},
         exp(403, 403, 403, 200)),
        ("POST", "/team/member_add", lambda: {"team_id": other_team, "member": {"user_id": u()}}, exp(403, 403, 403)),
        ("POST", "/user/new", lambda: {"user_id": u(), "auto_create_key": False}, exp(403, 403, 403)),
        ("GET", "/user/list", None, exp(200, 403, 403)),
        ("GET", "/user/info?user_id=owner", None, exp(200, 403, 403)),
        ("GET", "/customer/list", None, exp(200, 403, 403)),
        ("POST", "/customer/new", lambda: {"user_id": u()}, exp(403, 403, 403)),
        ("POST", "/budget/new", lambda: {"budget_id": u()}, exp(403, 403, 403)),
        ("GET", "/budget/list", None, exp(200, 403, 403)),
        ("GET", "/spend/logs", None, exp(200, 200, 200)),
        ("GET", "/global/spend/keys", None, exp(200, 403, 403)),
    ]


def test_role_matrix(upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream, None), lago_env(lago, "end_user_id")) as p:
        post(p, "/team/new", {"team_id": "other-team"})
        post(p, "/team/new", {"team_id": "admin-team", "members_with_roles": [
            {"user_id": "ta", "role": "admin"}, {"user_id": "member", "role": "user"}]})
        s, other = post(p, "/key/generate", {"user_id": "owner", "team_id": "other-team"})
        keys = {"master": MASTER}
        for role in ROLES[1:]:
            user_role = "internal_user" if role == "team_admin" else role
            user_id = "ta" if role == "team_admin" else f"user-{role}"
            if role != "team_admin":
                post(p, "/user/new", {"user_id": user_id, "user_role": user_role, "auto_create_key": False})
            else:
                post(p, "/user/update", {"user_id": "ta", "user_role": "internal_user"})
            s, k = post(p, "/key/generate", {"user_id": user_id})
            assert s == 200, k
            keys[role] = k["key"]
        failures = []
        for method, path, body, expected in _routes(other["key"], "other-team", "admin-team", "member"):
            for role in ROLES:
                payload = body() if callable(body) else body
                s, b, _ = p.request(method, path, payload, keys[role])
                if s != expected[role]:
                    failures.append(f"{role:22} {method} {path} {payload}: {s} (expected {expected[role]}) {b}")
                if s == 403:
                    assert b["error"]["type"] == "auth_error"
        assert not failures, "\n".join(failures)
