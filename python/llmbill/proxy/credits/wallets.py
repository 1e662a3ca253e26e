"""Lago's wallet object, read exactly: `balance_cents` (integer subunits) and the decimal strings,
never the float-derived ongoing fields (Lago recomputes those through Float and, without a premium
licence, never after an event)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# ISO 4217 exponents that are not 2 (Lago's Money gem); every other currency has cents.
_EXPONENT = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "XAF": 0, "XOF": 0, "PYG": 0, "UGX": 0,
             "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3}


class WalletFormatError(ValueError):
    """Lago answered a wallet this module cannot read exactly."""


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.upper(), 2)


def _decimal(raw: dict[str, Any], name: str, default: str | None = None) -> Decimal:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise WalletFormatError(f"wallet field {name!r}: expected a decimal string, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise WalletFormatError(f"wallet field {name!r}: not a decimal: {value!r}") from None


@dataclass(frozen=True)
class Wallet:
    lago_id: str
    code: str
    active: bool
    currency: str
    rate_amount: Decimal  # currency units per credit
    balance_cents: int  # settled balance, in currency subunits
    consumed_credits: Decimal  # credits invoices (and voids) have taken so far
    priority: int
    metric_codes: tuple[str, ...] = ()  # applies_to.billable_metric_codes (empty: any)
    fee_types: tuple[str, ...] = ()  # applies_to.fee_types (empty: any)

    @staticmethod
    def from_api(raw: Any) -> Wallet:
        if not isinstance(raw, dict) or not isinstance(raw.get("lago_id"), str):
            raise WalletFormatError(f"not a wallet: {str(raw)[:200]}")
        cents = raw.get("balance_cents")
        if isinstance(cents, bool) or not isinstance(cents, int):
            raise WalletFormatError(f"wallet {raw['lago_id']}: balance_cents is not an integer: {cents!r}")
        found = raw.get("applies_to")  # only in REST replies (`includes: limitations`), not in webhooks
        applies: dict[str, Any] = found if isinstance(found, dict) else {}
        return Wallet(
            lago_id=raw["lago_id"], code=str(raw.get("code") or ""), active=raw.get("status") == "active",
            currency=str(raw.get("currency") or "").upper(), rate_amount=_decimal(raw, "rate_amount"),
            balance_cents=cents, consumed_credits=_decimal(raw, "consumed_credits", "0"),
            priority=int(raw.get("priority") or 50),
            metric_codes=tuple(str(c) for c in applies.get("billable_metric_codes") or ()),
            fee_types=tuple(str(t) for t in applies.get("fee_types") or ()))

    def pays(self, metric: str, currency: str) -> bool:
        """Whether Lago would let this wallet pay a charge fee of `metric` in `currency` (lago-wallets.md §2.1)."""
        return self.active and self.could_pay(metric, currency)

    def could_pay(self, metric: str, currency: str) -> bool:
        """pays(), active or not: whether what this wallet consumed may be our usage. A wallet in
        another currency or restricted to other fees consumed for something else."""
        if self.currency != currency.upper():
            return False
        if not self.metric_codes and not self.fee_types:
            return True
        return metric in self.metric_codes or "charge" in self.fee_types

    def balance(self) -> Decimal:
        """The settled balance in currency units, exactly (balance_cents / 10^exponent)."""
        return Decimal(self.balance_cents).scaleb(-exponent(self.currency))

    def consumed(self) -> Decimal:
        """Consumed credits as money, rounded as Lago rounds money (half up, to the currency's exponent)."""
        quantum = Decimal(1).scaleb(-exponent(self.currency))
        return (self.consumed_credits * self.rate_amount).quantize(quantum, rounding=ROUND_HALF_UP)
