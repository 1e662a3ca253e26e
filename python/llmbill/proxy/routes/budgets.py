"""Budgets (pricing tiers): /budget/new, /budget/info (GET ?budget_id= and POST {budgets}),
/budget/update, /budget/delete, /budget/list. Each customer on a tier has its own spend and window
against the tier's limits."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..auth import Principal
from ..budget_windows import reset_fields
from ..errors import bad_request, not_found
from ..http import Request, Response, json_response
from ..state import ProxyState
from ..store.base import DuplicateError
from ..fields import read, values
from ..fields.customers import BUDGET_DELETE, BUDGET_INFO, BUDGET_INFO_QUERY, BUDGET_NEW, BUDGET_UPDATE
from ..fields.registry import query, takes
from ..validate import Fields

_AS_IS = ("max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "tpd_limit",
          "model_max_budget", "budget_reset_at", "credits", "margin_percent", "margin_fixed")


def _fields(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = values(BUDGET_NEW, f, *_AS_IS)
    if f.has("budget_duration"):
        out["budget_duration"] = f.duration("budget_duration")
    soft, hard = out.get("soft_budget"), out.get("max_budget")
    if soft is not None and hard is not None and soft > hard:
        raise bad_request("'soft_budget' must not exceed 'max_budget'", "soft_budget")
    return out


async def public(state: ProxyState, record: dict[str, Any]) -> dict[str, Any]:
    on_tier = await state.store.count("customer", {"budget_id": record["budget_id"]})
    return {"budget_id": record["budget_id"], "max_budget": record.get("max_budget"),
            "soft_budget": record.get("soft_budget"), "tpm_limit": record.get("tpm_limit"),
            "rpm_limit": record.get("rpm_limit"), "max_parallel_requests": record.get("max_parallel_requests"),
            "budget_duration": record.get("budget_duration"), "created_at": record.get("created_at"),
            "tpd_limit": record.get("tpd_limit"), "model_max_budget": record.get("model_max_budget"),
            "budget_reset_at": record.get("budget_reset_at"), "customers": on_tier,
            **{k: record[k] for k in ("margin_percent", "margin_fixed") if record.get(k) is not None}}


@takes(BUDGET_NEW)
async def new(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(BUDGET_NEW, await request.json())
    ident = f.text("budget_id", required=True)
    assert ident is not None
    record = {"budget_id": ident, "max_budget": None, "soft_budget": None, "tpm_limit": None, "rpm_limit": None,
              "max_parallel_requests": None, "budget_duration": None, "created_at": datetime.now(timezone.utc),
              **_fields(f)}
    try:
        record = await state.store.insert("budget", record)
    except DuplicateError:
        raise bad_request(f"budget {ident!r} already exists", "budget_id") from None
    state.cache.put("budget", record)
    if record.get("budget_reset_at") and record.get("budget_duration"):
        await _move_windows(state, ident, None, record["budget_duration"], record["budget_reset_at"])
    return json_response(await public(state, record))


async def _get(state: ProxyState, ident: str) -> dict[str, Any]:
    record = await state.cache.get_or_fetch("budget", ident)
    if record is None:
        raise not_found(f"budget {ident!r} not found", "budget_id")
    return record


@takes(BUDGET_INFO)
@query(*BUDGET_INFO_QUERY)
async def info(state: ProxyState, request: Request, principal: Principal) -> Response:
    if request.method == "GET":
        ident = request.query.get("budget_id")
        if not ident:
            raise bad_request("'budget_id' is required", "budget_id")
        return json_response(await public(state, await _get(state, ident)))
    f = read(BUDGET_INFO, await request.json())
    ids = f.texts("budgets")
    if not ids:
        raise bad_request("'budgets' must list at least one budget id", "budgets")
    missing = [i for i in ids if await state.cache.get_or_fetch("budget", i) is None]
    if missing:
        raise not_found(f"budget(s) not found: {', '.join(missing)}", "budgets")
    return json_response([await public(state, await _get(state, i)) for i in ids])


@takes(BUDGET_UPDATE)
async def update(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(BUDGET_UPDATE, await request.json())
    ident = f.text("budget_id", required=True)
    assert ident is not None
    current = await _get(state, ident)
    fields = _fields(f)
    soft = fields.get("soft_budget", current.get("soft_budget"))
    hard = fields.get("max_budget", current.get("max_budget"))
    if soft is not None and hard is not None and soft > hard:
        raise bad_request("'soft_budget' must not exceed 'max_budget'", "soft_budget")
    updated = await state.store.update("budget", ident, fields)
    if updated is None:
        raise not_found(f"budget {ident!r} not found", "budget_id")
    state.cache.put("budget", updated)
    if "budget_duration" in fields or fields.get("budget_reset_at"):
        await _move_windows(state, ident, current.get("budget_duration"), updated.get("budget_duration"),
                            fields.get("budget_reset_at"))
    return json_response(await public(state, updated))


async def _move_windows(state: ProxyState, tier: str, old: str | None, new: str | None,
                        reset_at: datetime | None = None) -> None:
    """A tier's duration governs the window of each customer on it without a duration of its own:
    removed → their reset times are cleared (else, once passed, the budget would count nothing);
    set or changed → their windows restart now, as a key's do, and end at `reset_at` when the
    request names it (budget_reset_at)."""
    on_tier = await state.store.list("customer", {"budget_id": tier})
    if tier == state.config.max_end_user_budget_id:  # the default tier: customers with no limits of their own
        on_tier += [c for c in await state.store.list("customer", {"budget_id": None}) if c.get("max_budget") is None]
    now = datetime.now(timezone.utc)
    for customer in on_tier:
        if customer.get("budget_duration"):
            continue
        change = reset_fields(old, new, touched=True, current_reset=customer.get("budget_reset_at"), now=now,
                              tz=state.config.timezone)
        if new and reset_at is not None:
            change = {"budget_reset_at": reset_at}
        if change:
            moved = await state.store.update("customer", customer["user_id"], change)
            if moved is not None:
                state.cache.put("customer", moved)


@takes(BUDGET_DELETE)
async def delete(state: ProxyState, request: Request, principal: Principal) -> Response:
    f = read(BUDGET_DELETE, await request.json())
    ident = f.text("id") or f.text("budget_id")
    if not ident:
        raise bad_request("'id' is required", "id")
    await _get(state, ident)
    on_tier = await state.store.count("customer", {"budget_id": ident})
    if on_tier:
        names = ", ".join(c["user_id"] for c in await state.store.list("customer", {"budget_id": ident}, limit=10))
        raise bad_request(f"budget {ident!r} is the tier of {on_tier} customer(s) ({names}); "
                          "move them to another tier first", "id")
    await state.store.delete("budget", [ident])
    state.cache.drop("budget", ident)
    return json_response({"deleted": ident})


async def list_budgets(state: ProxyState, request: Request, principal: Principal) -> Response:
    return json_response([await public(state, r) for r in await state.store.list("budget")])
