"""Customers (end users, the `user` field of a call): /customer/new, info, update, delete, block,
unblock, list — also under /end_user/. Unknown ids → 404 naming them, and nothing changes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..auth import Principal
from ..budget_windows import reset_fields
from ..errors import ProxyError, bad_request, not_found
from ..guards import limits_of, window_spend
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import DuplicateError
from ..validate import Fields

FIELDS = {"user_id", "alias", "blocked", "max_budget", "budget_id", "default_model", "allowed_model_region",
          "tpm_limit", "rpm_limit", "budget_duration", "soft_budget", "max_parallel_requests", "metadata"}
REGIONS = ("eu", "us")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def public(state: ProxyState, ident: str, record: dict[str, Any] | None) -> dict[str, Any]:
    """The seed's shape, with the tier (or the customer's own limits) as litellm_budget_table."""
    r = record or {"user_id": ident}
    table: dict[str, Any] | None = None
    if r.get("budget_id") or r.get("max_budget") is not None or any(
            r.get(k) is not None for k in ("tpm_limit", "rpm_limit", "budget_duration")):
        limits = limits_of(state, "customer", r)
        table = {"budget_id": r.get("budget_id"), "max_budget": limits.max_budget,
                 "soft_budget": limits.soft_budget, "tpm_limit": limits.tpm, "rpm_limit": limits.rpm,
                 "max_parallel_requests": limits.parallel, "budget_duration": limits.budget_duration,
                 "budget_reset_at": r.get("budget_reset_at")}
    return {"user_id": ident, "blocked": bool(r.get("blocked")), "alias": r.get("alias"),
            "spend": window_spend(state, "customer", ident, record), "allowed_model_region": r.get("allowed_model_region"),
            "default_model": r.get("default_model"), "litellm_budget_table": table}


def _fields(f: Fields, state: ProxyState, current: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("alias", "default_model", "allowed_model_region", "budget_id"):
        if f.has(name):
            out[name] = f.text(name)
    if out.get("default_model") and not state.has_model(out["default_model"]):
        raise bad_request(f"unknown model {out['default_model']!r} in 'default_model'", "default_model")
    if out.get("allowed_model_region") and out["allowed_model_region"] not in REGIONS:
        raise bad_request(f"'allowed_model_region' must be one of {', '.join(REGIONS)}", "allowed_model_region")
    for name in ("max_budget", "soft_budget"):
        if f.has(name):
            out[name] = f.money(name)
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        if f.has(name):
            out[name] = f.integer(name)
    if f.has("blocked"):
        out["blocked"] = bool(f.flag("blocked"))
    if f.has("metadata"):
        out["metadata"] = f.mapping("metadata") or {}
    if f.has("budget_duration"):
        out["budget_duration"] = f.duration("budget_duration")
    merged = {**(current or {}), **out}
    if merged.get("max_budget") is not None and merged.get("budget_id"):
        raise ProxyError(422, "a customer has either its own 'max_budget' or a pricing tier ('budget_id'), not both",
                         "bad_request_error", "max_budget")
    if out.get("budget_id") and state.cache.get("budget", out["budget_id"]) is None:
        raise not_found(f"budget {out['budget_id']!r} not found", "budget_id")
    # The governing duration is the customer's own, else its tier's (or the default tier's): any of
    # budget_duration, budget_id or max_budget can change it.
    old = limits_of(state, "customer", current).budget_duration if current is not None else None
    new = limits_of(state, "customer", merged).budget_duration
    out.update(reset_fields(old, new, touched="budget_duration" in out, current_reset=(current or {}).get("budget_reset_at"),
                            now=_now(), tz=state.config.timezone))
    return out


async def new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), FIELDS)
    ident = f.text("user_id", required=True)
    assert ident is not None
    record = {"user_id": ident, "blocked": False, "created_at": _now(), **_fields(f, state, None)}
    if state.cache.get("customer", ident) is not None or await state.store.get("customer", ident) is not None:
        raise bad_request(f"customer {ident!r} already exists", "user_id")
    try:
        record = await state.store.insert("customer", record)
    except DuplicateError:
        raise bad_request(f"customer {ident!r} already exists", "user_id") from None
    state.cache.put("customer", record)
    return json_response(public(state, ident, record))


async def _existing(state: ProxyState, ident: str) -> dict[str, Any]:
    record = await state.cache.get_or_fetch("customer", ident)
    if record is None:
        raise not_found(f"customer {ident!r} not found", "user_id")
    return record


async def info(state: ProxyState, request: Request, principal: Principal) -> Response:
    ident = request.query.get("end_user_id") or request.query.get("user_id")
    if not ident:
        raise bad_request("'end_user_id' is required", "end_user_id")
    record = await state.cache.get_or_fetch("customer", ident)
    if record is None and not state.spend.pending("customer", ident):
        raise not_found(f"customer {ident!r} not found", "end_user_id")
    return json_response(public(state, ident, record))


async def update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = Fields(await request.json(), FIELDS)
    ident = f.text("user_id", required=True)
    assert ident is not None
    current = await _existing(state, ident)
    fields = _fields(f, state, current)
    updated = await state.store.update("customer", ident, fields)
    if updated is None:
        raise not_found(f"customer {ident!r} not found", "user_id")
    state.cache.put("customer", updated)
    return json_response(public(state, ident, updated))


async def _ids(request: Request) -> list[str]:
    f = Fields(await request.json(), {"user_ids"})
    ids = f.texts("user_ids")
    if not ids:
        raise bad_request("'user_ids' must list at least one customer id", "user_ids")
    return ids


async def _all_exist(state: ProxyState, ids: list[str]) -> None:
    missing = [i for i in ids if await state.cache.get_or_fetch("customer", i) is None]
    if missing:
        raise not_found(f"customer(s) not found: {', '.join(missing)}", "user_ids")


async def delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    ids = await _ids(request)
    await _all_exist(state, ids)
    await state.spend.flush()  # their unwritten spend lands before the records go
    deleted = await state.store.delete("customer", ids)
    for i in deleted:
        state.cache.drop("customer", i)
    return json_response({"deleted_customers": deleted})


async def _set_blocked(state: ProxyState, request: Request, blocked: bool) -> Response:
    ids = await _ids(request)
    await _all_exist(state, ids)
    for i in ids:
        updated = await state.store.update("customer", i, {"blocked": blocked})
        if updated is not None:
            state.cache.put("customer", updated)
    return json_response({"blocked" if blocked else "unblocked": ids})


async def block(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, True)


async def unblock(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, False)


async def list_customers(state: ProxyState, request: Request, principal: Principal) -> Response:
    await state.spend.flush()  # customers first seen in calls are upserted by the flush
    filters = {"budget_id": request.query["budget_id"]} if request.query.get("budget_id") else None
    page = query_int(request, "page", 1, 1)
    size = query_int(request, "size", 1000, 1, 10_000)
    rows = await state.store.list("customer", filters, (page - 1) * size, size)
    return json_response([public(state, r["user_id"], r) for r in rows])
