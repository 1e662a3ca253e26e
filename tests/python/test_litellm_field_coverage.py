"""Every request field of LiteLLM 1.108's management request models, posted to the llmbill route that
takes it — on SQLite and PostgreSQL: each is either honoured or stored (its value shows in the record
read back) or refused with a 400 naming it. None is silently dropped.

The field lists come from LiteLLM's pydantic models when the installed litellm is 1.108.x; otherwise
from the lists below, written down from the litellm 1.108.0 wheel on PyPI
(litellm/proxy/_types.py: GenerateKeyRequest, UpdateKeyRequest, NewTeamRequest, UpdateTeamRequest,
NewUserRequest, UpdateUserRequest, NewCustomerRequest, UpdateCustomerRequest, BudgetNewRequest;
`Model.model_fields`, in declaration order).
"""

from __future__ import annotations

import importlib.metadata
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from llmbill.proxy.fields.common import OBJECT_PERMISSION
from llmbill.proxy.fields.customers import BUDGET_NEW, BUDGET_UPDATE, CUSTOMER_NEW, CUSTOMER_UPDATE
from llmbill.proxy.fields.keys import KEY_GENERATE, KEY_UPDATE
from llmbill.proxy.fields.kinds import (DATETIME, DURATION, FLAG, INT_MAP, INTEGER, JSON, MAPPING, MODEL_BUDGETS,
                                        MONEY, OBJECTS, TEXT, TEXT_MAP, TEXTS, TEXTS_MAP, TEXTS_OR_OBJECTS)
from llmbill.proxy.fields.spec import REFUSED, Body, Field
from llmbill.proxy.fields.teams import TEAM_NEW, TEAM_UPDATE
from llmbill.proxy.fields.users import KEY_OF_USER, USER_NEW, USER_UPDATE
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config, lago_env

