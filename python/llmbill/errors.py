"""Exceptions raised by llmbill. One root, translated from C++ at one seam (cpp/bindings).

    Error
    ├── UnknownModelError    a model the price table cannot resolve (never priced as zero)
    ├── PriceTableError      a price table that cannot be loaded, or an unusable price
    ├── UsageError           a provider reply whose usage cannot be read
    ├── MoneyOverflowError   money arithmetic out of range (never wraps)
    ├── SpoolFullError       the billing spool is at its disk bound; the event was not taken
    └── ConfigError          a setting with a wrong value (llmbill.billing); names the setting

>>> import llmbill
>>> issubclass(llmbill.UnknownModelError, llmbill.Error)
True
"""

from ._core import Error as Error
from ._core import MoneyOverflowError as MoneyOverflowError
from ._core import PriceTableError as PriceTableError
from ._core import SpoolFullError as SpoolFullError
from ._core import UnknownModelError as UnknownModelError
from ._core import UsageError as UsageError

__all__ = ["Error", "MoneyOverflowError", "PriceTableError", "SpoolFullError", "UnknownModelError", "UsageError"]
