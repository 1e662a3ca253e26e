"""Which margin a proxy call is billed with (margin.py): the customer's own, else its tier's (its
`budget_id`, else the default tier), else the config's for the deployment's provider."""

from __future__ import annotations

from decimal import Decimal

from ..margin import Margin
from .call import Call


def billed_amount(call: Call, cost: Decimal) -> Decimal | None:
    """What the call is billed; None when no discount or margin applies (billed at cost)."""
    state = call.state
    customer = state.cache.get("customer", call.customer) if call.customer else None
    tier_id = (customer or {}).get("budget_id") or (state.config.max_end_user_budget_id if call.customer else None)
    tier = state.cache.get("budget", tier_id) if tier_id else None
    return state.config.margins.billed(cost, call.d.provider, customer=Margin.of_record(customer),
                                       tier=Margin.of_record(tier))
