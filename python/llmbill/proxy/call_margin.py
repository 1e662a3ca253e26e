"""Which margin a proxy call is billed with (margin.py): the customer's own, else its tier's (its
`budget_id`, else the default tier), else the config's for the deployment's provider."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ..margin import Margin

if TYPE_CHECKING:
    from .call import Call
    from .state import ProxyState


def _billed(state: ProxyState, customer_id: str, provider: str, cost: Decimal) -> Decimal | None:
    customer = state.cache.get("customer", customer_id) if customer_id else None
    tier_id = (customer or {}).get("budget_id") or (state.config.max_end_user_budget_id if customer_id else None)
    tier = state.cache.get("budget", tier_id) if tier_id else None
    return state.config.margins.billed(cost, provider, customer=Margin.of_record(customer),
                                       tier=Margin.of_record(tier))


def billed_amount(call: Call, cost: Decimal) -> Decimal | None:
    """What the call is billed; None when no discount or margin applies (billed at cost)."""
    return _billed(call.state, call.customer, call.d.provider, cost)


def billed_bound(state: ProxyState, model: str | None, customer_id: str, cost_bound: Decimal) -> Decimal:
    """The most a call may be billed, given the most it may cost: budgets count billed amounts, so
    the reservation made against them includes the margin (the largest over the model's deployments)."""
    providers = {d.provider for d in state.deployments_of(model or "")}
    billed = [_billed(state, customer_id, provider, cost_bound) for provider in providers]
    return max([cost_bound, *(b for b in billed if b is not None)])
