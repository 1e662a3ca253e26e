"""Teams and internal users: /team/new, /team/info, /team/list, /user/new, /user/info, /user/list."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from ..auth import Principal
from ..errors import auth_error
from ..durations import next_reset
from ..errors import bad_request, not_found
from ..http import Request, Response, json_response
from ..state import ProxyState
from ..store.base import DuplicateError
from ..validate import Fields
from . import keys as key_routes

TEAM_FIELDS = {"team_id", "team_alias", "max_budget", "budget_duration", "models", "tpm_limit", "rpm_limit",
               "metadata", "members_with_roles", "blocked", "max_parallel_requests"}
USER_FIELDS = {"user_id", "user_email", "user_alias", "user_role", "teams", "max_budget", "budget_duration",
               "models", "tpm_limit", "rpm_limit", "metadata", "auto_create_key", "max_parallel_requests"}
ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _common(f: Fields, state: ProxyState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if f.has("max_budget"):
        out["max_budget"] = f.money("max_budget")
    if f.has("budget_duration"):
        out["budget_duration"] = f.duration("budget_duration")
        out["budget_reset_at"] = next_reset(_now(), out["budget_duration"], state.config.timezone) \
            if out["budget_duration"] else None
    if f.has("models"):
        out["models"] = f.str_list("models") or []
        unknown = [m for m in out["models"] if not state.has_model(m)]
        if unknown:
            raise bad_request(f"unknown model(s) in 'models': {', '.join(unknown)}", "models")
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        if f.has(name):
            out[name] = f.int(name)
    if f.has("metadata"):
        out["metadata"] = f.dict("metadata") or {}
    return out


def _with_spend(state: ProxyState, kind: str, record: dict[str, Any], id_field: str) -> dict[str, Any]:
    return {**record, "spend": state.spend.spend(kind, record[id_field])}


async def team_new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), TEAM_FIELDS)
    team_id = f.str("team_id") or str(uuid.uuid4())
    members = f.body.get("members_with_roles") or []
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise bad_request("'members_with_roles' must be a list of objects", "members_with_roles")
    record = {"team_id": team_id, "team_alias": f.str("team_alias"), "models": [], "max_budget": None,
              "budget_duration": None, "budget_reset_at": None, "tpm_limit": None, "rpm_limit": None,
              "metadata": {}, "members_with_roles": members, "blocked": bool(f.bool("blocked")),
              "created_at": _now(), **_common(f, state)}
    try:
        record = await state.store.insert("team", record)
    except DuplicateError:
        raise bad_request(f"team {team_id!r} already exists", "team_id") from None
    state.cache.put("team", record)
    return json_response(_with_spend(state, "team", record, "team_id"))


async def team_info(state: ProxyState, request: Request, principal: Principal) -> Response:
    team_id = request.query.get("team_id")
    if not team_id:
        raise bad_request("'team_id' is required", "team_id")
    team = await state.cache.get_or_fetch("team", team_id)
    if team is None:
        raise not_found(f"team {team_id!r} not found", "team_id")
    if principal.key is not None and principal.key.get("team_id") != team_id:
        raise auth_error("a virtual key may only read its own team", 403)
    keys = await state.store.list("key", {"team_id": team_id})
    return json_response({"team_id": team_id, "team_info": _with_spend(state, "team", team, "team_id"),
                          "keys": [key_routes.public(k, state) for k in keys]})


async def team_list(state: ProxyState, request: Request, principal: Principal) -> Response:
    return json_response([_with_spend(state, "team", t, "team_id") for t in await state.store.list("team")])


async def user_new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), USER_FIELDS)
    user_id = f.str("user_id") or str(uuid.uuid4())
    role = f.str("user_role") or "internal_user"
    if role not in ROLES:
        raise bad_request(f"'user_role' must be one of {', '.join(ROLES)}", "user_role")
    teams = f.str_list("teams") or []
    auto_key = f.bool("auto_create_key")
    record = {"user_id": user_id, "user_email": f.str("user_email"), "user_alias": f.str("user_alias"),
              "user_role": role, "teams": teams, "models": [], "max_budget": None, "budget_duration": None,
              "budget_reset_at": None, "tpm_limit": None, "rpm_limit": None, "metadata": {}, "blocked": False,
              "created_at": _now(), **_common(f, state)}
    for t in teams:
        await key_routes.ensure_owner(state, "team", t)
    try:
        record = await state.store.insert("user", record)
    except DuplicateError:
        raise bad_request(f"user {user_id!r} already exists", "user_id") from None
    state.cache.put("user", record)
    reply = _with_spend(state, "user", record, "user_id")
    if auto_key is None or auto_key:
        from ..auth import hash_key, masked, new_key

        raw = new_key()
        key = {"token_hash": hash_key(raw), "key_name": masked(raw), "key_alias": None, "team_id": None,
               "user_id": user_id, "models": record["models"], "max_budget": None, "soft_budget": None,
               "budget_duration": None, "budget_reset_at": None, "expires": None, "tpm_limit": None,
               "rpm_limit": None, "max_parallel_requests": None, "metadata": {}, "blocked": False,
               "created_at": _now()}
        key = await state.store.insert("key", key)
        state.cache.put("key", key)
        reply["key"] = raw
    return json_response(reply)


async def user_info(state: ProxyState, request: Request, principal: Principal) -> Response:
    user_id = request.query.get("user_id") or (principal.key or {}).get("user_id")
    if not user_id:
        raise bad_request("'user_id' is required", "user_id")
    if principal.key is not None and principal.key.get("user_id") != user_id:
        raise auth_error("a virtual key may only read its own user", 403)
    user = await state.cache.get_or_fetch("user", user_id)
    if user is None:
        raise not_found(f"user {user_id!r} not found", "user_id")
    keys = await state.store.list("key", {"user_id": user_id})
    teams = [t for t in (state.cache.get("team", tid) for tid in user.get("teams") or []) if t]
    return json_response({"user_id": user_id, "user_info": _with_spend(state, "user", user, "user_id"),
                          "keys": [key_routes.public(k, state) for k in keys],
                          "teams": [_with_spend(state, "team", t, "team_id") for t in teams]})


async def user_list(state: ProxyState, request: Request, principal: Principal) -> Response:
    users = await state.store.list("user")
    return json_response({"users": [_with_spend(state, "user", u, "user_id") for u in users], "total": len(users)})
