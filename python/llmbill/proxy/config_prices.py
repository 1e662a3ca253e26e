"""Prices written in the config: a deployment's `litellm_params` price fields and
`general_settings.unpriced_model_fallback`, each checked as the core will hold it (a finite,
non-negative amount exact in 1e-19 USD) so that no deployment goes silently unpriced.

>>> custom_prices({"input_cost_per_token": "3e-07"}, "model_list[0].litellm_params")
{'input_cost_per_token': '0.0000003'}
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ..billing import ConfigError
from ..pricing import default_prices
from .._native import core
from .config_values import env_ref, expect

PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                "cache_creation_input_token_cost", "input_cost_per_request")


def custom_prices(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The price fields `params` sets (os.environ/ references resolved), as the core's resolve_with takes them."""
    out: dict[str, Any] = {}
    for name in PRICE_FIELDS:
        if name in params and params[name] is not None:
            v = env_ref(params[name], f"{key}.{name}")
            if isinstance(v, str):
                # YAML reads `3e-07` (no dot) as a string, and the core takes plain decimals only:
                # written out, else the deployment would silently go unpriced.
                try:
                    amount = Decimal(v.strip())
                except InvalidOperation:
                    amount = Decimal("NaN")
                if not amount.is_finite():
                    raise ConfigError(f"{key}.{name}: expected a number, got {v!r}")
                v = format(amount, "f")
            else:
                expect(v, (int, float), f"{key}.{name}")
            if float(v) < 0:
                raise ConfigError(f"{key}.{name}: must not be negative, got {v!r}")
            try:  # the core's own check: finite, and exact in its 1e-19 USD unit
                default_prices().resolve_with("price-check", **{name: v})
            except core.Error as exc:
                raise ConfigError(f"{key}.{name}: {exc}") from None
            out[name] = v
    return out


def unpriced_fallback(general: Mapping[str, Any], require_prices: bool) -> dict[str, Any] | None:
    """general_settings.unpriced_model_fallback: prices (litellm_params' price fields) for models with none."""
    raw = general.get("unpriced_model_fallback")
    if raw is None:
        return None
    key = "general_settings.unpriced_model_fallback"
    expect(raw, dict, key)
    unknown = sorted(set(raw) - set(PRICE_FIELDS))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: not a price field (use {', '.join(PRICE_FIELDS)})")
    prices = custom_prices(raw, key)
    if not any(prices.get(f) is not None for f in ("input_cost_per_token", "output_cost_per_token",
                                                    "input_cost_per_request")):
        raise ConfigError(f"{key}: needs input_cost_per_token, output_cost_per_token or input_cost_per_request")
    if require_prices:
        raise ConfigError(f"{key}: contradicts general_settings.require_prices (which refuses unpriced models); "
                          "set one of them")
    return prices
