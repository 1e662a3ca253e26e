"""Customers (end users, the `user` field of a call): /customer/new, info, update, delete, block,
unblock, list — also under /end_user/. Unknown ids → 404 naming them, and nothing changes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..auth import Principal
from ..budget_windows import reset_fields
from ..credits import calls as credit_calls
from .. import subscription_watch
from ..errors import ProxyError, bad_request, not_found
from ..guards import limits_of, window_spend
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import DuplicateError
from ..fields import read, stored_values, values
from ..fields.customers import CUSTOMER_IDS, CUSTOMER_INFO_QUERY, CUSTOMER_LIST_QUERY, CUSTOMER_NEW, CUSTOMER_UPDATE
from ..fields.registry import query, takes
from ..spend_set import set_spend
from ..validate import Fields

# Honoured limit fields kept on the record as checked (guards and entity_limits read them).
# A customer's own limits: any of them set, its reply has a litellm_budget_table.
_BUDGET_TABLE = ("max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "budget_duration",
                 "tpd_limit", "model_max_budget")
# Fields beyond the seed's reply shape, shown when set (LiteLLM's end-user table has them).
SHOWN = ("models", "object_permission", "metadata", "spend_audit", "margin_percent", "margin_fixed")
_AS_IS = ("max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "tpd_limit",
          "model_max_budget", "credits", "margin_percent", "margin_fixed")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def public(state: ProxyState, ident: str, record: dict[str, Any] | None) -> dict[str, Any]:
    """The seed's shape, with the tier (or the customer's own limits) as litellm_budget_table."""
    r = record or {"user_id": ident}
    table: dict[str, Any] | None = None
    if r.get("budget_id") or any(r.get(k) is not None for k in _BUDGET_TABLE):
        limits = limits_of(state, "customer", r)
        table = {"budget_id": r.get("budget_id"), "max_budget": limits.max_budget,
                 "soft_budget": limits.soft_budget, "tpm_limit": limits.tpm, "rpm_limit": limits.rpm,
                 "max_parallel_requests": limits.parallel, "budget_duration": limits.budget_duration,
                 "budget_reset_at": r.get("budget_reset_at")}
        table.update(tpd_limit=limits.tpd, model_max_budget=limits.model_max_budget or None)
    return {"user_id": ident, "blocked": bool(r.get("blocked")), "alias": r.get("alias"),
            "spend": window_spend(state, "customer", ident, record), "allowed_model_region": r.get("allowed_model_region"),
            "default_model": r.get("default_model"), "litellm_budget_table": table,
            **{k: r[k] for k in SHOWN if r.get(k) is not None}}


def _fields(f: Fields, state: ProxyState, current: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = stored_values(CUSTOMER_NEW, f)
    for name in ("alias", "budget_id"):
        if f.has(name):
            out[name] = f.text(name)
    if out.get("default_model") and not state.has_model(out["default_model"]):
        raise bad_request(f"unknown model {out['default_model']!r} in 'default_model'", "default_model")
    if f.has("models"):
        out["models"] = f.texts("models") or []
        unknown = [m for m in out["models"] if not state.has_model(m)]
        if unknown:
            raise bad_request(f"unknown model(s) in 'models': {', '.join(unknown)}", "models")
    out.update(values(CUSTOMER_NEW, f, *_AS_IS))
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
    tier = state.cache.get("budget", out["budget_id"]) if out.get("budget_id") else None
    tier_reset = (tier or {}).get("budget_reset_at")
    if tier_reset is not None and not merged.get("budget_duration") and tier_reset > _now():
        out["budget_reset_at"] = tier_reset  # joining a tier whose windows end at a set time
    if f.has("budget_reset_at"):  # an explicit end of the current window wins over the computed one
        out["budget_reset_at"] = values(CUSTOMER_NEW, f, "budget_reset_at")["budget_reset_at"]
    return out


@takes(CUSTOMER_NEW)
async def new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(CUSTOMER_NEW, await request.json())
    ident = f.text("user_id", required=True)
    assert ident is not None
    record = {"user_id": ident, "blocked": False, "created_at": _now(), **_fields(f, state, None)}
    spend = f.money("spend")
    if spend:
        record["spend"] = spend
    if state.cache.get("customer", ident) is not None or await state.store.get("customer", ident) is not None:
        raise bad_request(f"customer {ident!r} already exists", "user_id")
    try:
        record = await state.store.insert("customer", record)
    except DuplicateError:
        raise bad_request(f"customer {ident!r} already exists", "user_id") from None
    state.cache.put("customer", record)
    subscription_watch.provision_created(state, "customer", ident)
    return json_response(public(state, ident, record))


async def _existing(state: ProxyState, ident: str) -> dict[str, Any]:
    record = await state.cache.get_or_fetch("customer", ident)
    if record is None:
        raise not_found(f"customer {ident!r} not found", "user_id")
    return record


@query(*CUSTOMER_INFO_QUERY)
async def info(state: ProxyState, request: Request, principal: Principal) -> Response:
    ident = request.query.get("end_user_id") or request.query.get("user_id")
    if not ident:
        raise bad_request("'end_user_id' is required", "end_user_id")
    record = await state.cache.get_or_fetch("customer", ident)
    if record is None and not state.spend.pending("customer", ident):
        raise not_found(f"customer {ident!r} not found", "end_user_id")
    shown = public(state, ident, record)
    credits = await credit_calls.info(state, ident)
    if credits is not None:
        shown["credits"] = credits
    return json_response(shown)


@takes(CUSTOMER_UPDATE)
async def update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(CUSTOMER_UPDATE, await request.json())
    ident = f.text("user_id", required=True)
    assert ident is not None
    current = await _existing(state, ident)
    fields = _fields(f, state, current)
    if f.has("spend"):
        await set_spend(state, principal, "customer", ident, f.money("spend"))
    updated = await state.store.update("customer", ident, fields)
    if updated is None:
        raise not_found(f"customer {ident!r} not found", "user_id")
    state.cache.put("customer", updated)
    return json_response(public(state, ident, updated))


async def _ids(request: Request) -> list[str]:
    f = read(CUSTOMER_IDS, await request.json())
    ids = f.texts("user_ids")
    if not ids:
        raise bad_request("'user_ids' must list at least one customer id", "user_ids")
    return ids


async def _all_exist(state: ProxyState, ids: list[str]) -> None:
    missing = [i for i in ids if await state.cache.get_or_fetch("customer", i) is None]
    if missing:
        raise not_found(f"customer(s) not found: {', '.join(missing)}", "user_ids")


@takes(CUSTOMER_IDS)
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


@takes(CUSTOMER_IDS)
async def block(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, True)


@takes(CUSTOMER_IDS)
async def unblock(state: ProxyState, request: Request, principal: Principal) -> Response:
    return await _set_blocked(state, request, False)


@query(*CUSTOMER_LIST_QUERY)
async def list_customers(state: ProxyState, request: Request, principal: Principal) -> Response:
    await state.spend.flush()  # customers first seen in calls are upserted by the flush
    filters = {"budget_id": request.query["budget_id"]} if request.query.get("budget_id") else None
    page = query_int(request, "page", 1, 1)
    size = query_int(request, "size", 1000, 1, 10_000)
    rows = await state.store.list("customer", filters, (page - 1) * size, size)
    return json_response([public(state, r["user_id"], r) for r in rows])
