"""llmbill: usage-based billing for LLM traffic.

>>> import llmbill
>>> llmbill.units_to_usd(25_000_000_000_000_000)
Decimal('0.0025')
"""

from ._native import core as _core
from .errors import Error as Error
from .errors import MoneyOverflowError as MoneyOverflowError
from .errors import PriceTableError as PriceTableError
from .errors import UnknownModelError as UnknownModelError
from .errors import UsageError as UsageError

MONEY_DECIMALS: int = _core.MONEY_DECIMALS
normalise_price = _core.normalise_price
units_to_usd = _core.units_to_usd

__all__ = [
    "MONEY_DECIMALS",
    "Error",
    "MoneyOverflowError",
    "PriceTableError",
    "UnknownModelError",
    "UsageError",
    "normalise_price",
    "units_to_usd",
]
