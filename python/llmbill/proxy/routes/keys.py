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
from ..fields import Body, read, stored_values, values
from ..fields.keys import KEY_DELETE, KEY_GENERATE, KEY_INFO_QUERY, KEY_LIST_QUERY, KEY_ONE, KEY_REGENERATE, KEY_UPDATE
from ..fields.registry import query, takes
from ..fields.users import KEY_OF_USER
from ..spend_set import set_spend
from ..validate import Fields

# Honoured key fields kept on the record as checked (guards and entity_limits read them).
_AS_IS = ("max_parallel_requests", "tpm_limit", "rpm_limit", "tpd_limit", "model_max_budget", "model_rpm_limit",
          "model_tpm_limit", "aliases", "permissions", "tags", "enforced_params", "allowed_routes",
          "temp_budget_increase", "temp_budget_expiry", "max_budget", "soft_budget", "key_type", "budget_fallbacks")
# key_type presets (LiteLLM's handle_key_type): the route group such a key may call.
KEY_TYPE_ROUTES = {"llm_api": ["llm_api_routes"], "management": ["management_routes"], "read_only": ["info_routes"]}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_record(raw: str, fields: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    return {"token_hash": hash_key(raw), "key_name": masked(raw), "key_alias": None, "team_id": None,
            "user_id": None, "models": [], "max_budget": None, "soft_budget": None, "budget_duration": None,
            "budget_reset_at": None, "expires": None, "tpm_limit": None, "rpm_limit": None,
            "max_parallel_requests": None, "metadata": {}, "blocked": False, "created_at": now, "updated_at": now,
            **fields}


def public(record: dict[str, Any], state: ProxyState) -> dict[str, Any]:
    """A key record as the API shows it: spend including what is not yet written; never the raw key.
    `token` and `token_id` are both the hash, as in LiteLLM's replies; `updated_at` is `created_at`
    for records written before updates stamped it."""
    return {**record, "token": record["token_hash"], "token_id": record["token_hash"],
            "updated_at": record.get("updated_at") or record.get("created_at"),
            "spend": state.spend.spend("key", record["token_hash"], record)}


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


def _key_fields(f: Fields, state: ProxyState, spec: Body) -> dict[str, Any]:
    """The record fields a /key/generate or /key/update body sets (types checked by fields.read)."""
    fields: dict[str, Any] = stored_values(spec, f)
    for name in ("key_alias", "team_id", "user_id", "customer_id", "budget_id"):
        if f.has(name):
            fields[name] = f.text(name) or None
    if fields.get("budget_id") and state.cache.get("budget", fields["budget_id"]) is None:
        raise not_found(f"budget {fields['budget_id']!r} not found", "budget_id")
    if f.has("allowed_customer_ids"):
        fields["allowed_customer_ids"] = f.texts("allowed_customer_ids") or None
    if f.has("models"):
        # Stored as given: model names (deployed or not yet), access groups, wildcards and LiteLLM's
        # special names all resolve at call time (model_access.py).
        fields["models"] = f.texts("models") or []
    fields.update(values(spec, f, *_AS_IS))
    if fields.get("key_type") in KEY_TYPE_ROUTES and not fields.get("allowed_routes"):
        fields["allowed_routes"] = KEY_TYPE_ROUTES[fields["key_type"]]
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


def key_fields_of_user(f: Fields, state: ProxyState, spec: Body) -> dict[str, Any]:
    """/user/new: the fields of the user's auto-created key (alias, expiry, aliases, permissions and
    the stored key-only fields)."""
    fields = {k: v for k, v in stored_values(spec, f).items() if k in KEY_OF_USER}
    fields.update(values(spec, f, "key_alias", "aliases", "permissions"))
    if f.has("duration"):
        d = f.duration("duration")
        fields["expires"] = add_duration(_now(), d) if d else None
    return fields


def check_grants(principal: Principal, fields: dict[str, Any]) -> None:
    """`permissions.get_spend_routes` opens every team's and customer's spend: a proxy admin's grant."""
    if (fields.get("permissions") or {}).get("get_spend_routes") and not principal.is_admin:
        raise auth_error("only a proxy admin may grant 'permissions.get_spend_routes'", 403)


def _raw_key(f: Fields, param: str) -> str:
    raw = f.text(param)
    if not raw:
        return new_key()
    check_custom_key(raw, param)
    return raw


@takes(KEY_GENERATE)
async def generate(state: ProxyState, request: Request, principal: Principal) -> Response:
    body = await request.json()
    _key_fields(read(KEY_GENERATE, body), state, KEY_GENERATE)  # types first: the upper bounds read the values
    body = {**body, **check_upper_bounds(state.config.key_generation, body, fill=True)}
    f = read(KEY_GENERATE, body)
    fields = _key_fields(f, state, KEY_GENERATE)
    check_grants(principal, fields)
    await state.cache.ensure([("team", fields.get("team_id")), ("user", fields.get("user_id"))])  # place_key reads them
    fields["user_id"] = place_key(state, principal, fields.get("team_id"), fields.get("user_id"), body)
    check_binding(fields)
    raw = _raw_key(f, "key")
    # Made by a non-admin for another user: the maker holds the secret, so the key acts only as itself.
    fields["delegated"] = not principal.is_admin and fields["user_id"] not in (None, principal.user_id)
    fields["limits_set_by"] = key_limits.initial(fields, key_authority(state, principal, fields))
    await ensure_owner(state, "team", fields.get("team_id"))
    await ensure_owner(state, "user", fields.get("user_id"))
    spend = f.money("spend")
    try:
        record = await state.store.insert("key", {**new_record(raw, fields), **({"spend": spend} if spend else {})})
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
    updated = await state.store.update("key", token, {**fields, "updated_at": _now()})
    if updated is None:
        raise not_found("key not found", "key")
    state.cache.put("key", updated)
    return updated


@query(*KEY_INFO_QUERY)
async def info(state: ProxyState, request: Request, principal: Principal) -> Response:
    record = await target(state, principal, request.query.get("key"), write=False)
    return json_response({"key": record["token_hash"], "info": public(record, state)})


@takes(KEY_UPDATE)
async def update(state: ProxyState, request: Request, principal: Principal) -> Response:
    body = await request.json()
    f = read(KEY_UPDATE, body)
    record = await target(state, principal, f.text("key", required=True), write=True)
    fields = _key_fields(f, state, KEY_UPDATE)
    check_grants(principal, fields)
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
    if f.has("spend"):
        await set_spend(state, principal, "key", record["token_hash"], f.money("spend"))
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


@takes(KEY_DELETE)
async def delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(KEY_DELETE, await request.json())
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


@takes(KEY_REGENERATE)
async def regenerate(state: ProxyState, request: Request, principal: Principal) -> Response:
    """A new secret for the same record (spend, limits, alias kept); the old secret stops working."""
    f = read(KEY_REGENERATE, await request.json())
    record = await target(state, principal, f.text("key", required=True), write=True)
    raw = _raw_key(f, "new_key")
    await state.spend.flush()  # the old record's unwritten spend lands before it moves
    moved = {k: v for k, v in record.items() if k not in ("token_hash", "key_name", "spend")}
    # Whoever re-issues the secret holds it: a non-admin re-issuing another user's key gets a delegated key.
    delegated = not principal.is_admin and record.get("user_id") not in (None, principal.user_id)
    moved.update(token_hash=hash_key(raw), key_name=masked(raw), delegated=delegated, updated_at=_now())
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
    f = read(KEY_ONE, await request.json())
    record = await target(state, principal, f.text("key", required=True), write=True)
    fields: dict[str, Any] = {"blocked": blocked}
    fields["limits_set_by"] = key_limits.check_change(key_limits.set_by_of(record), record, fields,
                                                      key_authority(state, principal, record))
    return json_response(public(await _save(state, record["token_hash"], fields), state))


@takes(KEY_ONE)
async def block(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, principal, True)


@takes(KEY_ONE)
async def unblock(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, principal, False)


@query(*KEY_LIST_QUERY)
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
