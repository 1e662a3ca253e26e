"""What a customer pays for a call: its cost, less a provider discount, plus a margin — exact.

Spelled as LiteLLM 1.108 spells it under `litellm_settings`:

    cost_discount_config: {vertex_ai: 0.05}            # a fraction off the provider's cost
    cost_margin_config:
      global: 0.05                                     # a fraction on every provider...
      openai: 0.10                                     # ...unless the provider has its own entry
      anthropic: {fixed_amount: 0.001}                 # USD per request
      bedrock: {percentage: 0.08, fixed_amount: 0.002} # both

and, beyond LiteLLM, per budget tier and per customer: `margin_percent` (in percent: 20 means 20%)
and `margin_fixed` (USD per request). The most specific margin wins whole: the customer's, else its
tier's, else the provider's entry, else `global`. The discount applies first (LiteLLM's order).

    billed_amount = cost × (1 − discount) × (1 + percentage) + fixed_amount

rounded half-even to the money unit (1e-19 USD) once, at the end. `None` when nothing applies: the
call is billed at cost and its event stays byte-identical to one sent before margins existed.

>>> rules = MarginRules.parse({"global": 0.1}, {})
>>> rules.billed(Decimal("0.0009"), "openai")
Decimal('0.00099')
>>> rules.billed(Decimal("0.0009"), "openai", customer=Margin(fixed=Decimal("0.5")))
Decimal('0.5009')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, Union

from .errors import Error

UNIT = Decimal("1e-19")  # the money type's unit (C++ Money)
GLOBAL = "global"
_MAX = Decimal("1e9")  # a sanity bound: a margin (or fee) above this is a typo

#: A number as a setting may hold it (a float is read as written: 0.1 is exactly one tenth).
Amount = Union[int, float, str, Decimal]
#: `cost_margin_config`: provider (or "global") → a fraction, or {"percentage", "fixed_amount"}.
CostMarginConfig = Mapping[str, Union[Amount, Mapping[str, Amount]]]
#: `cost_discount_config`: provider → a fraction of the cost taken off.
CostDiscountConfig = Mapping[str, Amount]


class MarginError(Error):
    """A margin or discount setting with a wrong value; the message names it."""


def _amount(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise MarginError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        # A float comes from YAML: its shortest repr is what the user wrote (0.1, not 0.1000000000000000055…).
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise MarginError(f"{where}: expected a number, got {value!r}") from None
    if not amount.is_finite() or amount < 0 or amount > _MAX:
        raise MarginError(f"{where}: must be a non-negative number, got {value!r}")
    return amount


@dataclass(frozen=True)
class Margin:
    """A fraction of the cost (0.1 = 10%) and a fixed amount per request (USD)."""

    fraction: Decimal = Decimal(0)
    fixed: Decimal = Decimal(0)

    @property
    def empty(self) -> bool:
        return not self.fraction and not self.fixed

    @staticmethod
    def of_litellm(value: Any, where: str) -> Margin:
        """A `cost_margin_config` entry: a fraction, or {percentage, fixed_amount}."""
        if isinstance(value, Mapping):
            unknown = set(value) - {"percentage", "fixed_amount"}
            if unknown:
                raise MarginError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                                  "(expected percentage, fixed_amount)")
            return Margin(_amount(value.get("percentage", 0), f"{where}.percentage"),
                          _amount(value.get("fixed_amount", 0), f"{where}.fixed_amount"))
        return Margin(fraction=_amount(value, where))

    @staticmethod
    def of_record(record: Mapping[str, Any] | None) -> Margin | None:
        """A customer's or tier's own margin (`margin_percent` in percent, `margin_fixed` USD), None
        when it sets neither (then a less specific margin applies)."""
        if not record:
            return None
        percent, fixed = record.get("margin_percent"), record.get("margin_fixed")
        if percent is None and fixed is None:
            return None
        return Margin(_amount(percent or 0, "margin_percent") / 100, _amount(fixed or 0, "margin_fixed"))


@dataclass(frozen=True)
class MarginRules:
    """The config's discounts and margins, by provider."""

    margins: Mapping[str, Margin] = field(default_factory=dict)
    discounts: Mapping[str, Decimal] = field(default_factory=dict)

    @staticmethod
    def parse(margin_config: Any, discount_config: Any, section: str = "litellm_settings") -> MarginRules:
        """Both settings as LiteLLM spells them; a wrong value is a MarginError naming it under
        `section` (where the user wrote it: the proxy's litellm_settings, or `llmbill`)."""
        margins: dict[str, Margin] = {}
        discounts: dict[str, Decimal] = {}
        for name, raw, out in (("cost_margin_config", margin_config, margins),
                               ("cost_discount_config", discount_config, discounts)):
            if raw is None:
                continue
            if not isinstance(raw, Mapping):
                raise MarginError(f"{section}.{name}: expected a mapping of provider to value")
            for provider, value in raw.items():
                where = f"{section}.{name}.{provider}"
                if out is margins:
                    margins[str(provider)] = Margin.of_litellm(value, where)
                else:
                    discount = _amount(value, where)
                    if discount > 1:
                        raise MarginError(f"{where}: a discount is a fraction of the cost (0.05 = 5%), got {value!r}")
                    discounts[str(provider)] = discount
        return MarginRules(margins, discounts)

    @property
    def configured(self) -> bool:
        return bool(self.margins or self.discounts)

    def margin_for(self, provider: str, customer: Margin | None = None, tier: Margin | None = None) -> Margin | None:
        for margin in (customer, tier, self.margins.get(provider), self.margins.get(GLOBAL)):
            if margin is not None:
                return margin
        return None

    def applies(self, provider: str, customer: Margin | None = None, tier: Margin | None = None) -> bool:
        """Whether a discount or margin applies (billed() is then not None), known without the cost."""
        return provider in self.discounts or self.margin_for(provider, customer, tier) is not None

    def billed(self, cost: Decimal, provider: str, *, customer: Margin | None = None,
               tier: Margin | None = None) -> Decimal | None:
        """What the call is billed; None when no discount or margin applies to it."""
        discount = self.discounts.get(provider)
        margin = self.margin_for(provider, customer, tier)
        if discount is None and margin is None:  # as applies() says
            return None
        margin = margin or Margin()
        with localcontext() as ctx:
            ctx.prec = 80  # exact for any cost and margin the parser lets through
            amount = cost * (1 - (discount or 0)) * (1 + margin.fraction) + margin.fixed
            return _plain(amount.quantize(UNIT, rounding=ROUND_HALF_EVEN))


def _plain(amount: Decimal) -> Decimal:
    """Without trailing zeros, never in exponent form (the value is unchanged)."""
    return amount.quantize(Decimal(1)) if amount == amount.to_integral_value() else amount.normalize()
