"""llmbill: usage-based billing for LLM traffic.

>>> import llmbill
>>> llmbill.cost("gpt-4o-mini", {"prompt_tokens": 2000, "completion_tokens": 1000}).total
Decimal('0.0009')
"""

from ._native import core as _core
from .errors import Error as Error
from .errors import MoneyOverflowError as MoneyOverflowError
from .errors import PriceTableError as PriceTableError
from .errors import UnknownModelError as UnknownModelError
from .errors import UsageError as UsageError
from .pricing import Cost as Cost
from .pricing import ModelPrice as ModelPrice
from .pricing import PriceTable as PriceTable
from .pricing import Usage as Usage
from .pricing import cost as cost
from .pricing import default_prices as default_prices
from .pricing import reload_default_prices as reload_default_prices

Ledger = _core.Ledger
Totals = _core.Totals
SseUsageScanner = _core.SseUsageScanner
MONEY_DECIMALS: int = _core.MONEY_DECIMALS
normalise_price = _core.normalise_price
units_to_usd = _core.units_to_usd

__all__ = [
    "MONEY_DECIMALS",
    "Cost",
    "Error",
    "Ledger",
    "ModelPrice",
    "MoneyOverflowError",
    "PriceTable",
    "PriceTableError",
    "SseUsageScanner",
    "Totals",
    "UnknownModelError",
    "Usage",
    "UsageError",
    "cost",
    "default_prices",
    "normalise_price",
    "reload_default_prices",
    "units_to_usd",
]
