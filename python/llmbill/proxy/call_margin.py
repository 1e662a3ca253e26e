"""Which margin a proxy call is billed with (margin.py): the customer's own, else its tier's (its
`budget_id`, else the default tier), else the config's for the deployment's provider."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ..margin import Margin

if TYPE_CHECKING:
    from .call import Call
    from .state import ProxyState


def _own_margins(state: ProxyState, customer_id: str) -> tuple[Margin | None, Margin | None]:
    """The customer's own margin and its tier's (None: it sets none)."""
    customer = state.cache.get("customer", customer_id) if customer_id else None
    tier_id = (customer or {}).get("budget_id") or (state.config.max_end_user_budget_id if customer_id else None)
    tier = state.cache.get("budget", tier_id) if tier_id else None
    return Margin.of_record(customer), Margin.of_record(tier)


def _billed(state: ProxyState, customer_id: str, provider: str, cost: Decimal) -> Decimal | None:
    customer, tier = _own_margins(state, customer_id)
    return state.config.margins.billed(cost, provider, customer=customer, tier=tier)


def margined(call: Call) -> bool:
    """Whether a discount or margin applies to the call — billed_amount() is then not None — known
    before its cost (settle.py bills a call at cost in one step with the core)."""
    customer, tier = _own_margins(call.state, call.customer)
    return call.state.config.margins.applies(call.d.provider, customer, tier)


def billed_amount(call: Call, cost: Decimal) -> Decimal | None:
    """What the call is billed; None when no discount or margin applies (billed at cost)."""
    return _billed(call.state, call.customer, call.d.provider, cost)


def at_cost(state: ProxyState, customer_id: str) -> bool:
    """No discount or margin can apply to this customer's calls (none configured, none of its own or
    its tier's): the common case. Decided once a call, at its admission (guards.py), and kept by
    settle.py: a call admitted with none applicable is billed at cost, as its reservation was made,
    even if a margin appears before it settles; any other call is billed under the margins in force
    when it settles (margined, billed_amount)."""
    customer, tier = _own_margins(state, customer_id)
    return customer is None and tier is None and not state.config.margins.configured


def billed_bound(state: ProxyState, model: str | None, customer_id: str, cost_bound: Decimal) -> Decimal:
    """The most a call may be billed, given the most it may cost: budgets count billed amounts, so
    the reservation made against them includes the margin (the largest over the model's deployments)."""
    customer, tier = _own_margins(state, customer_id)
    rules = state.config.margins
    providers = {d.provider for d in state.deployments_of(model or "")}
    billed = [rules.billed(cost_bound, provider, customer=customer, tier=tier) for provider in providers]
    return max([cost_bound, *(b for b in billed if b is not None)])
