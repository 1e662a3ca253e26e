"""Virtual keys: /key/generate, info, update, delete, list, regenerate, block, unblock.

Keys are stored hashed; the raw key appears once, in the /key/generate (or /key/regenerate) reply.
A key may name a team or user that does not exist yet: the record is created, so its spend is tracked
(the seeds generate a key for a team id nobody created). Who may act on which key: permissions.py;
which limits a change may lift: key_limits.py; customer binding: customer_binding.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .. import key_limits
from ..auth import Principal, check_custom_key, hash_key, masked, new_key
from ..customer_binding import check_binding
from ..durations import add_duration, next_reset
from ..errors import auth_error, bad_request, not_found
from ..http import Request, Response, json_response, query_int
from ..keygen_settings import check_upper_bounds
from ..permissions import can_read_key, key_authority, place_key, require_key_write
from ..state import ProxyState
from ..store.base import DuplicateError
from ..validate import Fields

KEY_FIELDS = {"key_alias", "team_id", "user_id", "models", "max_budget", "budget_duration", "duration", "metadata",
              "tpm_limit", "rpm_limit", "max_parallel_requests", "key", "blocked", "soft_budget", "customer_id",
              "allowed_customer_ids"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_record(raw: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"token_hash": hash_key(raw), "key_name": masked(raw), "key_alias": None, "team_id": None,
            "user_id": None, "models": [], "max_budget": None, "soft_budget": None, "budget_duration": None,
            "budget_reset_at": None, "expires": None, "tpm_limit": None, "rpm_limit": None,
            "max_parallel_requests": None, "metadata": {}, "blocked": False, "created_at": _now(), **fields}


def public(record: dict[str, Any], state: ProxyState) -> dict[str, Any]:
    """A key record as the API shows it: spend including what is not yet written; never the raw key."""
    return {**record, "token": record["token_hash"], "spend": state.spend.spend("key", record["token_hash"], record)}


async def ensure_owner(state: ProxyState, kind: str, ident: str | None) -> None:
    """Creates the team or user a key names when it does not exist yet."""
    if not ident or await state.cache.get_or_fetch(kind, ident) is not None:
        return
    id_field = "team_id" if kind == "team" else "user_id"
    base = {id_field: ident, "created_at": _now(), "models": [], "max_budget": None, "metadata": {}, "blocked": False}
    extra = {"user_role": "internal_user", "teams": []} if kind == "user" else {"members_with_roles": []}
    try:
        record = await state.store.insert(kind, {**base, **extra})
    except DuplicateError:
        record = await state.store.get(kind, ident) or base
    state.cache.put(kind, record)


def _key_fields(f: Fields, state: ProxyState) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("key_alias", "team_id", "user_id", "customer_id"):
        if f.has(name):
            fields[name] = f.text(name) or None
    if f.has("allowed_customer_ids"):
        fields["allowed_customer_ids"] = f.texts("allowed_customer_ids") or None
    if f.has("models"):
        fields["models"] = f.texts("models") or []
        unknown = [m for m in fields["models"] if m != "all-team-models" and not state.has_model(m)]
        if unknown:
            raise bad_request(f"unknown model(s) in 'models': {', '.join(unknown)}", "models")
    for name in ("max_budget", "soft_budget"):
        if f.has(name):
            fields[name] = f.money(name)
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        if f.has(name):
            fields[name] = f.integer(name)
    if f.has("budget_duration"):
        fields["budget_duration"] = f.duration("budget_duration")
        fields["budget_reset_at"] = (next_reset(_now(), fields["budget_duration"], state.config.timezone)
                                     if fields["budget_duration"] else None)
    if f.has("duration"):
        d = f.duration("duration")
        fields["expires"] = add_duration(_now(), d) if d else None
    if f.has("metadata"):
        fields["metadata"] = f.mapping("metadata") or {}
    if f.has("blocked"):
        fields["blocked"] = bool(f.flag("blocked"))
    return fields


def _raw_key(f: Fields, param: str) -> str:
    raw = f.text(param)
    if not raw:
        return new_key()
    check_custom_key(raw, param)
    return raw


async def generate(state: ProxyState, request: Request, principal: Principal) -> Response:
    body = await request.json()
    _key_fields(Fields(body, KEY_FIELDS), state)  # types first: the upper bounds read the values
    body = {**body, **check_upper_bounds(state.config.key_generation, body, fill=True)}
    f = Fields(body, KEY_FIELDS)
    fields = _key_fields(f, state)
    await state.cache.ensure([("team", fields.get("team_id")), ("user", fields.get("user_id"))])  # place_key reads them
    fields["user_id"] = place_key(state, principal, fields.get("team_id"), fields.get("user_id"), body)
    check_binding(fields)
    raw = _raw_key(f, "key")
    # Made by a non-admin for another user: the maker holds the secret, so the key acts only as itself.
    fields["delegated"] = not principal.is_admin and fields["user_id"] not in (None, principal.user_id)
    fields["limits_set_by"] = key_limits.initial(fields, key_authority(state, principal, fields))
    await ensure_owner(state, "team", fields.get("team_id"))
    await ensure_owner(state, "user", fields.get("user_id"))
    try:
        record = await state.store.insert("key", new_record(raw, fields))
    except DuplicateError:
        raise bad_request("this key already exists", "key") from None
    state.cache.put("key", record)
    return json_response({**public(record, state), "key": raw})


async def target(state: ProxyState, principal: Principal, raw_or_hash: str | None, write: bool) -> dict[str, Any]:
    """The key a request names (raw or hashed), if the caller may read (or change) it."""
    if not raw_or_hash:
        if principal.key is not None and not write:
            return principal.key
        raise bad_request("'key' is required", "key")
    token = raw_or_hash if len(raw_or_hash) == 64 and not raw_or_hash.startswith("sk-") else hash_key(raw_or_hash)
    record = await state.cache.get_or_fetch("key", token)
    if record is None:
        raise not_found("key not found", "key")
    if write:
        require_key_write(state, principal, record)
    elif not can_read_key(state, principal, record):
        raise auth_error("this key may not read that key", 403)
    return record


async def _save(state: ProxyState, token: str, fields: dict[str, Any]) -> dict[str, Any]:
    updated = await state.store.update("key", token, fields)
    if updated is None:
        raise not_found("key not found", "key")
    state.cache.put("key", updated)
    return updated


async def info(state: ProxyState, request: Request, principal: Principal) -> Response:
    record = await target(state, principal, request.query.get("key"), write=False)
    return json_response({"key": record["token_hash"], "info": public(record, state)})


async def update(state: ProxyState, request: Request, principal: Principal) -> Response:
    body = await request.json()
    f = Fields(body, KEY_FIELDS)
    record = await target(state, principal, f.text("key", required=True), write=True)
    fields = _key_fields(f, state)
    if not principal.is_admin:  # else a non-admin would lift the bounds /key/generate applies
        check_upper_bounds(state.config.key_generation, body, fill=False)
    await state.cache.ensure([("team", fields.get("team_id", record.get("team_id"))),
                              ("user", fields.get("user_id", record.get("user_id")))])
    await _move(state, principal, record, fields)
    check_binding(fields, record)
    fields["limits_set_by"] = key_limits.check_change(key_limits.set_by_of(record), record, fields,
                                                      key_authority(state, principal, record))
    await ensure_owner(state, "team", fields.get("team_id"))
    await ensure_owner(state, "user", fields.get("user_id"))
    return json_response(public(await _save(state, record["token_hash"], fields), state))


async def _move(state: ProxyState, principal: Principal, record: dict[str, Any], fields: dict[str, Any]) -> None:
    """A new user or team for the key: checked as if it were made there. A non-admin cannot know who
    holds the secret, so a key it moves stays its own only if it was and is the caller's own."""
    team_id, user_id = fields.get("team_id", record.get("team_id")), fields.get("user_id", record.get("user_id"))
    if (team_id, user_id) == (record.get("team_id"), record.get("user_id")) or principal.is_admin:
        return
    fields["user_id"] = place_key(state, principal, team_id, user_id)
    mine = principal.user_id is not None and record.get("user_id") == principal.user_id and not record.get("delegated")
    fields["delegated"] = fields["user_id"] is not None and not (mine and fields["user_id"] == principal.user_id)