LITELLM_1_108 = {
    "GenerateKeyRequest": """
        key_alias duration models spend max_budget user_id team_id agent_id max_parallel_requests metadata
        tpm_limit rpm_limit budget_duration budget_limits allowed_cache_controls config permissions
        model_max_budget budget_fallbacks model_rpm_limit model_tpm_limit mcp_rpm_limit tag_rpm_limit guardrails
        policies prompts blocked aliases object_permission key tpd_limit default_estimated_output_tokens
        default_estimated_output_tokens_per_model budget_id end_user_budget_id tags disable_global_guardrails
        enable_prompt_caching throttle_on_budget_exceeded enforced_params allowed_routes
        allowed_passthrough_routes denied_passthrough_routes allowed_vector_store_indexes rpm_limit_type
        tpm_limit_type router_settings access_group_ids soft_budget send_invite_email key_type auto_rotate
        rotation_interval organization_id project_id
        """.split(),
    "UpdateKeyRequest": """
        key_alias duration models spend max_budget user_id team_id agent_id max_parallel_requests metadata
        tpm_limit rpm_limit budget_duration budget_limits allowed_cache_controls config permissions
        model_max_budget budget_fallbacks model_rpm_limit model_tpm_limit mcp_rpm_limit tag_rpm_limit guardrails
        policies prompts blocked aliases object_permission key tpd_limit default_estimated_output_tokens
        default_estimated_output_tokens_per_model budget_id end_user_budget_id tags disable_global_guardrails
        enable_prompt_caching throttle_on_budget_exceeded enforced_params allowed_routes
        allowed_passthrough_routes denied_passthrough_routes allowed_vector_store_indexes rpm_limit_type
        tpm_limit_type router_settings access_group_ids soft_budget temp_budget_increase temp_budget_expiry
        auto_rotate rotation_interval organization_id project_id
        """.split(),
    "NewTeamRequest": """
        team_alias team_id organization_id admins members members_with_roles team_member_permissions metadata
        tpm_limit rpm_limit tpd_limit max_budget soft_budget budget_duration budget_limits models blocked
        router_settings access_group_ids default_team_member_models model_aliases model_max_budget tags
        guardrails policies prompts object_permission allowed_passthrough_routes denied_passthrough_routes
        disable_global_guardrails require_trace_id secret_manager_settings model_rpm_limit rpm_limit_type
        tpm_limit_type model_tpm_limit default_estimated_output_tokens default_estimated_output_tokens_per_model
        mcp_rpm_limit team_member_budget team_member_rpm_limit team_member_tpm_limit team_member_key_duration
        team_member_budget_duration team_member_model_max_budget allowed_vector_store_indexes
        enforced_batch_output_expires_after enforced_file_expires_after
        """.split(),
    "UpdateTeamRequest": """
        team_id team_alias organization_id metadata tpm_limit rpm_limit tpd_limit max_budget soft_budget models
        blocked budget_duration tags model_aliases guardrails policies object_permission
        disable_global_guardrails require_trace_id team_member_budget team_member_budget_duration
        team_member_model_max_budget team_member_rpm_limit team_member_tpm_limit team_member_key_duration
        allowed_passthrough_routes denied_passthrough_routes secret_manager_settings prompts model_rpm_limit
        model_tpm_limit default_estimated_output_tokens default_estimated_output_tokens_per_model mcp_rpm_limit
        allowed_vector_store_indexes enforced_batch_output_expires_after enforced_file_expires_after
        router_settings access_group_ids budget_limits default_team_member_models model_max_budget
        """.split(),
    "NewUserRequest": """
        key_alias duration models spend max_budget user_id team_id agent_id max_parallel_requests metadata
        tpm_limit rpm_limit budget_duration budget_limits allowed_cache_controls config permissions
        model_max_budget budget_fallbacks model_rpm_limit model_tpm_limit mcp_rpm_limit tag_rpm_limit guardrails
        policies prompts blocked aliases object_permission user_email user_alias user_role teams auto_create_key
        send_invite_email sso_user_id organizations password
        """.split(),
    "UpdateUserRequest": """
        key_alias duration models spend max_budget user_id team_id agent_id max_parallel_requests metadata
        tpm_limit rpm_limit budget_duration budget_limits allowed_cache_controls config permissions
        model_max_budget budget_fallbacks model_rpm_limit model_tpm_limit mcp_rpm_limit tag_rpm_limit guardrails
        policies prompts blocked aliases object_permission password user_alias user_role user_email
        """.split(),
    "NewCustomerRequest": """
        budget_id max_budget soft_budget max_parallel_requests tpm_limit rpm_limit tpd_limit budget_duration
        model_max_budget budget_reset_at user_id alias blocked spend allowed_model_region default_model models
        object_permission
        """.split(),
    "UpdateCustomerRequest": """
        user_id alias blocked max_budget budget_id allowed_model_region default_model models object_permission
        """.split(),
    "BudgetNewRequest": """
        budget_id max_budget soft_budget max_parallel_requests tpm_limit rpm_limit tpd_limit budget_duration
        model_max_budget budget_reset_at
        """.split(),
}

# route → (LiteLLM's model, llmbill's declaration)
ROUTES: dict[str, tuple[str, Body]] = {
    "/key/generate": ("GenerateKeyRequest", KEY_GENERATE), "/key/update": ("UpdateKeyRequest", KEY_UPDATE),
    "/team/new": ("NewTeamRequest", TEAM_NEW), "/team/update": ("UpdateTeamRequest", TEAM_UPDATE),
    "/user/new": ("NewUserRequest", USER_NEW), "/user/update": ("UpdateUserRequest", USER_UPDATE),
    "/customer/new": ("NewCustomerRequest", CUSTOMER_NEW), "/end_user/new": ("NewCustomerRequest", CUSTOMER_NEW),
    "/customer/update": ("UpdateCustomerRequest", CUSTOMER_UPDATE),
    "/end_user/update": ("UpdateCustomerRequest", CUSTOMER_UPDATE),
    "/budget/new": ("BudgetNewRequest", BUDGET_NEW), "/budget/update": ("BudgetNewRequest", BUDGET_UPDATE),
}
# Each route's identifying field: the update routes name the record they change with it.
IDENT = {"/key/update": "key", "/team/update": "team_id", "/user/update": "user_id", "/customer/update": "user_id",
         "/end_user/update": "user_id", "/budget/update": "budget_id", "/customer/new": "user_id",
         "/end_user/new": "user_id", "/budget/new": "budget_id"}
TEAM, TIER = "fields-team", "fields-tier"


def litellm_fields() -> dict[str, list[str]]:
    """LiteLLM 1.108's field names per request model: from the installed package when it is 1.108.x."""
    try:
        version = importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    if not version.startswith("1.108."):
        return LITELLM_1_108
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.proxy import _types

    return {name: list(getattr(_types, name).model_fields) for name in LITELLM_1_108}


