"""The pre-call checks, all from memory: may this caller use this model; is the key, its user, its
team or the customer blocked, over budget (counting what calls in flight have reserved) or over a
rate limit. The first limit crossed, in the order key, user, team, customer, is named in the error
(with LiteLLM's message prefixes). An admitted call holds its reservation until it settles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .auth import Principal
from .entity_limits import Limits, entity_limits
from .errors import ProxyError, budget_exceeded, rate_limited
from .ids import check_id, header_id
from .state import ProxyState
from .store.base import member_id
from .upper_bound import UpperBound

Entity = tuple[str, str]


def limits_of(state: ProxyState, kind: str, record: dict[str, Any] | None) -> Limits:
    """An entity's limits (entity_limits.py), with this proxy's default customer tier."""
    return entity_limits(state.cache, state.config.max_end_user_budget_id, kind, record)


def window_spend(state: ProxyState, kind: str, ident: str, record: dict[str, Any] | None,
                 now: datetime | None = None) -> Decimal:
    """Spend in the current budget window. Past `budget_reset_at` the stored spend belongs to the old
    window, so only what this process recorded since counts — the reset takes effect at that instant,
    whenever the background job gets to write it. A `budget_reset_at` left behind by a duration
    since removed (a record written before updates cleared it) starts no window: all spend counts."""
    reset_at = (record or {}).get("budget_reset_at")
    if (isinstance(reset_at, datetime) and (now or datetime.now(timezone.utc)) >= reset_at
            and limits_of(state, kind, record).budget_duration):
        return state.spend.pending(kind, ident)
    return state.spend.spend(kind, ident, record)


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
    user = state.cache.get("user", key["user_id"]) if key.get("user_id") else None
    user_models = (user or {}).get("models") or []
    if key_models and "all-team-models" not in key_models:
        allowed &= set(key_models)
    if team_models:
        allowed &= set(team_models)
    if user_models:
        allowed &= set(user_models)
    if "*" in allowed:  # a wildcard deployment forwards any name the key is not otherwise denied
        allowed |= {m for m in key_models if m != "all-team-models"}
    return [n for n in names if n in allowed] + sorted(allowed - set(names))


def check_model_access(state: ProxyState, principal: Principal, model: str) -> None:
    if principal.key is None:
        return
    allowed = allowed_models(state, principal)
    if model not in allowed and not ("*" in allowed and not state.has_model(model)):
        raise ProxyError(403, f"this key may not call model {model!r}; it may call: {', '.join(allowed) or 'no model'}",
                         "key_model_access_denied", "model")


def customer_id(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Headers x-litellm-customer-id / x-litellm-end-user-id, then body `user`, then metadata.user_id —
    each checked as an id (ids.py): a customer id is stored, indexed and billed, so a bad one is a 400."""
    for h in ("x-litellm-customer-id", "x-litellm-end-user-id"):
        if headers.get(h):
            return header_id(headers[h], h)
    user = body.get("user")
    if isinstance(user, str) and user:
        return check_id(user, "user")
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        return check_id(meta["user_id"], "metadata.user_id")
    return ""


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f")  # exact and plain: 0.000078, never 7.8e-05


def member_spend(state: ProxyState, team_id: str, user_id: str) -> Decimal:
    """A team member's spend in the team: its own record, which every call of the user's keys in that
    team adds to (spend.py), plus what this process has not written yet."""
    return state.spend.spend("member", member_id(team_id, user_id))


def _budget_message(kind: str, ident: str, spend: Decimal, limit: Decimal, reserved: Decimal) -> str:
    held = f" (+{_fmt(reserved)} reserved by calls in flight)" if reserved else ""
    if kind == "member":
        team_id, _, user_id = ident.partition("/")
        return (f"Budget has been exceeded! Team={team_id} Member={user_id} Current cost: {_fmt(spend)}{held}, "
                f"Max budget in team: {_fmt(limit)}")
    if kind == "customer":
        return f"ExceededBudget: End User={ident} over budget. Spend={_fmt(spend)}{held}, Budget={_fmt(limit)}"
    if kind == "user":
        return f"ExceededBudget: User={ident} over budget. Spend={_fmt(spend)}{held}, Budget={_fmt(limit)}"
    if kind == "team":
        return f"Budget has been exceeded! Team={ident} Current cost: {_fmt(spend)}{held}, Max budget: {_fmt(limit)}"
    return f"Budget has been exceeded! Current cost: {_fmt(spend)}{held}, Max budget: {_fmt(limit)}"


