"""Internal users: /user/new, /user/info, /user/update, /user/delete, /user/list.

Deleting a user deletes the user's keys and takes the user out of its teams; the reply lists both.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from ..auth import ROLES, Principal, hash_key, masked, new_key
from ..errors import auth_error, bad_request, not_found
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import DuplicateError
from ..validate import Fields
from . import keys as key_routes
from . import teams as team_routes

USER_FIELDS = {"user_id", "user_email", "user_alias", "user_role", "teams", "max_budget", "budget_duration",
               "models", "tpm_limit", "rpm_limit", "metadata", "auto_create_key", "max_parallel_requests",
               "soft_budget", "blocked"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def public(state: ProxyState, user: dict[str, Any]) -> dict[str, Any]:
    return {**user, "spend": state.spend.spend("user", user["user_id"], user)}


def _role(f: Fields) -> str | None:
    role = f.text("user_role")
    if role is not None and role not in ROLES:
        raise bad_request(f"'user_role' must be one of {', '.join(ROLES)}", "user_role")
    return role


async def user_new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), USER_FIELDS)
    user_id = f.text("user_id") or str(uuid.uuid4())
    role = _role(f) or "internal_user"
    teams = f.texts("teams") or []
    for t in teams:
        if await state.cache.get_or_fetch("team", t) is None:
            raise not_found(f"team {t!r} not found", "teams")
    if await state.cache.get_or_fetch("user", user_id) is not None:
        raise bad_request(f"user {user_id!r} already exists", "user_id")
    record = {"user_id": user_id, "user_email": f.text("user_email"), "user_alias": f.text("user_alias"),
              "user_role": role, "teams": [], "models": [], "max_budget": None, "budget_duration": None,
              "budget_reset_at": None, "tpm_limit": None, "rpm_limit": None, "metadata": {},
              "blocked": bool(f.flag("blocked")), "created_at": _now(), **team_routes.limit_fields(f, state)}
    try:
        record = await state.store.insert("user", record)
    except DuplicateError:
        raise bad_request(f"user {user_id!r} already exists", "user_id") from None
    state.cache.put("user", record)
    for t in teams:  # join each team as a plain member
        team = state.cache.get("team", t) or {}
        members = list(team.get("members_with_roles") or [])
        if not any(m.get("user_id") == user_id for m in members):
            members.append({"user_id": user_id, "user_email": record.get("user_email"), "role": "user"})
            updated = await state.store.update("team", t, {"members_with_roles": members})
            if updated is not None:
                state.cache.put("team", updated)
    if teams:
        record = await state.store.update("user", user_id, {"teams": teams}) or record
        state.cache.put("user", record)
    reply = public(state, record)
    auto_key = f.flag("auto_create_key")
    if auto_key is None or auto_key:
        raw = new_key()
        key = await state.store.insert("key", key_routes.new_record(raw, {"user_id": user_id, "models": record["models"]}))
        state.cache.put("key", key)
        reply["key"] = raw
    return json_response(reply)


async def _user(state: ProxyState, user_id: str | None) -> dict[str, Any]:
    if not user_id:
        raise bad_request("'user_id' is required", "user_id")
    user = await state.cache.get_or_fetch("user", user_id)
    if user is None:
        raise not_found(f"user {user_id!r} not found", "user_id")
    return user


async def user_info(state: ProxyState, request: Request, principal: Principal) -> Response:
    user_id = request.query.get("user_id") or principal.user_id
    if not principal.reads_all and (principal.user_id is None or user_id != principal.user_id):
        raise auth_error("a virtual key may only read its own user (a delegated key or one without a user: "
                         "none)", 403)
    user = await _user(state, user_id)
    keys = await state.store.list("key", {"user_id": user["user_id"]})
    await state.cache.ensure([("team", tid) for tid in user.get("teams") or []])
    teams = [t for t in (state.cache.get("team", tid) for tid in user.get("teams") or []) if t]
    return json_response({"user_id": user["user_id"], "user_info": public(state, user),
                          "keys": [key_routes.public(k, state) for k in keys],
                          "teams": [team_routes.public(state, t) for t in teams]})


async def user_update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), USER_FIELDS - {"auto_create_key", "teams"})
    user = await _user(state, f.text("user_id", required=True))
    fields = team_routes.limit_fields(f, state)
    for name in ("user_email", "user_alias"):
        if f.has(name):
            fields[name] = f.text(name)
    if f.has("user_role"):
        fields["user_role"] = _role(f)
    if f.has("blocked"):
        fields["blocked"] = bool(f.flag("blocked"))
    updated = await state.store.update("user", user["user_id"], fields)
    if updated is None:
        raise not_found(f"user {user['user_id']!r} not found", "user_id")
    state.cache.put("user", updated)
    return json_response(public(state, updated))


async def user_delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), {"user_ids"})
    ids = f.texts("user_ids")
    if not ids:
        raise bad_request("'user_ids' must list at least one user", "user_ids")
    missing = [u for u in ids if await state.cache.get_or_fetch("user", u) is None]
    if missing:
        raise not_found(f"user(s) not found: {', '.join(missing)}", "user_ids")
    await state.spend.flush()
    await state.cache.ensure([("team", t) for u in ids for t in (state.cache.get("user", u) or {}).get("teams") or []])
    deleted_keys: list[str] = []
    for u in ids:
        deleted_keys += await key_routes.delete_keys_of(state, "user_id", u)
        for t in (state.cache.get("user", u) or {}).get("teams") or []:
            team = state.cache.get("team", t)
            if team is not None:
                members = [m for m in team.get("members_with_roles") or [] if m.get("user_id") != u]
                updated = await state.store.update("team", t, {"members_with_roles": members})
                if updated is not None:
                    state.cache.put("team", updated)
    deleted = await state.store.delete("user", ids)
    for u in deleted:
        state.cache.drop("user", u)
    return json_response({"deleted_users": deleted, "deleted_keys": deleted_keys})


async def user_list(state: ProxyState, request: Request, principal: Principal) -> Response:
    page = query_int(request, "page", 1, 1)
    size = query_int(request, "page_size", 25, 1, 1000)
    filters = {"user_email": request.query["user_email"]} if request.query.get("user_email") else None
    total = await state.store.count("user", filters)
    users = await state.store.list("user", filters, (page - 1) * size, size)
    return json_response({"users": [public(state, u) for u in users], "total": total, "page": page,
                          "page_size": size, "total_pages": max(1, -(-total // size))})