def test_every_litellm_field_is_declared_by_its_route() -> None:
    fields = litellm_fields()
    for route, (model, body) in ROUTES.items():
        missing = [name for name in fields[model] if name not in body.names]
        assert not missing, f"{route} does not declare LiteLLM's {model} fields {missing}"


def _uid() -> str:
    return uuid.uuid4().hex[:10]


_KIND_SAMPLES: dict[str, Any] = {
    TEXT.name: "v-sample", TEXTS.name: ["v1"], INTEGER.name: 7, FLAG.name: True, MONEY.name: 3, DURATION.name: "1d",
    MAPPING.name: {"a": "b"}, JSON.name: {"a": 1}, TEXT_MAP.name: {"alias-x": "custom-model"},
    INT_MAP.name: {"custom-model": 7}, MODEL_BUDGETS.name: {"custom-model": {"budget_limit": 1, "time_period": "1d"}},
    TEXTS_MAP.name: {"custom-model": ["gpt-4o"]},
    DATETIME.name: "2031-01-01T00:00:00+00:00", OBJECTS.name: [{"role": "user", "user_id": "member-1"}],
    TEXTS_OR_OBJECTS.name: [TEAM], OBJECT_PERMISSION.name: {"vector_stores": ["vs-1"]},
}
_NAMED: dict[str, Any] = {
    "models": ["custom-model"], "team_id": TEAM, "user_id": "fields-user", "budget_id": TIER, "key_type": "llm_api",
    "user_role": "internal_user_viewer", "allowed_model_region": "eu", "default_model": "custom-model",
    "allowed_routes": ["/chat/completions"], "enforced_params": ["user"], "auto_create_key": False, "spend": 1.5,
    "customer_id": "cust-1", "allowed_customer_ids": ["cust-2"], "members_with_roles": [{"role": "user",
                                                                                        "user_id": "member-1"}],
    "admins": ["admin-1"], "members": ["member-2"], "permissions": {"get_spend_routes": True},
}


def sample(route: str, field: Field) -> Any:
    if field.name == "key" and route == "/key/generate":
        return f"sk-fields-{uuid.uuid4().hex}"
    if field.name == "user_email":
        return f"{_uid()}@example.com"
    if field.name == "team_id" and route == "/team/new":
        return f"t-{_uid()}"
    if field.name == "user_id" and route == "/user/new":
        return f"u-{_uid()}"
    return _NAMED.get(field.name, _KIND_SAMPLES.get(field.kind.name, "v-sample"))


def base_body(p: Proxy, route: str, field: str) -> dict[str, Any]:
    """A body naming a fresh record for the route (made first for an update route)."""
    uid = _uid()
    ident = IDENT.get(route)
    body: dict[str, Any] = {}
    if route == "/key/update":
        s, made = p.request("POST", "/key/generate", {}, MASTER)[:2]
        body["key"] = made["key"]
    elif route == "/team/update":
        body["team_id"] = p.request("POST", "/team/new", {"team_id": f"t-{uid}"}, MASTER)[1]["team_id"]
    elif route == "/user/update":
        body["user_id"] = p.request("POST", "/user/new", {"user_id": f"u-{uid}", "auto_create_key": False},
                                    MASTER)[1]["user_id"]
    elif route in ("/customer/update", "/end_user/update"):
        p.request("POST", "/customer/new", {"user_id": f"c-{uid}"}, MASTER)
        body["user_id"] = f"c-{uid}"
    elif route == "/budget/update":
        p.request("POST", "/budget/new", {"budget_id": f"b-{uid}"}, MASTER)
        body["budget_id"] = f"b-{uid}"
    elif ident is not None:
        body[ident] = f"{ident[0]}-{uid}"
    if field == "budget_reset_at":  # a reset time belongs to a window
        body["budget_duration"] = "30d"
    if field in ("budget_id", "max_budget") and route.startswith(("/customer/", "/end_user/")):
        body.pop("budget_id", None) if field == "max_budget" else None
    return body


