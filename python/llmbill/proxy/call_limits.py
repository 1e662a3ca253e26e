"""What a call's model and body must pass beyond the entity budgets (guards.py), all from memory:

- model aliases: a key's `aliases`, else its team's `model_aliases`, rewrite the model the call names
  before anything else looks at it (access, budgets, the deployment, billing all see the target);
- a key's `enforced_params`: body fields every call must send (dotted for nesting: metadata.x);
- a customer's `models`: the models it may call;
- per-model budgets (`model_max_budget`), per-model rate limits (`model_rpm_limit` /
  `model_tpm_limit`, or the rpm / tpm of a model budget) and tokens per day (`tpd_limit`) of the
  key, user, team and customer.

Per-model budgets reserve the call's upper bound under a per-model limiter entity (limits.per_model)
like entity budgets do, so calls in flight count; their spend is model_spend.py's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .auth import Principal
from .entity_limits import Limits
from .errors import ProxyError, bad_request
from .model_windows import window_start
from .state import ProxyState

Entity = tuple[str, str]


def resolve_model(state: ProxyState, principal: Principal, model: str, body: dict[str, Any]) -> str:
    """The model a call is served and billed as (its alias resolved), after the key's enforced params."""
    key = principal.key
    if key is None:
        return model
    for param in key.get("enforced_params") or ():
        _require(body, param)
    target = (key.get("aliases") or {}).get(model)
    if target is None and key.get("team_id"):
        team = state.cache.get("team", key["team_id"]) or {}
        target = (team.get("model_aliases") or {}).get(model)
    return str(target) if target else model


def _require(body: dict[str, Any], param: str) -> None:
    value: Any = body
    for part in param.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        raise bad_request(f"this key requires '{param}' in every request body (enforced_params)", param)


def call_tags(state: ProxyState, principal: Principal, body: dict[str, Any] | None) -> tuple[str, ...]:
    """The tags of a call's spend log: the key's, its team's and the request's (`tags`, or in
    `metadata` / `litellm_metadata`, as LiteLLM reads them)."""
    key = principal.key or {}
    team = state.cache.get("team", key["team_id"]) if key.get("team_id") else None
    found = [*(key.get("tags") or ()), *((team or {}).get("tags") or ())]
    body = body or {}
    metas = [m for m in (body.get("metadata"), body.get("litellm_metadata")) if isinstance(m, dict)]
    for asked in (body.get("tags"), *(m.get("tags") for m in metas)):
        if isinstance(asked, list):
            found += [t for t in asked if isinstance(t, str)]
    return tuple(dict.fromkeys(t[:256] for t in found))[:64] if found else ()


def check_customer_models(record: dict[str, Any] | None, customer: str, model: str) -> None:
    allowed = (record or {}).get("models")
    if allowed and model not in allowed:
        raise ProxyError(403, f"customer {customer} may not call model {model!r}; it may call: {', '.join(allowed)}",
                         "key_model_access_denied", "model")


@dataclass(frozen=True)
class ModelLimit:
    """One entity's limits on one model, as a call to it reads them."""

    entity: Entity
    model: str
    max_budget: Decimal | None
    duration: str | None
    rpm: int | None
    tpm: int | None

    @property
    def pair(self) -> tuple[str, str, str]:
        return self.entity[0], self.entity[1], self.model


def model_limit(entity: Entity, limits: Limits, model: str) -> ModelLimit | None:
    budget = limits.model_max_budget.get(model) or {}
    rpm = limits.model_rpm.get(model, budget.get("rpm_limit"))
    tpm = limits.model_tpm.get(model, budget.get("tpm_limit"))
    max_budget = budget.get("max_budget")
    if max_budget is None and rpm is None and tpm is None:
        return None
    return ModelLimit(entity, model, None if max_budget is None else Decimal(max_budget),
                      budget.get("budget_duration"), rpm, tpm)


class SpendNotLoaded(Exception):
    """admit() met a per-model budget whose spend this process has not read yet (guards.admit_model
    reads it and admits again: the request path awaits nothing otherwise)."""

    def __init__(self, limits: list[ModelLimit]) -> None:
        super().__init__("per-model spend not read yet")
        self.limits = limits


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f")


def model_exceeded_message(limit: ModelLimit, record: dict[str, Any] | None, spend: Decimal) -> str:
    """LiteLLM's messages for a model budget, with the spend and the budget."""
    kind, ident = limit.entity
    who = {"key": f"LiteLLM Virtual Key: {ident}, key_alias: {(record or {}).get('key_alias')}",
           "user": f"LiteLLM User: {ident}", "team": f"LiteLLM Team: {ident}",
           "customer": f"LiteLLM End User: {ident}"}[kind]
    assert limit.max_budget is not None
    return f"{who}, exceeded budget for model={limit.model}. Spend={_fmt(spend)}, Budget={_fmt(limit.max_budget)}"


def window_of(state: ProxyState, limit: ModelLimit, now: datetime | None = None) -> datetime | None:
    return window_start(now or datetime.now(timezone.utc), limit.duration, state.config.timezone)


async def load_model_spend(state: ProxyState, limits: list[ModelLimit]) -> None:
    """Reads the spend of pairs this process has not read yet (their first call waits for it), and
    starts the background refresh the first time."""
    spend = state.limiter.model_spend
    todo = [lim.pair for lim in limits if lim.max_budget is not None
            and not spend.loaded(lim.pair, window_of(state, lim))]
    if todo:
        await spend.load(state.store, todo)
    if todo and not spend.refreshing:
        spend.refreshing = True
        state.run_in_background(_refresh_loop(state))


async def _refresh_loop(state: ProxyState) -> None:
    while True:
        await asyncio.sleep(state.config.cache_refresh_interval)
        await state.limiter.model_spend.refresh(state.store)
