"""LiteLLM's key_generation_settings and upperbound_key_generate_params: parsed, and enforced by a
real proxy (keygen_settings.py, permissions.place_key, routes/keys.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmbill.billing import ConfigError
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.keygen_settings import check_upper_bounds, parse_key_generation
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config

SETTINGS = {
    "key_generation_settings": {
        "team_key_generation": {"allowed_team_member_roles": ["admin"], "required_params": ["key_alias"]},
        "personal_key_generation": {"allowed_user_roles": ["proxy_admin"]}},
    "upperbound_key_generate_params": {"max_budget": 10, "duration": "30d", "rpm_limit": 100},
}


def test_settings_are_parsed_and_mistakes_name_the_key() -> None:
    s = parse_key_generation(SETTINGS)
    assert s.team_member_roles == ("admin",) and s.team_required == ("key_alias",)
    assert s.personal_roles == ("proxy_admin",) and s.upper == {"max_budget": Decimal(10), "duration": "30d",
                                                                "rpm_limit": 100}
    default = parse_key_generation({})
    assert default.team_member_roles == ("admin", "user") and default.personal_roles is None and not default.upper
    for bad, where in (
            ({"key_generation_settings": {"personal_key_generation": {"allowed_user_roles": ["root"]}}},
             "personal_key_generation.allowed_user_roles"),
            ({"key_generation_settings": {"team_key_generation": {"allowed_team_member_roles": "admin"}}},
             "allowed_team_member_roles"),
            ({"upperbound_key_generate_params": {"max_budget": -1}}, "upperbound_key_generate_params.max_budget"),
            ({"upperbound_key_generate_params": {"duration": "forever"}}, "upperbound_key_generate_params.duration"),
            ({"upperbound_key_generate_params": {"spend": 1}}, "upperbound_key_generate_params.spend")):
        with pytest.raises(ConfigError, match=where):
            parse_key_generation(bad)


def test_upper_bounds() -> None:
    s = parse_key_generation(SETTINGS)
    assert check_upper_bounds(s, {"max_budget": 5}, fill=True) == {"duration": "30d", "rpm_limit": 100}
    assert check_upper_bounds(s, {"duration": "4w", "max_budget": "10"}, fill=False) == {}
    for body in ({"max_budget": 10.5}, {"duration": "31d"}, {"rpm_limit": 101}, {"max_budget": None}):
        with pytest.raises(ProxyError) as over:
            check_upper_bounds(s, body, fill=False)
        assert over.value.status == 400 and over.value.param == next(iter(body))


def test_a_proxy_enforces_the_settings(upstream: FakeOpenAI) -> None:
    cfg = config(upstream, None)
    cfg["litellm_settings"] = SETTINGS
    with Proxy(cfg) as p:
        def post(path: str, body: Any, key: str = MASTER) -> tuple[int, Any]:
            s, b, _ = p.request("POST", path, body, key)
            return s, b

        for user in ("ta", "iu"):
            post("/user/new", {"user_id": user, "auto_create_key": False})
        post("/team/new", {"team_id": "t", "members_with_roles": [{"user_id": "ta", "role": "admin"},
                                                                 {"user_id": "iu", "role": "user"}]})
        ta, iu = (post("/key/generate", {"user_id": u, "max_budget": 1})[1]["key"] for u in ("ta", "iu"))
        s, b = post("/key/generate", {}, iu)
        assert s == 403 and "personal keys" in b["error"]["message"]  # only proxy admins make personal keys
        s, b = post("/key/generate", {"team_id": "t", "key_alias": "x"}, iu)
        assert s == 403 and "role admin" in b["error"]["message"]  # plain members make no team keys
        s, b = post("/key/generate", {"team_id": "t"}, ta)
        assert s == 400 and b["error"]["param"] == "key_alias"
        s, made = post("/key/generate", {"team_id": "t", "user_id": "iu", "key_alias": "x"}, ta)
        assert s == 200 and made["max_budget"] == 10 and made["rpm_limit"] == 100  # missing values take the bound
        expires = datetime.fromisoformat(made["expires"])
        assert expires <= datetime.now(timezone.utc) + timedelta(days=30)
        s, b = post("/key/generate", {"max_budget": 20}, MASTER)
        assert s == 400 and b["error"]["param"] == "max_budget"  # /key/generate is bounded for everyone
        s, own = post("/key/generate", {"team_id": "t", "user_id": "ta", "key_alias": "mine", "max_budget": 2}, ta)
        assert s == 200
        s, b = post("/key/update", {"key": own["key"], "max_budget": 20}, ta)
        assert s == 400 and b["error"]["param"] == "max_budget"  # a non-admin's update is bounded too
        assert post("/key/update", {"key": own["key"], "max_budget": 9}, ta)[0] == 200
        assert post("/key/update", {"key": own["key"], "max_budget": 20}, MASTER)[0] == 200  # an admin's is not