async def delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), {"keys", "key_aliases"})
    keys = f.texts("keys") or []
    aliases = f.texts("key_aliases") or []
    if not keys and not aliases:
        raise bad_request("'keys' must list at least one key", "keys")
    hashes = [(await target(state, principal, k, write=True))["token_hash"] for k in keys]
    for alias in aliases:
        found = await state.store.list("key", {"key_alias": alias})
        if not found:
            raise not_found(f"no key with alias {alias!r}", "key_aliases")
        await state.cache.ensure([(kind, r.get(f"{kind}_id")) for r in found for kind in ("team", "user")])
        for r in found:
            require_key_write(state, principal, r)
        hashes += [r["token_hash"] for r in found]
    deleted = await state.store.delete("key", hashes)
    for h in deleted:
        state.cache.drop("key", h)
    return json_response({"deleted_keys": deleted})


async def delete_keys_of(state: ProxyState, field: str, ident: str) -> list[str]:
    """Deletes every key whose `field` (team_id or user_id) is `ident`; returns their hashes."""
    keys = [k["token_hash"] for k in await state.store.list("key", {field: ident})]
    deleted = await state.store.delete("key", keys)
    for h in deleted:
        state.cache.drop("key", h)
    return deleted


async def regenerate(state: ProxyState, request: Request, principal: Principal) -> Response:
    """A new secret for the same record (spend, limits, alias kept); the old secret stops working."""
    f = Fields(await request.json(), {"key", "new_key"})
    record = await target(state, principal, f.text("key", required=True), write=True)
    raw = _raw_key(f, "new_key")
    await state.spend.flush()  # the old record's unwritten spend lands before it moves
    moved = {k: v for k, v in record.items() if k not in ("token_hash", "key_name", "spend")}
    # Whoever re-issues the secret holds it: a non-admin re-issuing another user's key gets a delegated key.
    delegated = not principal.is_admin and record.get("user_id") not in (None, principal.user_id)
    moved.update(token_hash=hash_key(raw), key_name=masked(raw), delegated=delegated)
    fresh = await state.store.get("key", record["token_hash"])
    try:
        new = await state.store.insert("key", {**moved, "spend": (fresh or record).get("spend", 0)})
    except DuplicateError:
        raise bad_request("this key already exists", "new_key") from None
    await state.store.delete("key", [record["token_hash"]])
    state.cache.drop("key", record["token_hash"])
    state.cache.put("key", new)
    return json_response({**public(new, state), "key": raw})


