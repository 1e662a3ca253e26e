"""What a settled call debits from credits. Today its cost; once settled calls carry
`billed_amount` (cost × (1 + margin), branch `billable`) this one function switches to it."""

from __future__ import annotations

from decimal import Decimal

from ...calls import BilledCall


def charge_of(billed: BilledCall) -> Decimal:
    return billed.cost
