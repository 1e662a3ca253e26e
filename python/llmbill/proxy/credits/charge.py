"""What a settled call debits from prepaid credits: what the customer pays (`BilledCall.billed`:
cost × (1 − discount) × (1 + margin) + fixed, or the cost where no margin applies), the same amount
the Lago event's `billed_amount` carries and customer budgets count."""

from __future__ import annotations

from decimal import Decimal

from ...calls import BilledCall


def charge_of(billed: BilledCall) -> Decimal:
    return billed.billed
