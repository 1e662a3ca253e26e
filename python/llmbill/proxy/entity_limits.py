"""An entity's limits (budget, rate limits, window) as the guards and the spend windows read them.

A key's, user's and team's limits are its own fields; a key on a tier (`budget_id`) takes the tier's
where it has none of its own; a key's `temp_budget_increase` adds to its max_budget until
`temp_budget_expiry`. A team member's budget is its `max_budget_in_team`, else the team's
`team_member_budget`; its window the team's `team_member_budget_duration`; its rate limits the team's
`team_member_rpm_limit` / `team_member_tpm_limit`. A customer's limits come from its own fields, else
its tier (`budget_id`), else the default tier (`litellm_settings.max_end_user_budget_id`). Lower than
the guards and the state, so both use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .cache import EntityCache


# Not frozen: made twice a call on the request path, and a frozen dataclass's __init__ sets each
# field through object.__setattr__ (~3x the time). Treated as immutable: replace() makes a changed copy.
@dataclass(slots=True)
class Limits:
    max_budget: Decimal | None = None
    soft_budget: Decimal | None = None
    tpm: int | None = None
    rpm: int | None = None
    parallel: int | None = None
    budget_duration: str | None = None
    tpd: int | None = None
    # Per model: {model: {"max_budget", "budget_duration", "tpm_limit", "rpm_limit"}}, and rpm / tpm maps.
    model_max_budget: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_rpm: Mapping[str, int] = field(default_factory=dict)
    model_tpm: Mapping[str, int] = field(default_factory=dict)


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def temp_increase(record: Mapping[str, Any], now: datetime | None = None) -> Decimal:
    """A key's temporary budget increase while it lasts (LiteLLM: only on a key that has a budget)."""
    amount, until = record.get("temp_budget_increase"), record.get("temp_budget_expiry")
    if amount is None or not isinstance(until, datetime):
        return Decimal(0)
    return Decimal(amount) if (now or datetime.now(timezone.utc)) < until else Decimal(0)


_NONE: Mapping[str, Any] = MappingProxyType({})  # read-only: one shared "no per-model limits"


def _limits(r: Mapping[str, Any], tier: Mapping[str, Any]) -> Limits:
    # Twice a call on the request path (key, customer): the record's own field, else its tier's.
    def tiered(name: str) -> Any:
        own = r.get(name)
        return own if own is not None else tier.get(name)

    pick: Callable[[str], Any] = tiered if tier else r.get

    max_budget, soft_budget = pick("max_budget"), pick("soft_budget")
    return Limits(None if max_budget is None else Decimal(max_budget),
                  None if soft_budget is None else Decimal(soft_budget), pick("tpm_limit"), pick("rpm_limit"),
                  pick("max_parallel_requests"), pick("budget_duration"), pick("tpd_limit"),
                  pick("model_max_budget") or _NONE, r.get("model_rpm_limit") or _NONE,
                  r.get("model_tpm_limit") or _NONE)


def member_entry(team: Mapping[str, Any] | None, member: dict[str, Any] | None) -> dict[str, Any] | None:
    """A team member's entry as its limits read it: its own `max_budget_in_team`, else the team's
    `team_member_budget`; the team's `team_member_rpm_limit` / `team_member_tpm_limit`. None when
    the member has no limit (a key without a user is no member: LiteLLM's service accounts)."""
    if member is None:
        return None
    t = team or {}
    entry = dict(member)
    if entry.get("max_budget_in_team") is None and t.get("team_member_budget") is not None:
        entry["max_budget_in_team"] = t["team_member_budget"]
    entry["rpm_limit"], entry["tpm_limit"] = t.get("team_member_rpm_limit"), t.get("team_member_tpm_limit")
    entry["budget_duration"] = t.get("team_member_budget_duration")
    if all(entry.get(n) is None for n in ("max_budget_in_team", "rpm_limit", "tpm_limit")):
        return None
    return entry


def member_team(ident: str) -> str:
    """The team of a member spend record's id (store.member_id's inverse); "" when it is not one.

    >>> member_team('["t/1","u"]')
    't/1'
    """
    try:
        pair = json.loads(ident)
    except ValueError:
        return ""
    return pair[0] if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) else ""


def entity_limits(cache: EntityCache, default_tier: str | None, kind: str, record: dict[str, Any] | None) -> Limits:
    r = record or {}
    if kind == "member":  # member_entry's, or the member's spend record (its window only)
        duration = r.get("budget_duration")
        if isinstance(r.get("member_id"), str):
            duration = (cache.get("team", member_team(r["member_id"])) or {}).get("team_member_budget_duration")
        return Limits(max_budget=_dec(r.get("max_budget_in_team")), rpm=r.get("rpm_limit"), tpm=r.get("tpm_limit"),
                      budget_duration=duration)
    tier_id = r.get("budget_id") if kind in ("customer", "key") else None
    if kind == "customer" and tier_id is None and r.get("max_budget") is None:
        tier_id = default_tier
    limits = _limits(r, (cache.get("budget", tier_id) or {}) if tier_id else {})
    if kind == "key" and limits.max_budget is not None and r.get("temp_budget_increase") is not None:
        extra = temp_increase(r)
        if extra:
            limits = replace(limits, max_budget=limits.max_budget + extra)
    return limits
