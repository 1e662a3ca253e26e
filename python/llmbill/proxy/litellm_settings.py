"""The config's `litellm_settings` keys that need more than a type check: the billing callbacks,
the end-user budget tier, the budget refusal's status and the cost margins. (key_generation_settings
is read by keygen_settings.py, the routing and fallback keys by routing.py and fallback_rules.py.)

>>> notes: list[str] = []
>>> billing_callbacks({"callbacks": ["lago"], "success_callback": ["langfuse"]}, notes)
('lago',)
>>> notes
["litellm_settings.callbacks[1]: 'langfuse' is not a billing sink llmbill has; ignored"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..billing import ConfigError
from ..margin import MarginError, MarginRules
from .config_values import expect, str_list
from .errors import BUDGET_EXCEEDED_STATUS
from .fallback_rules import KEYS as FALLBACK_KEYS

KNOWN_LITELLM = {"callbacks", "success_callback", "failure_callback", "max_end_user_budget_id", "timezone",
                 "drop_params", "set_verbose", "num_retries", "request_timeout", "key_generation_settings",
                 "upperbound_key_generate_params", "budget_exceeded_status_code", "credits", "cost_margin_config",
                 "cost_discount_config", *FALLBACK_KEYS}


def billing_callbacks(litellm: Mapping[str, Any], notes: list[str]) -> tuple[str, ...]:
    """The billing sinks of `callbacks` + `success_callback`: 'lago' is the one llmbill has; others are noted."""
    callbacks = str_list(litellm.get("callbacks"), "litellm_settings.callbacks")
    callbacks += tuple(c for c in str_list(litellm.get("success_callback"), "litellm_settings.success_callback")
                       if c not in callbacks)
    for i, c in enumerate(callbacks):
        if c != "lago":
            notes.append(f"litellm_settings.callbacks[{i}]: {c!r} is not a billing sink llmbill has; ignored")
    return tuple(c for c in callbacks if c == "lago")


def max_end_user_budget_id(litellm: Mapping[str, Any]) -> str | None:
    """The budget every end user (customer) without one of their own is held to."""
    tier: str | None = litellm.get("max_end_user_budget_id")
    if tier is not None:
        expect(tier, str, "litellm_settings.max_end_user_budget_id")
    return tier


def budget_exceeded_status_code(litellm: Mapping[str, Any]) -> int:
    """The status of a budget refusal (LiteLLM 1.108's 422 unless set)."""
    status: int = expect(litellm.get("budget_exceeded_status_code", BUDGET_EXCEEDED_STATUS), int,
                         "litellm_settings.budget_exceeded_status_code")
    if not 400 <= status <= 599:
        raise ConfigError(f"litellm_settings.budget_exceeded_status_code: an HTTP error status (400-599), "
                          f"got {status}")
    return status


def margins(litellm: Mapping[str, Any]) -> MarginRules:
    """cost_margin_config / cost_discount_config (margin.py): what calls are billed."""
    try:
        return MarginRules.parse(litellm.get("cost_margin_config"), litellm.get("cost_discount_config"))
    except MarginError as exc:
        raise ConfigError(str(exc)) from None
