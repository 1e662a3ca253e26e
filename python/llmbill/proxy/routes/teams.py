"""Teams and their members: /team/new, info, update, delete, list, block, unblock, member_add,
member_delete, member_update.

Deleting a team deletes its keys too (they would otherwise keep billing a team that no longer
exists); the reply lists them. Members live in the team's `members_with_roles`; each member's user
record lists the team in `teams`, and unknown users (by id or email) are created on member_add.
A member's `max_budget_in_team` remembers who set it (`budget_set_by`): a team admin does not lift
what a proxy admin set, nor its own (key_limits.py). Only callers who read every user may add an
existing user by email: for anyone else that would reveal the user's id.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from .. import key_limits, subscription_watch
from ..auth import Principal
from ..budget_windows import reset_fields
from ..durations import next_reset
from ..errors import auth_error, bad_request, not_found
from ..http import Request, Response, json_response
from ..permissions import can_read_team, member_authority, require_team_admin
from ..state import ProxyState
from ..store.base import DuplicateError, member_id
from ..fields import Body, read, stored_values, values
from ..fields.teams import (MEMBER_ADD, MEMBER_DELETE, MEMBER_UPDATE, TEAM_DELETE, TEAM_INFO_QUERY, TEAM_NEW, TEAM_ONE,
                            TEAM_UPDATE)
from ..fields.registry import query, takes
from ..validate import Fields
from . import keys as key_routes

# Honoured limit fields kept on the record as checked (guards and entity_limits read them).
LIMIT_AS_IS = ("max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "tpd_limit",
               "credits", "model_max_budget", "model_rpm_limit", "model_tpm_limit", "tags", "model_aliases",
               "team_member_budget", "team_member_rpm_limit", "team_member_tpm_limit")
MEMBER_ROLES = ("admin", "user")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def limit_fields(f: Fields, state: ProxyState, spec: Body) -> dict[str, Any]:
    """Budget, models and limit fields shared by teams and users, and the spec's stored fields."""
    out: dict[str, Any] = stored_values(spec, f)
    out.update(values(spec, f, *(n for n in LIMIT_AS_IS if n in spec.names)))
    if f.has("budget_duration"):
        out["budget_duration"] = f.duration("budget_duration")
        out["budget_reset_at"] = next_reset(_now(), out["budget_duration"], state.config.timezone) \
            if out["budget_duration"] else None
    if "team_member_budget_duration" in spec.names and f.has("team_member_budget_duration"):
        out["team_member_budget_duration"] = f.duration("team_member_budget_duration")
    if f.has("models"):
        out["models"] = f.texts("models") or []  # resolved at call time (model_access.py), as for keys
    if f.has("metadata"):
        out["metadata"] = f.mapping("metadata") or {}
    return out


def public(state: ProxyState, team: dict[str, Any]) -> dict[str, Any]:
    return {**team, "spend": state.spend.spend("team", team["team_id"], team)}


async def _team(state: ProxyState, team_id: str | None) -> dict[str, Any]:
    if not team_id:
        raise bad_request("'team_id' is required", "team_id")
    team = await state.cache.get_or_fetch("team", team_id)
    if team is None:
        raise not_found(f"team {team_id!r} not found", "team_id")
    return team


