"""The config's readers (proxy/config.py and the section readers it assembles: deployments.py,
config_prices.py, config_values.py, general_settings.py, litellm_settings.py): their examples hold.
What each key accepts and refuses is tested beside the feature it configures (test_routing.py,
test_unpriced.py, test_redis_limits.py, ...)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["config", "deployments", "config_prices", "config_values", "general_settings", "litellm_settings"]


@pytest.mark.parametrize("name", MODULES)
def test_the_modules_examples_hold(name: str) -> None:
    module = importlib.import_module(f"llmbill.proxy.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
