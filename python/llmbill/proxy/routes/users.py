"""Internal users: /user/new, /user/info, /user/update, /user/delete, /user/list.

Deleting a user deletes the user's keys and takes the user out of its teams; the reply lists both.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from ..auth import ROLES, Principal, new_key
from ..errors import auth_error, bad_request, not_found
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import DuplicateError
from .. import key_limits, subscription_watch
from ..fields import read
from ..fields.users import KEY_OF_USER, USER_DELETE, USER_INFO_QUERY, USER_LIST_QUERY, USER_NEW, USER_UPDATE
from ..fields.registry import query, takes
from ..spend_set import set_spend
from ..validate import Fields
from . import keys as key_routes
from . import teams as team_routes



def _now() -> datetime:
    return datetime.now(timezone.utc)


def public(state: ProxyState, user: dict[str, Any]) -> dict[str, Any]:
    return {**user, "spend": state.spend.spend("user", user["user_id"], user)}


def _role(f: Fields) -> str | None:
    role = f.text("user_role")
    if role is not None and role not in ROLES:
        raise bad_request(f"'user_role' must be one of {', '.join(ROLES)}", "user_role")
    return role


async def _teams_to_join(state: ProxyState, f: Fields) -> list[dict[str, Any]]:
    """`team_id` and `teams` (ids, or {team_id, max_budget_in_team, user_role}) as member entries to add."""
    wanted: list[dict[str, Any]] = []
    if f.text("team_id"):
        wanted.append({"team_id": f.text("team_id")})
    for t in f.body.get("teams") or []:
        entry = t if isinstance(t, dict) else {"team_id": t}
        tf = Fields(entry, {"team_id", "max_budget_in_team", "user_role"})
        team_id = tf.text("team_id", required=True)
        role = tf.text("user_role") or "user"
        if role not in team_routes.MEMBER_ROLES:
            raise bad_request(f"'teams': user_role must be 'admin' or 'user', not {role!r}", "teams")
        if all(w["team_id"] != team_id for w in wanted):
            wanted.append({"team_id": team_id, "role": role, "max_budget_in_team": tf.money("max_budget_in_team")})
    for w in wanted:
        if await state.cache.get_or_fetch("team", w["team_id"]) is None:
            raise not_found(f"team {w['team_id']!r} not found", "team_id" if w["team_id"] == f.text("team_id") else "teams")
    return wanted


async def _join(state: ProxyState, record: dict[str, Any], wanted: list[dict[str, Any]]) -> dict[str, Any]:
    user_id = record["user_id"]
    for w in wanted:  # join each team (as a plain member unless the entry says otherwise)
        team = state.cache.get("team", w["team_id"]) or {}
        members = list(team.get("members_with_roles") or [])
        if not any(m.get("user_id") == user_id for m in members):
            entry = {"user_id": user_id, "user_email": record.get("user_email"), "role": w.get("role") or "user"}
            if w.get("max_budget_in_team") is not None:
                entry.update(max_budget_in_team=w["max_budget_in_team"], budget_set_by="proxy_admin")
            updated = await state.store.update("team", w["team_id"], {"members_with_roles": members + [entry]})
            if updated is not None:
                state.cache.put("team", updated)
    if wanted:
        record = await state.store.update("user", user_id, {"teams": [w["team_id"] for w in wanted]}) or record
        state.cache.put("user", record)
    return record


@takes(USER_NEW)
async def user_new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(USER_NEW, await request.json())
    user_id = f.text("user_id") or str(uuid.uuid4())
    role = _role(f) or "internal_user"
    wanted = await _teams_to_join(state, f)
    if await state.cache.get_or_fetch("user", user_id) is not None:
        raise bad_request(f"user {user_id!r} already exists", "user_id")
    # Fields that describe the auto-created key go on it, not on the user.
    key_fields = key_routes.key_fields_of_user(f, state, USER_NEW)
    limits = {k: v for k, v in team_routes.limit_fields(f, state, USER_NEW).items() if k not in KEY_OF_USER}
    record = {"user_id": user_id, "user_email": f.text("user_email"), "user_alias": f.text("user_alias"),
              "user_role": role, "teams": [], "models": [], "max_budget": None, "budget_duration": None,
              "budget_reset_at": None, "tpm_limit": None, "rpm_limit": None, "metadata": {},
              "blocked": bool(f.flag("blocked")), "created_at": _now(), **limits}
    spend = f.money("spend")
    try:
        record = await state.store.insert("user", {**record, **({"spend": spend} if spend else {})})
    except DuplicateError:
        raise bad_request(f"user {user_id!r} already exists", "user_id") from None
    state.cache.put("user", record)
    subscription_watch.provision_created(state, "user", user_id)
    record = await _join(state, record, wanted)
    reply = public(state, record)
    auto_key = f.flag("auto_create_key")
    if auto_key is None or auto_key:
        raw = new_key()
        fields = {"user_id": user_id, "models": record["models"], "team_id": f.text("team_id"), **key_fields}
        fields["limits_set_by"] = key_limits.initial(fields, "proxy_admin")
        key = await state.store.insert("key", key_routes.new_record(raw, fields))
        state.cache.put("key", key)
        reply.update(key=raw, key_alias=key.get("key_alias"), expires=key.get("expires"), token=key["token_hash"])
    return json_response(reply)


async def _user(state: ProxyState, user_id: str | None) -> dict[str, Any]:
    if not user_id:
        raise bad_request("'user_id' is required", "user_id")
    user = await state.cache.get_or_fetch("user", user_id)
    if user is None:
        raise not_found(f"user {user_id!r} not found", "user_id")
    return user


async def _by_email(state: ProxyState, email: str | None) -> str | None:
    """LiteLLM's /user/update names the user by user_id or user_email."""
    if not email:
        return None
    found = await state.store.list("user", {"user_email": email})
    if not found:
        raise not_found(f"no user with email {email!r}", "user_email")
    return str(found[0]["user_id"])


