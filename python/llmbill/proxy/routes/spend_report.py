"""GET /global/spend/report?start_date=&end_date=&group_by=team|customer|model — spend per day per
team, customer or model, summed exactly from the spend logs (one row per billed call).

Days are calendar days in `litellm_settings.timezone` (default UTC); `start_date` and `end_date` are
`YYYY-MM-DD`, both included, and default to the 30 days ending today. The shape follows LiteLLM's
report — one entry per day that had spend, each group with its total and a per-model breakdown:

    [{"group_by_day": "2026-03-02",
      "teams": [{"team_name": "Research", "team_id": "t-1", "total_spend": 0.000126, "total_tokens": 38,
                 "requests": 2, "metadata": [{"model": "gpt-4o", "spend": 0.0001, "total_tokens": 19, "requests": 1}, ...]}]}]

(`customers`/`customer` and `models`/`model` for the other groupings. A team is named by its alias
(else its id), calls without a team by "Unassigned Team" as LiteLLM names them, and each team group
also carries its `team_id`; calls without a customer are grouped under null.)

>>> from decimal import Decimal
>>> from datetime import datetime, timezone
>>> t = datetime(2026, 3, 2, 23, 30, tzinfo=timezone.utc)
>>> row = SpendLog("r1", "chat_completion", "m", "", "", "t-1", "c-1", Decimal("0.5"), 1, 2, 0, 0, t, t, "success")
>>> aggregate([row], "team", "Europe/Paris")[0]["group_by_day"]  # 00:30 the next day in Paris
'2026-03-03'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ..auth import Principal
from ..errors import bad_request
from ..http import Request, Response, json_response
from ..state import ProxyState
from ..store.base import SpendLog

# group_by → (list field of a day, name field of a group, the row's value)
GROUPS: dict[str, tuple[str, str, Callable[[SpendLog], str]]] = {
    "team": ("teams", "team_name", lambda r: r.team_id),
    "customer": ("customers", "customer", lambda r: r.end_user),
    "model": ("models", "model", lambda r: r.model),
}
UNASSIGNED_TEAM = "Unassigned Team"  # LiteLLM's team_name for calls without a team
DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_ROWS = 500_000  # aggregated in memory from the logs; past this the caller narrows the range


class _Sum:
    __slots__ = ("spend", "tokens", "requests")

    def __init__(self) -> None:
        self.spend = Decimal(0)
        self.tokens = 0
        self.requests = 0

    def add(self, row: SpendLog) -> None:
        self.spend += row.spend
        self.tokens += row.prompt_tokens + row.completion_tokens
        self.requests += 1


def _group(group_by: str, ident: str, team_aliases: Mapping[str, str | None]) -> dict[str, Any]:
    """A group's name fields. A team is named as LiteLLM names it — its alias, or "Unassigned Team"
    for calls without one — except that a team without an alias is named by its id (LiteLLM would
    merge every such team into "Unassigned Team"); `team_id` (llmbill's) tells teams apart."""
    if group_by != "team":
        return {GROUPS[group_by][1]: ident or None}
    return {"team_name": (team_aliases.get(ident) or ident) if ident else UNASSIGNED_TEAM, "team_id": ident or None}


def aggregate(rows: Iterable[SpendLog], group_by: str, tz: str,
              team_aliases: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    """Rows → the report (days ascending; groups by spend, largest first)."""
    list_field, _, value = GROUPS[group_by]
    zone = ZoneInfo(tz)
    days: dict[str, dict[str, tuple[_Sum, dict[str, _Sum]]]] = {}
    for row in rows:
        day = row.start_time.astimezone(zone).date().isoformat()
        group, models = days.setdefault(day, {}).setdefault(value(row), (_Sum(), {}))
        group.add(row)
        models.setdefault(row.model, _Sum()).add(row)
    report = []
    for day in sorted(days):
        groups = sorted(days[day].items(), key=lambda kv: (-kv[1][0].spend, kv[0]))
        report.append({"group_by_day": day, list_field: [
            {**_group(group_by, name, team_aliases or {}), "total_spend": total.spend, "total_tokens": total.tokens,
             "requests": total.requests,
             "metadata": [{"model": m, "spend": s.spend, "total_tokens": s.tokens, "requests": s.requests}
                          for m, s in sorted(models.items(), key=lambda kv: (-kv[1].spend, kv[0]))]}
            for name, (total, models) in groups]})
    return report


def _day(request: Request, name: str) -> date | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"'{name}' must be a date like 2026-03-01 (YYYY-MM-DD)", name) from None


def date_range(request: Request, tz: str, today: date | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC from the inclusive start_date..end_date in `tz`."""
    zone = ZoneInfo(tz)
    today = today or datetime.now(timezone.utc).astimezone(zone).date()
    end = _day(request, "end_date") or today
    start = _day(request, "start_date") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise bad_request("'start_date' must not be after 'end_date'", "start_date")
    if (end - start).days + 1 > MAX_DAYS:
        raise bad_request(f"the range covers more than {MAX_DAYS} days; narrow start_date/end_date", "start_date")
    first = datetime.combine(start, time(), zone)
    after = datetime.combine(end + timedelta(days=1), time(), zone)
    return first.astimezone(timezone.utc), after.astimezone(timezone.utc)


async def report(state: ProxyState, request: Request, principal: Principal) -> Response:
    group_by = request.query.get("group_by") or "team"
    if group_by not in GROUPS:
        raise bad_request(f"'group_by' must be one of {', '.join(GROUPS)}", "group_by")
    start, end = date_range(request, state.config.timezone)
    await state.spend.flush()  # what callers have seen billed is in the report
    rows = await state.store.spend_logs(None, start, end, MAX_ROWS + 1)
    if len(rows) > MAX_ROWS:
        raise bad_request(f"more than {MAX_ROWS} calls in the range; narrow start_date/end_date", "start_date")
    teams_seen = await state.store.get_many("team", sorted({r.team_id for r in rows if r.team_id}))
    aliases = {ident: t.get("team_alias") for ident, t in teams_seen.items()}
    return json_response(aggregate(rows, group_by, state.config.timezone, aliases))
