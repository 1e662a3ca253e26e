"""An entity's limits (budget, rate limits, window) as the guards and the spend windows read them.

A key's, user's and team's limits are its own fields; a team member's is its `max_budget_in_team`; a
customer's come from its own fields, else its tier (`budget_id`), else the default tier
(`litellm_settings.max_end_user_budget_id`). Lower than the guards and the state, so both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .cache import EntityCache


@dataclass(frozen=True)
class Limits:
    max_budget: Decimal | None = None
    soft_budget: Decimal | None = None
    tpm: int | None = None
    rpm: int | None = None
    parallel: int | None = None
    budget_duration: str | None = None


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def entity_limits(cache: EntityCache, default_tier: str | None, kind: str, record: dict[str, Any] | None) -> Limits:
    r = record or {}
    if kind == "member":
        return Limits(max_budget=_dec(r.get("max_budget_in_team")))
    if kind == "customer":
        tier_id = r.get("budget_id")
        if tier_id is None and r.get("max_budget") is None:
            tier_id = default_tier
        tier = (cache.get("budget", tier_id) or {}) if tier_id else {}

        def pick(name: str) -> Any:
            return r.get(name) if r.get(name) is not None else tier.get(name)

        return Limits(_dec(pick("max_budget")), _dec(pick("soft_budget")), pick("tpm_limit"), pick("rpm_limit"),
                      pick("max_parallel_requests"), pick("budget_duration"))
    return Limits(_dec(r.get("max_budget")), _dec(r.get("soft_budget")), r.get("tpm_limit"), r.get("rpm_limit"),
                  r.get("max_parallel_requests"), r.get("budget_duration"))
