"""Prices and cost: the bundled LiteLLM-format table, user overrides, and exact cost of a call.

>>> import llmbill
>>> c = llmbill.cost("gpt-4o", {"prompt_tokens": 1000, "completion_tokens": 500})
>>> c.total
Decimal('0.0075')
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Union

from ._native import core

PriceTable = core.PriceTable
ModelPrice = core.ModelPrice
Cost = core.Cost
Usage = core.Usage

UsageLike = Union["core.Usage", Mapping[str, Any], str, bytes]

_lock = threading.Lock()
_default: core.PriceTable | None = None


def bundled_prices_path() -> Path:
    """The price table shipped in the package (see data/model_prices.SOURCE for its origin)."""
    return Path(str(resources.files("llmbill") / "data" / "model_prices.json"))


def price_paths(extra: str | os.PathLike[str] | None = None) -> list[Path]:
    """The bundled table, then each file of LLMBILL_PRICES (os.pathsep-separated), then `extra`."""
    paths = [bundled_prices_path()]
    env = os.environ.get("LLMBILL_PRICES", "")
    paths += [Path(p) for p in env.split(os.pathsep) if p]
    if extra:
        paths.append(Path(extra))
    return paths


def default_prices() -> core.PriceTable:
    """The process-wide table: bundled + LLMBILL_PRICES, loaded once on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = core.PriceTable.load(price_paths())
        return _default


def reload_default_prices() -> core.PriceTable:
    """Reloads the process-wide table (after LLMBILL_PRICES or a file changed)."""
    global _default
    with _lock:
        _default = core.PriceTable.load(price_paths())
        return _default


USAGE_FIELDS = frozenset({"prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens",
                          "cache_creation_1h_tokens", "reasoning_tokens", "estimated"})
_OWN_ONLY = frozenset({"cached_tokens", "cache_creation_tokens", "cache_creation_1h_tokens", "reasoning_tokens"})


def as_usage(usage: UsageLike) -> core.Usage:
    """A Usage from a Usage, a provider reply (dict, JSON text), a provider usage dict, or a dict in
    llmbill's own field names (`{"prompt_tokens", "completion_tokens", "cached_tokens", ...}`)."""
    if isinstance(usage, core.Usage):
        return usage
    if isinstance(usage, Mapping) and set(usage) <= USAGE_FIELDS and set(usage) & _OWN_ONLY:
        return core.Usage(**usage)
    return core.Usage.from_response(usage)


def cost(model: str, usage: UsageLike, *, table: core.PriceTable | None = None) -> core.Cost:
    """The exact cost of one call of `model` (raises UnknownModelError for a model the table lacks)."""
    return (table or default_prices()).cost(model, as_usage(usage))
