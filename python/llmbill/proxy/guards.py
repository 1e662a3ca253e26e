"""The pre-call checks: may this caller use this model, and is anyone on the call over budget?

All of it runs from memory. Budgets are checked in the order key, user, team, customer, and the first
one crossed is named in the error (with LiteLLM's message prefixes).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .auth import Principal
from .errors import ProxyError, budget_exceeded
from .state import ProxyState


def allowed_models(state: ProxyState, principal: Principal) -> list[str]:
    """The configured models this caller may call (key ∩ team)."""
    names = state.config.model_names
    key = principal.key
    if key is None:
        return names
    allowed = set(names)
    key_models = key.get("models") or []
    team = state.cache.get("team", key["team_id"]) if key.get("team_id") else None
    team_models = (team or {}).get("models") or []
    if key_models and "all-team-models" not in key_models:
        allowed &= set(key_models)
    if team_models:
        allowed &= set(team_models)
    return [n for n in names if n in allowed]


def check_model_access(state: ProxyState, principal: Principal, model: str) -> None:
    if principal.key is None:
        return
    if model not in allowed_models(state, principal):
        raise ProxyError(403, f"this key may not call model {model!r}; it may call: "
                         f"{', '.join(allowed_models(state, principal)) or 'no model'}",
                         "key_model_access_denied", "model")


def _over(state: ProxyState, kind: str, ident: str, record: dict[str, Any] | None) -> tuple[Decimal, Decimal] | None:
    if record is None:
        return None
    limit = record.get("max_budget")
    if limit is None:
        return None
    spend = state.spend.spend(kind, ident)
    return (spend, Decimal(limit)) if spend >= Decimal(limit) else None


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f") if x == x.to_integral() else str(float(x))


def check_budgets(state: ProxyState, principal: Principal, customer: str) -> None:
    key = principal.key
    if key is not None:
        if over := _over(state, "key", key["token_hash"], state.cache.get("key", key["token_hash"]) or key):
            raise budget_exceeded(f"Budget has been exceeded! Current cost: {_fmt(over[0])}, Max budget: {_fmt(over[1])}")
        if key.get("user_id") and (over := _over(state, "user", key["user_id"], state.cache.get("user", key["user_id"]))):
            raise budget_exceeded(f"ExceededBudget: User={key['user_id']} over budget. "
                                  f"Spend={_fmt(over[0])}, Budget={_fmt(over[1])}")
        if key.get("team_id"):
            team = state.cache.get("team", key["team_id"])
            if team is not None and team.get("blocked"):
                raise ProxyError(401, f"team {key['team_id']} is blocked", "auth_error")
            if over := _over(state, "team", key["team_id"], team):
                raise budget_exceeded(f"Budget has been exceeded! Team={key['team_id']} Current cost: "
                                      f"{_fmt(over[0])}, Max budget: {_fmt(over[1])}")
    if customer:
        record = state.cache.get("customer", customer)
        if record is not None and record.get("blocked"):
            raise ProxyError(403, f"customer {customer} is blocked", "customer_blocked", "user")
        if over := _over(state, "customer", customer, record):
            raise budget_exceeded(f"ExceededBudget: End User={customer} over budget. "
                                  f"Spend={_fmt(over[0])}, Budget={_fmt(over[1])}")


def customer_id(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Headers x-litellm-customer-id / x-litellm-end-user-id, then body `user`, then metadata.user_id."""
    for h in ("x-litellm-customer-id", "x-litellm-end-user-id"):
        if headers.get(h):
            return headers[h]
    user = body.get("user")
    if isinstance(user, str) and user:
        return user
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        return str(meta["user_id"])
    return ""