async def _set_blocked(state: ProxyState, request: Request, principal: Principal, blocked: bool) -> Response:
    f = Fields(await request.json(), {"key"})
    record = await target(state, principal, f.text("key", required=True), write=True)
    fields: dict[str, Any] = {"blocked": blocked}
    fields["limits_set_by"] = key_limits.check_change(key_limits.set_by_of(record), record, fields,
                                                      key_authority(state, principal, record))
    return json_response(public(await _save(state, record["token_hash"], fields), state))


async def block(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, principal, True)


async def unblock(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, principal, False)


async def list_keys(state: ProxyState, request: Request, principal: Principal) -> Response:
    filters = {k: request.query[k] for k in ("team_id", "user_id", "key_alias") if request.query.get(k)}
    page = query_int(request, "page", 1, 1)
    size = query_int(request, "size", 100, 1, 1000)
    rows = await state.store.list("key", filters)
    if not principal.reads_all:  # can_read_key reads each key's team
        await state.cache.ensure([("team", r.get("team_id")) for r in rows])
        rows = [r for r in rows if can_read_key(state, principal, r)]
    return json_response({"keys": [public(r, state) for r in rows[(page - 1) * size: page * size]],
                          "total_count": len(rows), "current_page": page, "total_pages": max(1, -(-len(rows) // size))})