async def _save(state: ProxyState, team_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    updated = await state.store.update("team", team_id, fields)
    if updated is None:
        raise not_found(f"team {team_id!r} not found", "team_id")
    state.cache.put("team", updated)
    return updated


async def _move_member_windows(state: ProxyState, team: dict[str, Any]) -> None:
    """`team_member_budget_duration` sent: each member's window restarts now, as a key's does when its
    budget_duration is sent; removed, their reset times are cleared (the member's
    budget runs in no window). A member with no spend record yet starts its window when the first
    call creates the record (windows.py)."""
    now, new = _now(), team.get("team_member_budget_duration")
    for m in team.get("members_with_roles") or []:
        change = reset_fields(None, new, touched=True, current_reset=None, now=now, tz=state.config.timezone)
        moved = await state.store.update("member", member_id(team["team_id"], m["user_id"]), change)
        if moved is not None:
            state.cache.put("member", moved)


async def _resolve_member(state: ProxyState, raw: Any, param: str, principal: Principal) -> dict[str, Any]:
    """{'user_id' | 'user_email', 'role'} → a member entry, creating the user when unknown."""
    if not isinstance(raw, dict):
        raise bad_request(f"'{param}' entries must be objects with user_id or user_email", param)
    f = Fields(raw, {"user_id", "user_email", "role", "max_budget_in_team"})
    role = f.text("role") or "user"
    if role not in MEMBER_ROLES:
        raise bad_request(f"member role must be 'admin' or 'user', not {role!r}", param)
    user_id, email = f.text("user_id"), f.text("user_email")
    if not user_id and not email:
        raise bad_request(f"each member in '{param}' needs user_id or user_email", param)
    user = await state.cache.get_or_fetch("user", user_id) if user_id else None
    if user is None and email and not user_id:
        found = await state.store.list("user", {"user_email": email})
        user = found[0] if found else None
        if user is not None and not principal.reads_all:
            raise auth_error(f"a user with email {email!r} exists; add it by user_id, or ask a proxy admin", 403)
    if user is None:
        user = {"user_id": user_id or str(uuid.uuid4()), "user_email": email, "user_alias": None,
                "user_role": "internal_user", "teams": [], "models": [], "max_budget": None, "metadata": {},
                "blocked": False, "created_at": _now()}
        try:
            user = await state.store.insert("user", user)
        except DuplicateError:
            user = await state.store.get("user", user["user_id"]) or user
        state.cache.put("user", user)
    # Only a reader of every user learns an existing user's email from its id.
    entry: dict[str, Any] = {"user_id": user["user_id"], "role": role,
                             "user_email": user.get("user_email") if principal.reads_all or not user_id else email}
    budget = f.money("max_budget_in_team")
    if budget is not None:
        entry["max_budget_in_team"] = budget
        entry["budget_set_by"] = member_authority(principal, entry["user_id"])
    return entry


async def _set_user_teams(state: ProxyState, user_id: str, team_id: str, member_of: bool) -> None:
    user = await state.cache.get_or_fetch("user", user_id)
    if user is None:
        return
    teams = [t for t in user.get("teams") or [] if t != team_id] + ([team_id] if member_of else [])
    updated = await state.store.update("user", user_id, {"teams": teams})
    if updated is not None:
        state.cache.put("user", updated)


@takes(TEAM_NEW)
async def team_new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(TEAM_NEW, await request.json())
    team_id = f.text("team_id") or str(uuid.uuid4())
    raw_members = list(f.body.get("members_with_roles") or [])
    # LiteLLM's older lists of ids: admins, then members.
    raw_members += [{"user_id": u, "role": "admin"} for u in f.texts("admins") or []]
    raw_members += [{"user_id": u, "role": "user"} for u in f.texts("members") or []]
    if await state.cache.get_or_fetch("team", team_id) is not None:
        raise bad_request(f"team {team_id!r} already exists", "team_id")
    fields = limit_fields(f, state, TEAM_NEW)
    members = [await _resolve_member(state, m, "members_with_roles", principal) for m in raw_members]
    record = {"team_id": team_id, "team_alias": f.text("team_alias"), "models": [], "max_budget": None,
              "budget_duration": None, "budget_reset_at": None, "tpm_limit": None, "rpm_limit": None,
              "metadata": {}, "members_with_roles": members, "blocked": bool(f.flag("blocked")),
              "created_at": _now(), **fields}
    try:
        record = await state.store.insert("team", record)
    except DuplicateError:
        raise bad_request(f"team {team_id!r} already exists", "team_id") from None
    state.cache.put("team", record)
    if "team_member_budget_duration" in fields:
        await _move_member_windows(state, record)
    subscription_watch.provision_created(state, "team", team_id)
    for m in members:
        await _set_user_teams(state, m["user_id"], team_id, True)
    return json_response(public(state, record))


@query(*TEAM_INFO_QUERY)
async def team_info(state: ProxyState, request: Request, principal: Principal) -> Response:
    team = await _team(state, request.query.get("team_id"))
    if not can_read_team(state, principal, team["team_id"]):
        raise auth_error("this key may only read its own teams", 403)
    keys = await state.store.list("key", {"team_id": team["team_id"]})
    return json_response({"team_id": team["team_id"], "team_info": public(state, team),
                          "keys": [key_routes.public(k, state) for k in keys]})


async def team_list(state: ProxyState, request: Request, principal: Principal) -> Response:
    teams = await state.store.list("team")
    if not principal.reads_all:  # can_read_team reads each team's members
        await state.cache.ensure([("team", t["team_id"]) for t in teams])
    return json_response([public(state, t) for t in teams if can_read_team(state, principal, t["team_id"])])


@takes(TEAM_UPDATE)
async def team_update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(TEAM_UPDATE, await request.json())
    team = await _team(state, f.text("team_id", required=True))
    fields = limit_fields(f, state, TEAM_UPDATE)
    if f.has("team_alias"):
        fields["team_alias"] = f.text("team_alias")
    if f.has("blocked"):
        fields["blocked"] = bool(f.flag("blocked"))
    updated = await _save(state, team["team_id"], fields)
    if "team_member_budget_duration" in fields:
        await _move_member_windows(state, updated)
    # LiteLLM's reply shape: the id, and the updated team under `data`.
    return json_response({"team_id": team["team_id"], "data": public(state, updated)})


@takes(TEAM_DELETE)
async def team_delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(TEAM_DELETE, await request.json())
    ids = f.texts("team_ids")
    if not ids:
        raise bad_request("'team_ids' must list at least one team", "team_ids")
    missing = [t for t in ids if await state.cache.get_or_fetch("team", t) is None]
    if missing:
        raise not_found(f"team(s) not found: {', '.join(missing)}", "team_ids")
    await state.spend.flush()  # unwritten spend lands on the records before they go
    deleted_keys: list[str] = []
    for t in ids:
        deleted_keys += await key_routes.delete_keys_of(state, "team_id", t)
        for m in (state.cache.get("team", t) or {}).get("members_with_roles") or []:
            await _set_user_teams(state, m["user_id"], t, False)
    deleted = await state.store.delete("team", ids)
    for t in deleted:
        state.cache.drop("team", t)
    return json_response({"deleted_teams": deleted, "deleted_keys": deleted_keys})


async def _set_blocked(state: ProxyState, request: Request, blocked: bool) -> Response:
    f = read(TEAM_ONE, await request.json())
    team = await _team(state, f.text("team_id", required=True))
    return json_response(public(state, await _save(state, team["team_id"], {"blocked": blocked})))


@takes(TEAM_ONE)
async def team_block(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, True)


@takes(TEAM_ONE)
async def team_unblock(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, False)


@takes(MEMBER_ADD)
async def member_add(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(MEMBER_ADD, await request.json())
    team = await _team(state, f.text("team_id", required=True))
    require_team_admin(state, principal, team["team_id"])
    raw = f.body.get("member")
    raw_list = raw if isinstance(raw, list) else [raw] if raw is not None else []
    if not raw_list:
        raise bad_request("'member' is required (an object or a list)", "member")
    default_budget = f.money("max_budget_in_team")
    current = list(team.get("members_with_roles") or [])
    present = {m.get("user_id") for m in current} | {m.get("user_email") for m in current if m.get("user_email")}
    for m in raw_list:  # ids must be strings (a 400) before the membership test below hashes them
        if isinstance(m, dict):
            Fields(m).text("user_id"), Fields(m).text("user_email")
    clash = [str(m.get("user_id") or m.get("user_email")) for m in raw_list if isinstance(m, dict)
             and (m.get("user_id") in present or (m.get("user_email") and m.get("user_email") in present))]
    if clash:
        raise bad_request(f"already a member of team {team['team_id']!r}: {', '.join(clash)}", "member")
    added = [await _resolve_member(state, m, "member", principal) for m in raw_list]
    for m in added:
        if default_budget is not None and "max_budget_in_team" not in m:
            m["max_budget_in_team"] = default_budget
            m["budget_set_by"] = member_authority(principal, m["user_id"])
    updated = await _save(state, team["team_id"], {"members_with_roles": current + added})
    for m in added:
        await _set_user_teams(state, m["user_id"], team["team_id"], True)
    return json_response({"team_id": team["team_id"], "updated_team": public(state, updated), "added": added})


async def _member_index(state: ProxyState, team: dict[str, Any], f: Fields) -> int:
    user_id, email = f.text("user_id"), f.text("user_email")
    if not user_id and not email:
        raise bad_request("'user_id' or 'user_email' is required", "user_id")
    for i, m in enumerate(team.get("members_with_roles") or []):
        if (user_id and m.get("user_id") == user_id) or (email and m.get("user_email") == email):
            return i
    raise bad_request(f"{user_id or email!r} is not a member of team {team['team_id']!r}", "user_id")


@takes(MEMBER_DELETE)
async def member_delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(MEMBER_DELETE, await request.json())
    team = await _team(state, f.text("team_id", required=True))
    require_team_admin(state, principal, team["team_id"])
    members = list(team.get("members_with_roles") or [])
    gone = members.pop(await _member_index(state, team, f))
    # Leaving the team drops the member's budget in it (its keys there keep working): a lift.
    key_limits.member_budget_change(gone, None, member_authority(principal, gone.get("user_id")))
    updated = await _save(state, team["team_id"], {"members_with_roles": members})
    await _set_user_teams(state, gone["user_id"], team["team_id"], False)
    # The updated team, as LiteLLM replies; `removed` (llmbill's) names the member that left.
    return json_response({**public(state, updated), "removed": gone})


@takes(MEMBER_UPDATE)
async def member_update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(MEMBER_UPDATE, await request.json())
    team = await _team(state, f.text("team_id", required=True))
    require_team_admin(state, principal, team["team_id"])
    members = list(team.get("members_with_roles") or [])
    i = await _member_index(state, team, f)
    entry = dict(members[i])
    if f.has("role"):
        role = f.text("role")
        if role not in MEMBER_ROLES:
            raise bad_request(f"member role must be 'admin' or 'user', not {role!r}", "role")
        entry["role"] = role
    if f.has("max_budget_in_team"):
        budget = f.money("max_budget_in_team")
        setter = key_limits.member_budget_change(entry, budget, member_authority(principal, entry.get("user_id")))
        entry["max_budget_in_team"] = budget
        entry.pop("budget_set_by", None)
        if setter is not None:
            entry["budget_set_by"] = setter
    members[i] = entry
    updated = await _save(state, team["team_id"], {"members_with_roles": members})
    return json_response({"team_id": team["team_id"], "updated_team": public(state, updated), "member": entry})
