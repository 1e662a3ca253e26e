"""Exceptions raised by llmbill. One root, translated from C++ at one seam (cpp/bindings).

    Error
    ├── UnknownModelError    a model the price table cannot resolve (never priced as zero)
    ├── PriceTableError      a price table that cannot be loaded, or an unusable price
    ├── UsageError           a provider reply whose usage cannot be read
    └── MoneyOverflowError   money arithmetic out of range (never wraps)

>>> import llmbill
>>> issubclass(llmbill.UnknownModelError, llmbill.Error)
True
"""

from ._core import Error as Error
from ._core import MoneyOverflowError as MoneyOverflowError
from ._core import PriceTableError as PriceTableError
from ._core import UnknownModelError as UnknownModelError
from ._core import UsageError as UsageError

__all__ = ["Error", "MoneyOverflowError", "PriceTableError", "UnknownModelError", "UsageError"]
