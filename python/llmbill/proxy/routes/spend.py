"""Spend read back: /spend/logs (one row per billed call) and /customer/info's spend field."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..auth import Principal
from ..errors import bad_request
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
    if not principal.reads_all:
        filters["api_key"] = principal.token_hash
    if filters["api_key"] and filters["api_key"].startswith("sk-"):
        from ..auth import hash_key

        filters["api_key"] = hash_key(filters["api_key"])
    rows = await state.store.spend_logs({k: v for k, v in filters.items() if v}, _date(request, "start_date"),
                                        _date(request, "end_date"), query_int(request, "limit", 1000, 1, 100_000))
    return json_response([log_row(r) for r in rows])



def _limit(request: Request) -> int:
    return query_int(request, "limit", 100, 1, 100_000)


async def teams(state: ProxyState, request: Request, principal: Principal) -> Response:
    """Spend per team, with each team's spend per day in the window (from the spend logs)."""
    await state.spend.flush()
    rows = await state.store.spend_logs(None, _date(request, "start_date"), _date(request, "end_date"), 1_000_000)
    daily: dict[str, dict[str, Decimal]] = {}
    for r in rows:
        if r.team_id:
            day = daily.setdefault(r.start_time.date().isoformat(), {})
            day[r.team_id] = day.get(r.team_id, Decimal(0)) + r.spend
    listed = [{"team_id": t["team_id"], "team_alias": t.get("team_alias"),
               "spend": state.spend.spend("team", t["team_id"], t)} for t in await state.store.list("team")]
    listed.sort(key=lambda t: t["spend"], reverse=True)
    return json_response({"teams": listed[:_limit(request)],
                          "daily_spend": [{"date": d, **v} for d, v in sorted(daily.items())]})


async def keys(state: ProxyState, request: Request, principal: Principal) -> Response:
    listed = [{"key": k["token_hash"], "key_alias": k.get("key_alias"), "key_name": k.get("key_name"),
               "team_id": k.get("team_id"), "user_id": k.get("user_id"), "spend": state.spend.spend("key", k["token_hash"], k)}
              for k in await state.store.list("key")]
    listed.sort(key=lambda k: k["spend"], reverse=True)
    return json_response(listed[:_limit(request)])


async def end_users(state: ProxyState, request: Request, principal: Principal) -> Response:
    await state.spend.flush()  # customers first seen in calls are written by the flush
    listed = [{"end_user": c["user_id"], "alias": c.get("alias"), "spend": state.spend.spend("customer", c["user_id"], c)}
              for c in await state.store.list("customer")]
    listed.sort(key=lambda c: c["spend"], reverse=True)
    return json_response(listed[:_limit(request)])