@dataclass
class Admission:
    """A call let through: its reservations and slots, released once it settles or fails."""

    state: ProxyState
    entities: list[tuple[Entity, dict[str, Any] | None]]
    upper_bound: Decimal
    released: bool = False

    def release(self, tokens: int = 0) -> None:
        if not self.released:
            self.released = True
            for entity, _ in self.entities:
                self.state.limiter.release(entity, self.upper_bound, tokens)


def entities_of(state: ProxyState, principal: Principal, customer: str) -> list[tuple[Entity, dict[str, Any] | None]]:
    out: list[tuple[Entity, dict[str, Any] | None]] = []
    key = principal.key
    if key is not None:
        out.append((("key", key["token_hash"]), state.cache.get("key", key["token_hash"]) or key))
        if key.get("user_id"):
            out.append((("user", key["user_id"]), state.cache.get("user", key["user_id"])))
        if key.get("team_id"):
            team = state.cache.get("team", key["team_id"])
            member = next((m for m in (team or {}).get("members_with_roles") or []
                           if key.get("user_id") and m.get("user_id") == key["user_id"]), None)
            if member is not None and member.get("max_budget_in_team") is not None:
                out.append((("member", f"{key['team_id']}/{key['user_id']}"), member))
            out.append((("team", key["team_id"]), team))
    if customer:
        out.append((("customer", customer), state.cache.get("customer", customer)))
    return out


def unpriced_refused(model: str, why: str) -> ProxyError:
    return ProxyError(403, f"model {model!r} has no price, so {why}; the operator can price it "
                           "(litellm_params input_cost_per_token / output_cost_per_token, or "
                           "general_settings.unpriced_model_fallback)", "model_unpriced", "model")


async def load_entities(state: ProxyState, principal: Principal, customer: str) -> None:
    """Reads what the checks read and memory may not hold (the cache loads on demand): the customer,
    the key's user and team (authentication read them; again only when stale) and the member's spend."""
    key = principal.key or {}
    wanted: list[tuple[str, str | None]] = [("customer", customer), ("user", key.get("user_id")),
                                            ("team", key.get("team_id"))]
    if key.get("team_id") and key.get("user_id"):
        wanted.append(("member", member_id(key["team_id"], key["user_id"])))
    await state.cache.ensure(wanted)


async def admit(state: ProxyState, principal: Principal, customer: str, bound: UpperBound) -> Admission:
    """Reads the call's records, then checks every entity of the call and reserves for all of them (no
    await in between, so the check and the reservation are one step for the event loop). An unpriced
    model has no upper bound, so a call to it is refused wherever a budget applies (and always under
    require_prices): it would spend nothing against the budget however much it used."""
    if bound.unpriced is not None and state.config.require_prices:
        raise unpriced_refused(bound.unpriced, "general_settings.require_prices refuses it")
    await load_entities(state, principal, customer)
    upper_bound = bound.cost
    entities = entities_of(state, principal, customer)
    for (kind, ident), record in entities:
        if record is not None and record.get("blocked"):
            if kind == "customer":
                raise ProxyError(403, f"customer {ident} is blocked", "customer_blocked", "user")
            raise ProxyError(401, f"{kind} {ident} is blocked", "auth_error")
        limits = limits_of(state, kind, record)
        if limits.max_budget is not None:
            if bound.unpriced is not None:
                who = ident if kind != "key" else (record or {}).get("key_alias") or "key"
                raise unpriced_refused(bound.unpriced, f"its calls cannot count against the budget of {kind} {who}")
            if kind == "member" and principal.key is not None:
                spend = member_spend(state, principal.key["team_id"], principal.key["user_id"])
            else:
                spend = window_spend(state, kind, ident, record)
            reserved = state.limiter.reserved_for((kind, ident))
            if spend + reserved >= limits.max_budget:
                over = budget_exceeded(_budget_message(kind, ident, spend, limits.max_budget, reserved))
                over.budget_kind = kind
                raise over
        refused = state.limiter.rate_check((kind, ident), limits.rpm, limits.tpm, limits.parallel)
        if refused is not None:
            what, wait = refused
            raise rate_limited(f"{kind} {ident if kind != 'key' else (record or {}).get('key_alias') or 'key'} "
                               f"is over its {what}; retry later", wait)
    for entity, _ in entities:
        state.limiter.admit(entity, upper_bound)
    return Admission(state, entities, upper_bound)
