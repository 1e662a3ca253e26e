"""`models` lists as LiteLLM's proxy reads them (llmbill.proxy.model_access): access groups,
all-team-models, all-proxy-models, no-default-models, wildcards and names not deployed yet — the
rules themselves, then end to end (raw HTTP and the openai SDK) on SQLite and PostgreSQL, with the
request bodies LiteLLM's documentation shows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmbill.proxy.config import ProxyConfig, load_config_dict
from llmbill.proxy.model_access import governing, grants, listed, refusing
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, lago_env

PRICES = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}


def model_list(base: str, wildcard: bool) -> list[dict[str, Any]]:
    """gpt-4o and llama in access group beta-models; custom-model in none; llama served by Groq."""
    up = {"api_base": base, "api_key": "upstream-key"}
    models: list[dict[str, Any]] = [
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", **up},
         "model_info": {"access_groups": ["beta-models"]}},
        {"model_name": "custom-model", "litellm_params": {"model": "openai/my-model", **up, **PRICES}},
        {"model_name": "llama", "litellm_params": {"model": "groq/llama-3.1-8b-instant", **up, **PRICES},
         "model_info": {"access_groups": ["beta-models", "cheap"]}},
    ]
    if wildcard:  # LiteLLM's "route every other name to OpenAI" deployment
        models.append({"model_name": "*", "litellm_params": {"model": "openai/*", **up}})
    return models


def catalog(wildcard: bool = False) -> ProxyConfig:
    return load_config_dict({"model_list": model_list("http://127.0.0.1:9", wildcard)})


# -- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("models, allowed", [
    ([], {"gpt-4o", "custom-model", "llama", "o3-mini"}),  # no list: no restriction
    (["beta-models"], {"gpt-4o", "llama"}),
    (["cheap", "custom-model"], {"llama", "custom-model"}),
    (["all-proxy-models"], {"gpt-4o", "custom-model", "llama", "o3-mini"}),
    (["*"], {"gpt-4o", "custom-model", "llama", "o3-mini"}),
    (["openai/*"], {"gpt-4o", "custom-model"}),  # by the deployments' upstream provider
    (["groq/*"], {"llama"}),
    (["gpt-*"], {"gpt-4o"}),  # by the name
    (["o3-mini"], {"o3-mini"}),  # not deployed: granted, callable once something serves it
    (["all-team-models"], set()),  # only meaningful on a key (resolved) or a team (governing)
])
def test_grants_each_kind_of_entry(models: list[str], allowed: set[str]) -> None:
    cfg = catalog()
    assert {m for m in ("gpt-4o", "custom-model", "llama", "o3-mini") if grants(cfg, models, m)} == allowed


def test_wildcards_match_what_a_wildcard_deployment_serves() -> None:
    cfg = catalog(wildcard=True)
    assert grants(cfg, ["openai/*"], "gpt-4o-mini")  # served by openai/* as openai/gpt-4o-mini
    assert not grants(cfg, ["groq/*"], "gpt-4o-mini")
    assert not grants(cfg, ["gpt-4o"], "gpt-4o-mini")  # a name is not a prefix
    assert grants(cfg, ["gpt-4o.*"], "gpt-4o.x") and not grants(cfg, ["gpt-4o.*"], "gpt-4oXx")  # `.` is literal


def test_access_group_with_a_wildcard_deployment_brings_every_undeployed_name() -> None:
    cfg = load_config_dict({"model_list": [
        {"model_name": "named", "litellm_params": {"model": "mock/gpt-4o"}},
        {"model_name": "*", "litellm_params": {"model": "openai/*", "api_key": "k"},
         "model_info": {"access_groups": ["anything-openai"]}}]})
    assert cfg.access_groups == {"anything-openai": ["*"]}
    assert grants(cfg, ["anything-openai"], "o1") and not grants(cfg, ["anything-openai"], "named")


def test_whose_lists_govern_a_key() -> None:
    cfg = catalog(wildcard=True)
    team = {"team_id": "t", "models": ["beta-models"]}
    user = {"user_id": "u", "models": ["custom-model"]}
    in_team = governing({"team_id": "t", "user_id": "u", "models": ["all-team-models"]}, team, user)
    assert listed(cfg, in_team) == ["gpt-4o", "llama"]  # the team's list; the user's governs personal keys only
    assert refusing(cfg, in_team, "custom-model") == "team"
    personal = governing({"user_id": "u", "models": []}, None, user)
    assert listed(cfg, personal) == ["custom-model"] and refusing(cfg, personal, "gpt-4o") == "user"
    assert listed(cfg, governing({"models": ["all-team-models"]}, None, None)) == ["gpt-4o", "custom-model",
                                                                                  "llama"]  # no team: no limit
    boxed = {"user_id": "u", "models": ["no-default-models"]}
    assert refusing(cfg, governing({"user_id": "u"}, None, boxed), "gpt-4o") == "user"
    assert listed(cfg, governing({"user_id": "u"}, None, boxed)) == []
    assert refusing(cfg, governing({"user_id": "u", "team_id": "t"}, team, boxed), "gpt-4o") is None
    everything = governing({"team_id": "t", "models": ["all-team-models"]}, {"models": ["all-team-models"]}, None)
    assert refusing(cfg, everything, "o3-mini") is None  # a team's all-team-models is every model


def test_listing_shows_undeployed_names_only_when_a_wildcard_serves_them() -> None:
    rules = governing({"models": ["o3-mini", "beta-models", "openai/*"]}, None, None)
    assert listed(catalog(wildcard=True), rules) == ["gpt-4o", "custom-model", "llama", "o3-mini"]
    assert listed(catalog(wildcard=False), rules) == ["gpt-4o", "custom-model", "llama"]


def test_config_reads_access_groups_and_refuses_a_mistyped_one() -> None:
    assert catalog().access_groups == {"beta-models": ["gpt-4o", "llama"], "cheap": ["llama"]}
    from llmbill.billing import ConfigError

    with pytest.raises(ConfigError, match=r"model_list\[0\]\.model_info\.access_groups"):
        load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"},
                                          "model_info": {"access_groups": "beta"}}]})


def test_module_examples() -> None:
    import doctest

    from llmbill.proxy import model_access

    assert doctest.testmod(model_access).failed == 0


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    general: dict[str, Any] = {"master_key": MASTER}
    if request.param == "postgres":
        from tests.python.pg import create_database

        general["database_url"] = create_database(str(request.getfixturevalue("postgres_url")),
                                                  f"models_{uuid.uuid4().hex[:10]}")
    cfg = {"model_list": model_list(upstream.url, wildcard=True), "litellm_settings": {"callbacks": ["lago"]},
           "general_settings": general}
    with Proxy(cfg, lago_env(lago, "team_id")) as p:
        yield p


def post(p: Proxy, path: str, body: Any, key: str = MASTER) -> tuple[int, Any]:
    s, b, _ = p.request("POST", path, body, key)
    return s, b


def chat(p: Proxy, key: str, model: str) -> tuple[int, Any]:
    return post(p, "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}, key)


def sdk(p: Proxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=p.url + "/v1", max_retries=0)


def test_litellm_doc_bodies_are_stored_and_resolve_at_call_time(proxy: Proxy, upstream: FakeOpenAI) -> None:
    # LiteLLM's docs: a team limited to a model this proxy does not name (served by the wildcard)...
    s, team = post(proxy, "/team/new", {"team_alias": "o3 team", "models": ["o3-mini"]})
    assert s == 200 and team["models"] == ["o3-mini"], team
    s, key = post(proxy, "/key/generate", {"team_id": team["team_id"]})
    client = sdk(proxy, key["key"])
    assert [m.id for m in client.models.list()] == ["o3-mini"]
    assert client.chat.completions.create(model="o3-mini", messages=[{"role": "user", "content": "hi"}]).model \
        == "o3-mini"
    assert upstream.requests[-1]["body"]["model"] == "o3-mini"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.body["type"] == "team_model_access_denied"  # type: ignore[index]
    client.close()
    # ...and a key naming an access group, a model only the wildcard serves and one nothing serves.
    s, key = post(proxy, "/key/generate", {"models": ["beta-models", "gpt-4", "dall-e-3"]})
    assert s == 200 and key["models"] == ["beta-models", "gpt-4", "dall-e-3"], key
    s, info, _ = proxy.request("GET", f"/key/info?key={key['key']}", None, MASTER)
    assert info["info"]["models"] == ["beta-models", "gpt-4", "dall-e-3"]
    client = sdk(proxy, key["key"])
    assert [m.id for m in client.models.list()] == ["gpt-4o", "llama", "gpt-4", "dall-e-3"]
    assert chat(proxy, key["key"], "llama")[0] == 200 and chat(proxy, key["key"], "gpt-4")[0] == 200
    s, b = chat(proxy, key["key"], "custom-model")
    assert s == 403 and b["error"]["type"] == "key_model_access_denied" and b["error"]["param"] == "model"
    client.close()


def test_special_names_and_wildcards(proxy: Proxy) -> None:
    post(proxy, "/team/new", {"team_id": "beta", "models": ["beta-models"]})
    s, k = post(proxy, "/key/generate", {"team_id": "beta", "models": ["all-team-models"]})
    client = sdk(proxy, k["key"])
    assert [m.id for m in client.models.list()] == ["gpt-4o", "llama"]
    client.close()
    assert chat(proxy, k["key"], "custom-model")[0] == 403
    s, k = post(proxy, "/key/generate", {"models": ["all-proxy-models"]})
    s, models, _ = proxy.request("GET", "/v1/models", None, k["key"])
    assert [m["id"] for m in models["data"]] == ["gpt-4o", "custom-model", "llama"]
    assert chat(proxy, k["key"], "o1-mini")[0] == 200  # every model, the wildcard's too
    s, k = post(proxy, "/key/generate", {"models": ["openai/*"]})
    assert [chat(proxy, k["key"], m)[0] for m in ("gpt-4o", "custom-model", "llama", "gpt-4o-mini")] == \
        [200, 200, 403, 200]
    # A user with no-default-models: its personal key calls nothing; in a team, the team's list decides.
    s, u = post(proxy, "/user/new", {"user_id": "krrish", "models": ["no-default-models"]})
    assert s == 200 and u["models"] == ["no-default-models"]
    s, b = chat(proxy, u["key"], "gpt-4o")
    assert s == 403 and "no-default-models" in b["error"]["message"]
    s, models, _ = proxy.request("GET", "/models", None, u["key"])
    assert models["data"] == []
    s, k = post(proxy, "/key/generate", {"user_id": "krrish", "team_id": "beta"})
    assert chat(proxy, k["key"], "gpt-4o")[0] == 200 and chat(proxy, k["key"], "custom-model")[0] == 403
    s, b = post(proxy, "/user/update", {"user_id": "krrish", "models": ["custom-model"]})
    s, k = post(proxy, "/key/generate", {"user_id": "krrish"})  # (the auto key copied no-default-models)
    assert chat(proxy, k["key"], "custom-model")[0] == 200
    s, b = chat(proxy, k["key"], "gpt-4o")
    assert s == 403 and b["error"]["type"] == "user_model_access_denied"
