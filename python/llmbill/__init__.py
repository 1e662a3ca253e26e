"""llmbill: usage-based billing for LLM traffic.

>>> import llmbill
>>> llmbill.cost("gpt-4o-mini", {"prompt_tokens": 2000, "completion_tokens": 1000}).total
Decimal('0.0009')

Billing each call in Lago, LiteLLM-style:

    llmbill.callbacks = ["lago"]
    llmbill.cost_margin_config = {"global": 0.2}   # optional: bill cost + 20% (LiteLLM's spelling)
    llmbill.track(openai_response, user="customer-42")
"""

from ._native import core as _core
from .billing import ConfigError as ConfigError
from .billing import LagoSettings as LagoSettings
from .billing import close as close
from .billing import flush as flush
from .billing import get_pipeline as get_pipeline
from .callbacks import CallbackEntry
from .callbacks import register_callback as register_callback
from .calls import BilledCall as BilledCall
from .errors import Error as Error
from .errors import MoneyOverflowError as MoneyOverflowError
from .errors import PriceTableError as PriceTableError
from .errors import SpoolFullError as SpoolFullError
from .errors import UnknownModelError as UnknownModelError
from .errors import UsageError as UsageError
from .integrations.lago import LagoLogger as LagoLogger
from .margin import CostDiscountConfig, CostMarginConfig
from .margin import MarginError as MarginError
from .ops import reconcile as reconcile
from .pricing import Cost as Cost
from .pricing import ModelPrice as ModelPrice
from .pricing import PriceTable as PriceTable
from .pricing import Usage as Usage
from .pricing import cost as cost
from .pricing import default_prices as default_prices
from .pricing import reload_default_prices as reload_default_prices
from .tracking import track as track

Ledger = _core.Ledger
Totals = _core.Totals
Pipeline = _core.Pipeline
SseUsageScanner = _core.SseUsageScanner
MONEY_DECIMALS: int = _core.MONEY_DECIMALS
normalise_price = _core.normalise_price
units_to_usd = _core.units_to_usd

#: Billing callbacks by name or instance, as in LiteLLM: `llmbill.callbacks = ["lago"]`.
callbacks: list[CallbackEntry] = []

#: Margins and discounts on calls billed through `track` and `LagoLogger`, as LiteLLM 1.108 spells
#: them (`litellm.cost_margin_config`): {"global": 0.05, "openai": 0.10, "anthropic": {"fixed_amount":
#: 0.001}, "bedrock": {"percentage": 0.08, "fixed_amount": 0.002}}; a provider's entry beats "global".
#: The event then carries `billed_amount` = cost × (1 − discount) × (1 + percentage) + fixed_amount, exact.
cost_margin_config: CostMarginConfig = {}
#: A fraction off a provider's cost, applied before the margin: {"vertex_ai": 0.05}.
cost_discount_config: CostDiscountConfig = {}

__all__ = [
    "BilledCall",
    "ConfigError",
    "Cost",
    "Error",
    "LagoLogger",
    "LagoSettings",
    "Ledger",
    "MONEY_DECIMALS",
    "MarginError",
    "ModelPrice",
    "MoneyOverflowError",
    "Pipeline",
    "PriceTable",
    "PriceTableError",
    "SpoolFullError",
    "SseUsageScanner",
    "Totals",
    "UnknownModelError",
    "Usage",
    "UsageError",
    "callbacks",
    "close",
    "cost",
    "cost_discount_config",
    "cost_margin_config",
    "default_prices",
    "flush",
    "get_pipeline",
    "normalise_price",
    "reconcile",
    "register_callback",
    "reload_default_prices",
    "track",
    "units_to_usd",
]
