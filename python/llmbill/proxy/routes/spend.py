"""Spend read back: /spend/logs (one row per billed call) and the /global/spend/{teams,keys,end_users}
views."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ..auth import Principal
from ..errors import bad_request
from ..http import Request, Response, json_response, query_int
from ..state import ProxyState
from ..store.base import SpendLog


TAG_SCAN = 1_000_000  # rows read to filter by tag (tags live in each row's metadata)


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
            "status": r.status, "metadata": dict(r.metadata), "response_id": r.response_id or None,
            "request_tags": list(r.metadata.get("tags") or [])}


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
    chosen = {k: v for k, v in filters.items() if v}
    limit = query_int(request, "limit", 1000, 1, 100_000)
    tags = {t for t in (request.query.get("tags") or "").split(",") if t}  # rows with any of these tags
    window = (_date(request, "start_date"), _date(request, "end_date"), TAG_SCAN if tags else limit)
    rows = await state.store.spend_logs(chosen, *window)
    if not rows and "request_id" in chosen:  # LiteLLM's request_id is the reply's `id`: accept that too
        chosen["response_id"] = chosen.pop("request_id")
        rows = await state.store.spend_logs(chosen, *window)
    if tags:
        rows = [r for r in rows if tags & set(r.metadata.get("tags") or ())][:limit]
    return json_response([log_row(r) for r in rows])



def _limit(request: Request) -> int:
    return query_int(request, "limit", 100, 1, 100_000)


UNASSIGNED = "Unassigned"  # LiteLLM's name for spend without a team
TEAM_WINDOW_DAYS = 30  # LiteLLM's window when no start_date is given


async def teams(state: ProxyState, request: Request, principal: Principal) -> Response:
    """LiteLLM's shape: `daily_spend` [{date, <team>: spend}], `teams` (the team names that spent in
    the window) and `total_spend_per_team` [{team_id, team_alias, total_spend}], largest first. A
    team is named by its alias, else its id; calls without a team by "Unassigned". Unlike LiteLLM,
    spend is exact (not rounded to cents) and `team_id` is the id (LiteLLM puts the alias there)."""
    await state.spend.flush()
    start = _date(request, "start_date")
    if start is None:
        today = datetime.now(ZoneInfo(state.config.timezone)).date()
        start = datetime.combine(today - timedelta(days=TEAM_WINDOW_DAYS), time(), ZoneInfo(state.config.timezone))
    rows = await state.store.spend_logs(None, start, _date(request, "end_date"), 1_000_000)
    teams_seen = await state.store.get_many("team", sorted({r.team_id for r in rows if r.team_id}))
    aliases = {ident: t.get("team_alias") for ident, t in teams_seen.items()}

    def name(team_id: str) -> str:
        return (aliases.get(team_id) or team_id) if team_id else UNASSIGNED

    daily: dict[str, dict[str, Decimal]] = {}
    totals: dict[str, Decimal] = {}
    for r in rows:
        day = daily.setdefault(r.start_time.astimezone(ZoneInfo(state.config.timezone)).date().isoformat(), {})
        day[name(r.team_id)] = day.get(name(r.team_id), Decimal(0)) + r.spend
        totals[r.team_id] = totals.get(r.team_id, Decimal(0)) + r.spend
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    per_team = [{"team_id": t or None, "team_alias": aliases.get(t) if t else UNASSIGNED, "total_spend": spend}
                for t, spend in ranked[:_limit(request)]]
    return json_response({"daily_spend": [{"date": d, **v} for d, v in sorted(daily.items())],
                          "teams": list(dict.fromkeys(name(t) for t, _ in ranked)),
                          "total_spend_per_team": per_team})


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
