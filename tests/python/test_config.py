"""The config's readers (proxy/config.py and the section readers it assembles: deployments.py,
config_prices.py, config_values.py, general_settings.py, litellm_settings.py): their examples hold.
What each key accepts and refuses is tested beside the feature it configures (test_routing.py,
test_unpriced.py, test_redis_limits.py, ...)."""

from __future__ import annotations

import doctest
import importlib

import pytest

from llmbill.billing import ConfigError
from llmbill.proxy.config import load_config_dict

MODULES = ["config", "deployments", "config_prices", "config_values", "general_settings", "litellm_settings"]


@pytest.mark.parametrize("name", MODULES)
def test_the_modules_examples_hold(name: str) -> None:
    module = importlib.import_module(f"llmbill.proxy.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("key, value", [("max_request_size_mb", float("inf")), ("max_request_size_mb", float("nan")),
                                        ("max_request_size_mb", 0), ("spend_flush_interval", -1),
                                        ("cache_refresh_interval", float("inf"))])
def test_sizes_and_intervals_must_be_positive_and_finite(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"general_settings.{key}: must be a number of"):
        load_config_dict({"general_settings": {key: value}})
