"""Prepaid credits in the reconciliation, the comparison itself (no I/O; `reconcile_credits_run.py`
reads both sides): for each Lago customer with wallets, each usage invoice of a period that meets the
window — the credits llmbill's calls consumed in that invoiced period against the wallet debits Lago
applied for the invoice.

- consumed: Σ `billed_amount` (the cost where no margin applied) of the calls the spend logs hold for
  each of the invoice's billing periods (its subscription's billed id, charges_from..charges_to),
  exact; in the invoice's currency, under the README's plan of one currency unit per unit;
- debited: Σ `amount` of the wallets' outbound `invoiced` transactions for the invoice, which Lago
  also sums into the invoice's `prepaid_credit_amount_cents`.

Lago rounds the fee half up to its currency's minor unit, so they match when debited ==
round(consumed) == prepaid_credit_amount_cents. Anything else is a mismatch, with what explains it
when the invoice says (wallets ran short, other fees, taxes).

>>> invoice = CreditInvoice("inv-1", "N-1", "2026-09-01", "USD", consumed=Decimal("0.994"), calls=3,
...                         debited=Decimal("0.99"), prepaid_cents=99, fees_cents=99)
>>> invoice.consumed_cents, invoice.matches
(99, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .reader import ms_to_iso

#: Minor-unit digits of the currencies that do not have two (ISO 4217); Lago's money gem agrees.
_EXPONENTS = {"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
              "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
              "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


@dataclass(frozen=True)
class InvoicedPeriod:
    """One billing period of an invoice: the calls of `billed_id` in [start_ms, end_ms)."""

    billed_id: str
    start_ms: int
    end_ms: int


@dataclass
class CreditInvoice:
    lago_id: str
    number: str
    issuing_date: str
    currency: str
    periods: list[InvoicedPeriod] = field(default_factory=list)
    consumed: Decimal = Decimal(0)  # llmbill's side, exact
    calls: int = 0
    debited: Decimal = Decimal(0)  # Lago's wallet transactions for this invoice, in currency units
    prepaid_cents: int = 0  # the invoice's prepaid_credit_amount_cents
    fees_cents: int = 0
    taxes_cents: int = 0
    due_cents: int = 0  # total_due_amount_cents: what the customer is asked to pay beyond credits

    @property
    def unit(self) -> Decimal:
        return Decimal(1).scaleb(-exponent(self.currency))

    @property
    def consumed_cents(self) -> int:
        """The consumption as Lago bills it: rounded half up to the minor unit."""
        return int(self.consumed.quantize(self.unit, rounding=ROUND_HALF_UP).scaleb(exponent(self.currency)))

    @property
    def debited_cents(self) -> int:
        return int(self.debited.scaleb(exponent(self.currency)))

    @property
    def matches(self) -> bool:
        return self.debited_cents == self.consumed_cents == self.prepaid_cents

    def notes(self) -> list[str]:
        """The mismatch, and what the invoice itself says about it."""
        out = [f"Lago debited {self.debited_cents} cents from the wallets for {self.consumed_cents} cents of "
               f"llmbill's calls ({self.calls})"]
        if self.prepaid_cents != self.debited_cents:
            out.append(f"the invoice's prepaid_credit_amount_cents ({self.prepaid_cents}) is not the sum of its "
                       f"wallet debits ({self.debited_cents})")
        if self.debited_cents < self.consumed_cents and self.due_cents > 0:
            out.append(f"the wallets ran short: Lago asks the customer for {self.due_cents} cents beyond the credits")
        if self.fees_cents != self.consumed_cents:
            out.append(f"the invoice's fees ({self.fees_cents} cents) are not llmbill's calls ({self.consumed_cents}): "
                       "other charges on the plan, events Lago lacks, or a plan that does not sum billed_amount at "
                       "one currency unit per unit")
        if self.taxes_cents:
            out.append(f"taxes ({self.taxes_cents} cents) are paid from the credits too")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"lago_id": self.lago_id, "number": self.number, "issuing_date": self.issuing_date,
                "currency": self.currency, "matches": self.matches,
                "periods": [{"billed_id": p.billed_id, "from": ms_to_iso(p.start_ms), "to": ms_to_iso(p.end_ms)}
                            for p in self.periods],
                "calls": self.calls, "consumed": format(self.consumed, "f"), "consumed_cents": self.consumed_cents,
                "debited_cents": self.debited_cents, "prepaid_credit_amount_cents": self.prepaid_cents,
                "fees_amount_cents": self.fees_cents, "total_due_amount_cents": self.due_cents,
                "notes": [] if self.matches else self.notes()}


@dataclass
class CreditAccount:
    """A Lago customer with prepaid wallets, and its invoices of periods that meet the window."""

    customer: str
    billed_ids: list[str] = field(default_factory=list)
    wallets: int = 0
    invoices: list[CreditInvoice] = field(default_factory=list)

    @property
    def mismatches(self) -> list[CreditInvoice]:
        return [i for i in self.invoices if not i.matches]

    def to_json(self) -> dict[str, Any]:
        consumed = sum((i.consumed for i in self.invoices), Decimal(0))
        return {"customer": self.customer, "billed_ids": list(self.billed_ids), "wallets": self.wallets,
                "consumed": format(consumed, "f"), "consumed_cents": sum(i.consumed_cents for i in self.invoices),
                "debited_cents": sum(i.debited_cents for i in self.invoices),
                "invoices": [i.to_json() for i in self.invoices]}


@dataclass(frozen=True)
class SettledCall:
    """A call in the spend logs, as much of it as the credits check needs."""

    call_id: str
    billed_id: str
    timestamp_ms: int
    billed: Decimal


def consume(invoice: CreditInvoice, calls: list[SettledCall]) -> None:
    """Sets the invoice's consumption: each call once, in whichever of its periods holds it."""
    seen: set[str] = set()
    total = Decimal(0)
    for call in calls:
        if call.call_id in seen:
            continue
        if any(p.billed_id == call.billed_id and p.start_ms <= call.timestamp_ms < p.end_ms for p in invoice.periods):
            seen.add(call.call_id)
            total += call.billed
    invoice.consumed, invoice.calls = total, len(seen)