def record_of(p: Proxy, route: str, body: dict[str, Any], reply: Any) -> dict[str, Any]:
    """What the route's info route shows of the record it made or changed."""
    if route.startswith("/key/"):
        return dict(p.request("GET", f"/key/info?key={reply.get('key') or body['key']}", None, MASTER)[1]["info"])
    if route.startswith("/team/"):
        return dict(p.request("GET", f"/team/info?team_id={reply['team_id']}", None, MASTER)[1]["team_info"])
    if route.startswith("/user/"):
        return dict(p.request("GET", f"/user/info?user_id={reply['user_id']}", None, MASTER)[1]["user_info"])
    if route.startswith("/budget/"):
        return dict(p.request("GET", f"/budget/info?budget_id={body['budget_id']}", None, MASTER)[1])
    info = p.request("GET", f"/customer/info?end_user_id={body['user_id']}", None, MASTER)[1]
    return {**(info.get("litellm_budget_table") or {}), **info}


def same(field: Field, shown: Any, sent: Any) -> bool:
    if field.kind is MONEY:
        return shown is not None and Decimal(str(shown)) == Decimal(str(sent))
    if field.kind is DATETIME:
        return shown is not None and datetime.fromisoformat(str(shown).replace("Z", "+00:00")) == \
            datetime.fromisoformat(sent)
    if field.kind is MODEL_BUDGETS:
        entry = (shown or {}).get("custom-model") or {}
        return Decimal(str(entry.get("max_budget"))) == 1 and entry.get("budget_duration") == "1d"
    return bool(shown == sent)


def honoured_or_stored(p: Proxy, route: str, field: Field, body: dict[str, Any], reply: Any) -> None:
    """The field's value, or its effect, shows in the record read back."""
    name, sent = field.name, body[field.name]
    if route == "/user/new" and name == "auto_create_key":
        assert "key" not in reply
        return
    if route == "/user/new" and (name in KEY_OF_USER or name == "duration"):
        record = dict(p.request("GET", f"/key/info?key={reply['key']}", None, MASTER)[1]["info"])
        if name == "duration":
            assert record["expires"], (route, name)
        else:
            assert same(field, record.get(name), sent), (route, name, record.get(name))
        return
    record = record_of(p, route, body, reply)
    if name == "duration" and route.startswith("/key/"):
        assert record["expires"], (route, name)
    elif name == "key":
        assert record["token"] and reply.get("key", sent) == sent
    elif name == "key_type":
        assert record["key_type"] == sent and record["allowed_routes"] == ["llm_api_routes"]
    elif name in ("admins", "members", "members_with_roles"):
        members = {m["user_id"] for m in record["members_with_roles"]}
        assert members >= {m["user_id"] if isinstance(m, dict) else m for m in sent}, (route, name, members)
    elif route == "/user/new" and name in ("teams", "team_id"):
        assert record["teams"] == [TEAM], (route, name, record["teams"])
    else:
        assert same(field, record.get(name), sent), (route, name, record.get(name), sent)


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    db = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        db = create_database(str(request.getfixturevalue("postgres_url")), f"every_{uuid.uuid4().hex[:10]}")
    with Proxy(config(upstream, db), lago_env(lago, "team_id")) as p:
        assert p.request("POST", "/team/new", {"team_id": TEAM}, MASTER)[0] == 200
        assert p.request("POST", "/budget/new", {"budget_id": TIER}, MASTER)[0] == 200
        yield p


def test_every_litellm_field_is_honoured_stored_or_refused_by_name(proxy: Proxy) -> None:
    fields = litellm_fields()
    outcomes: dict[str, list[str]] = {"honoured": [], "stored": [], "refused": []}
    for route, (model, spec) in ROUTES.items():
        for name in fields[model]:
            field = spec.field(name)
            if name == IDENT.get(route) or (route == "/key/update" and name == "key"):
                continue  # the record's id: every other request names it
            body = {**base_body(proxy, route, name), name: sample(route, field)}
            status, reply, _ = proxy.request("POST", route, body, MASTER)
            if field.use == REFUSED:
                assert status == 400 and reply["error"]["param"].startswith(name), (route, name, status, reply)
                assert name in reply["error"]["message"]
            else:
                assert status == 200, (route, name, reply)
                honoured_or_stored(proxy, route, field, body, reply)
            outcomes[field.use].append(f"{route} {name}")
    assert outcomes["refused"] and outcomes["honoured"] and outcomes["stored"]