@query(*USER_INFO_QUERY)
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


@takes(USER_UPDATE)
async def user_update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(USER_UPDATE, await request.json())
    by_email = not f.text("user_id") and bool(f.text("user_email"))  # the email names the user, not a change
    user = await _user(state, f.text("user_id") or await _by_email(state, f.text("user_email")))
    fields = team_routes.limit_fields(f, state, USER_UPDATE)
    for name in ("user_email", "user_alias"):
        if f.has(name) and not (by_email and name == "user_email"):
            fields[name] = f.text(name)
    if f.has("user_role"):
        fields["user_role"] = _role(f)
    if f.has("blocked"):
        fields["blocked"] = bool(f.flag("blocked"))
    if f.has("spend"):
        await set_spend(state, principal, "user", user["user_id"], f.money("spend"))
    updated = await state.store.update("user", user["user_id"], fields)
    if updated is None:
        raise not_found(f"user {user['user_id']!r} not found", "user_id")
    state.cache.put("user", updated)
    return json_response({"user_id": updated["user_id"], "data": public(state, updated)})  # LiteLLM's shape


@takes(USER_DELETE)
async def user_delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(USER_DELETE, await request.json())
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


@query(*USER_LIST_QUERY)
async def user_list(state: ProxyState, request: Request, principal: Principal) -> Response:
    page = query_int(request, "page", 1, 1)
    size = query_int(request, "page_size", 25, 1, 1000)
    filters = {"user_email": request.query["user_email"]} if request.query.get("user_email") else None
    total = await state.store.count("user", filters)
    users = await state.store.list("user", filters, (page - 1) * size, size)
    return json_response({"users": [public(state, u) for u in users], "total": total, "page": page,
                          "page_size": size, "total_pages": max(1, -(-total // size))})
