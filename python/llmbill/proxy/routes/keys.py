"""Virtual keys: /key/generate, /key/info, /key/update, /key/delete, /key/list.

Keys are stored hashed; the raw key appears once, in the /key/generate reply. A key may name a team
or user that does not exist yet: the team/user record is created, so its spend is tracked (the seeds
generate a key for a team id nobody created).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..auth import Principal, hash_key, masked, new_key
from ..durations import add_duration, next_reset
from ..errors import auth_error, bad_request, not_found
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import DuplicateError
from ..validate import Fields

KEY_FIELDS = {"key_alias", "team_id", "user_id", "models", "max_budget", "budget_duration", "duration", "metadata",
              "tpm_limit", "rpm_limit", "max_parallel_requests", "key", "blocked", "soft_budget", "expires"}


def public(record: dict[str, Any], state: ProxyState) -> dict[str, Any]:
    """A key record as the API shows it: spend including what is not yet written; never the raw key."""
    out = dict(record)
    out["token"] = record["token_hash"]
    out["spend"] = state.spend.spend("key", record["token_hash"])
    return out


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def ensure_owner(state: ProxyState, kind: str, ident: str | None) -> None:
    """Creates the team or user a key names when it does not exist yet."""
    if not ident or state.cache.get(kind, ident) is not None:
        return
    record = await state.store.get(kind, ident)
    if record is None:
        id_field = "team_id" if kind == "team" else "user_id"
        try:
            record = await state.store.insert(kind, {id_field: ident, "created_at": _now(), "models": [],
                                                     "max_budget": None, "metadata": {}, "blocked": False,
                                                     **({"user_role": "internal_user", "teams": []} if kind == "user" else {})})
        except DuplicateError:
            record = await state.store.get(kind, ident)
    if record is not None:
        state.cache.put(kind, record)


def _key_fields(f: Fields, state: ProxyState) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("key_alias", "team_id", "user_id"):
        if f.has(name):
            fields[name] = f.str(name)
    if f.has("models"):
        fields["models"] = f.str_list("models") or []
        unknown = [m for m in fields["models"] if m != "all-team-models" and not state.has_model(m)]
        if unknown:
            raise bad_request(f"unknown model(s) in 'models': {', '.join(unknown)}", "models")
    for name in ("max_budget", "soft_budget"):
        if f.has(name):
            fields[name] = f.money(name)
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        if f.has(name):
            fields[name] = f.int(name)
    if f.has("budget_duration"):
        fields["budget_duration"] = f.duration("budget_duration")
        fields["budget_reset_at"] = (next_reset(_now(), fields["budget_duration"], state.config.timezone)
                                     if fields["budget_duration"] else None)
    if f.has("duration"):
        d = f.duration("duration")
        fields["expires"] = add_duration(_now(), d) if d else None
    if f.has("metadata"):
        fields["metadata"] = f.dict("metadata") or {}
    if f.has("blocked"):
        fields["blocked"] = bool(f.bool("blocked"))
    return fields


async def generate(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), KEY_FIELDS - {"expires"})
    fields = _key_fields(f, state)
    raw = f.str("key") or new_key()
    if not raw.startswith("sk-") or len(raw) < 8:
        raise bad_request("'key' must start with 'sk-' and have at least 8 characters", "key")
    if principal.key is not None:  # an internal user makes keys only for itself
        fields["user_id"] = principal.key.get("user_id")
    record = {"token_hash": hash_key(raw), "key_name": masked(raw), "key_alias": None, "team_id": None,
              "user_id": None, "models": [], "max_budget": None, "soft_budget": None, "budget_duration": None,
              "budget_reset_at": None, "expires": None, "tpm_limit": None, "rpm_limit": None,
              "max_parallel_requests": None, "metadata": {}, "blocked": False, "created_at": _now(), **fields}
    await ensure_owner(state, "team", record["team_id"])
    await ensure_owner(state, "user", record["user_id"])
    try:
        record = await state.store.insert("key", record)
    except DuplicateError:
        raise bad_request("this key already exists", "key") from None
    state.cache.put("key", record)
    return json_response({**public(record, state), "key": raw})


async def _target(state: ProxyState, principal: Principal, raw_or_hash: str | None) -> dict[str, Any]:
    if not raw_or_hash:
        if principal.key is not None:
            return principal.key
        raise bad_request("'key' is required", "key")
    token = raw_or_hash if len(raw_or_hash) == 64 and not raw_or_hash.startswith("sk-") else hash_key(raw_or_hash)
    record = await state.cache.get_or_fetch("key", token)
    if record is None:
        raise not_found("key not found", "key")
    if principal.key is not None and not principal.is_admin and record["token_hash"] != principal.token_hash \
            and (not record.get("user_id") or record.get("user_id") != principal.key.get("user_id")):
        raise auth_error("a virtual key may only read its own keys", 403)
    return record


async def info(state: ProxyState, request: Request, principal: Principal) -> Response:
    record = await _target(state, principal, request.query.get("key"))
    return json_response({"key": record["token_hash"], "info": public(record, state)})


async def update(state: ProxyState, request: Request, principal: Principal) -> Response:
    body = await request.json()
    f = Fields(body, KEY_FIELDS)
    record = await _target(state, principal, f.str("key", required=True))
    fields = _key_fields(f, state)
    await ensure_owner(state, "team", fields.get("team_id"))
    await ensure_owner(state, "user", fields.get("user_id"))
    updated = await state.store.update("key", record["token_hash"], fields)
    if updated is None:
        raise not_found("key not found", "key")
    state.cache.put("key", updated)
    return json_response(public(updated, state))


async def delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), {"keys", "key_aliases"})
    keys = f.str_list("keys") or []
    aliases = f.str_list("key_aliases") or []
    if not keys and not aliases:
        raise bad_request("'keys' must list at least one key", "keys")
    hashes = []
    for k in keys:
        hashes.append((await _target(state, principal, k))["token_hash"])
    for alias in aliases:
        found = [r for r in state.cache.all("key") if r.get("key_alias") == alias]
        if not found:
            raise not_found(f"no key with alias {alias!r}", "key_aliases")
        hashes += [r["token_hash"] for r in found]
    deleted = await state.store.delete("key", hashes)
    for h in deleted:
        state.cache.drop("key", h)
    return json_response({"deleted_keys": deleted})


async def list_keys(state: ProxyState, request: Request, principal: Principal) -> Response:
    filters = {k: request.query[k] for k in ("team_id", "user_id", "key_alias") if request.query.get(k)}
    if principal.key is not None:
        filters["user_id"] = principal.key.get("user_id") or "\x00none"
    page = query_int(request, "page", 1, 1)
    size = query_int(request, "size", 100, 1, 1000)
    rows = await state.store.list("key", filters, (page - 1) * size, size)
    total = len(await state.store.list("key", filters))
    return json_response({"keys": [public(r, state) for r in rows], "total_count": total, "current_page": page,
                          "total_pages": max(1, -(-total // size))})

