"""Spend read back: /spend/logs (one row per billed call) and /customer/info's spend field."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..auth import Principal
from ..errors import bad_request, not_found
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import SpendLog


def _date(request: Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"'{name}' must be an ISO date (YYYY-MM-DD or a full timestamp)", name) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def log_row(r: SpendLog) -> dict[str, Any]:
    return {"request_id": r.request_id, "call_type": r.call_type, "model": r.model, "api_key": r.api_key,
            "user": r.user, "team_id": r.team_id, "end_user": r.end_user, "spend": r.spend,
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens, "cached_tokens": r.cached_tokens,
            "reasoning_tokens": r.reasoning_tokens, "startTime": r.start_time, "endTime": r.end_time,
            "status": r.status, "metadata": dict(r.metadata)}


async def logs(state: ProxyState, request: Request, principal: Principal) -> Response:
    await state.spend.flush()  # what the caller has seen billed is readable now
    q = request.query
    filters = {"api_key": q.get("api_key"), "user": q.get("user_id"), "end_user": q.get("end_user"),
               "team_id": q.get("team_id"), "request_id": q.get("request_id")}
    if principal.key is not None:
        filters["api_key"] = principal.token_hash
    if filters["api_key"] and filters["api_key"].startswith("sk-"):
        from ..auth import hash_key

        filters["api_key"] = hash_key(filters["api_key"])
    rows = await state.store.spend_logs({k: v for k, v in filters.items() if v}, _date(request, "start_date"),
                                        _date(request, "end_date"), query_int(request, "limit", 1000, 1, 100_000))
    return json_response([log_row(r) for r in rows])


async def customer_info(state: ProxyState, request: Request, principal: Principal) -> Response:
    ident = request.query.get("end_user_id") or request.query.get("user_id")
    if not ident:
        raise bad_request("'end_user_id' is required", "end_user_id")
    record = await state.cache.get_or_fetch("customer", ident)
    pending = state.spend.pending("customer", ident)
    if record is None and not pending:
        raise not_found(f"customer {ident!r} not found", "end_user_id")
    record = record or {"user_id": ident}
    budget = state.cache.get("budget", record["budget_id"]) if record.get("budget_id") else None
    return json_response({"user_id": ident, "blocked": bool(record.get("blocked")), "alias": record.get("alias"),
                          "spend": state.spend.spend("customer", ident),
                          "allowed_model_region": record.get("allowed_model_region"),
                          "default_model": record.get("default_model"), "litellm_budget_table": budget})
