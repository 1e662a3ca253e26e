"""Margins on the library path (`llmbill.track`, `LagoLogger`): where the settings come from and which
provider a call is billed under. The arithmetic is margin.py's, the proxy's own, so a call billed
through the library carries the same exact `billed_amount` it would through the proxy.

Settings, the most specific first (the first that sets either of the two wins whole):

1. a LagoLogger's own: `LagoLogger(cost_margin_config=..., cost_discount_config=...)`;
2. the module settings `llmbill.cost_margin_config` / `llmbill.cost_discount_config`, read at
   call time (as `llmbill.callbacks` is);
3. for a call LiteLLM hands to a LagoLogger, `litellm.cost_margin_config` / `cost_discount_config`:
   the margin LiteLLM folded into its own `response_cost` for that call.

The provider is the one the call names (`track(provider=...)`, LiteLLM's `custom_llm_provider`),
else the model's prefix (`anthropic/claude-…`), else the price table's `litellm_provider` for the
model, else none (then only `global` applies).

>>> from llmbill.calls import BilledCall
>>> call = BilledCall.priced("gpt-4o-mini", {"usage": {"prompt_tokens": 2000, "completion_tokens": 1000}})
>>> with_margin(call, MarginRules.parse({"openai": 0.2}, None)).billed_amount
Decimal('0.00108')
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from .calls import BilledCall
from .margin import MarginRules
from .pricing import default_prices

_NONE = MarginRules()


def rules_of(margin_config: Any, discount_config: Any, section: str) -> MarginRules | None:
    """The rules of one place that may set them; None when it sets neither (empty counts as unset,
    as LiteLLM's defaults are empty dicts)."""
    if not margin_config and not discount_config:
        return None
    return MarginRules.parse(margin_config or None, discount_config or None, section)


def module_rules() -> MarginRules | None:
    """`llmbill.cost_margin_config` / `cost_discount_config` as they are now (a lookup on the
    package, not an import: the package imports this module's users)."""
    package = sys.modules["llmbill"]
    return rules_of(getattr(package, "cost_margin_config", None), getattr(package, "cost_discount_config", None),
                    "llmbill")


def litellm_rules() -> MarginRules | None:
    """LiteLLM's own module settings when the program imported LiteLLM (llmbill never imports it)."""
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return None
    return rules_of(getattr(litellm, "cost_margin_config", None), getattr(litellm, "cost_discount_config", None),
                    "litellm")


def provider_of(call: BilledCall) -> str:
    if call.provider:
        return call.provider
    prefix, slash, _ = call.model.partition("/")
    if slash:
        return prefix
    price = default_prices().find(call.model)
    return price.provider if price is not None else ""


def with_margin(call: BilledCall, rules: MarginRules | None) -> BilledCall:
    """The call with the billed_amount these rules give it (None: billed at cost)."""
    rules = rules or _NONE
    billed = rules.billed(call.cost, provider_of(call)) if rules.configured else None
    return call if billed == call.billed_amount else dataclasses.replace(call, billed_amount=billed)
