"""general_settings.credits / credits_settings (or litellm_settings.credits): whether Lago wallets
gate calls by default, and how fresh their balance must be."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ...billing import ConfigError

MODES = ("lago", "off")


@dataclass(frozen=True)
class CreditSettings:
    default: str = "off"  # "lago": every payer's wallets gate its calls unless its record says "off"
    currency: str = "USD"  # the currency llmbill prices in: only wallets in it pay
    poll_interval_s: float = 30.0  # backstop re-read of every payer seen, webhooks or not
    max_age_s: float = 300.0  # older than this (Lago unreachable), calls are refused (fail closed)
    refused_status: int | None = None  # None: budget_exceeded_status_code
    hmac_key: str = ""  # the organisation's webhook HMAC key (Lago UI: Developers › Webhooks)
    jwt: bool = True  # accept RS256 JWT signatures (key from GET /webhooks/json_public_key)
    issuer: str = ""  # the JWT `iss` to require (Lago's LAGO_API_URL); "" accepts any


def _env(value: Any, name: str) -> str:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value.removeprefix("os.environ/"), "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string")
    return value


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"general_settings.credits_settings.{key}: expected a positive number, got {value!r}")
    return float(value)


def parse(mode: Any, raw: Any) -> CreditSettings:
    if mode is None:
        mode = "off"
    if mode not in MODES:
        raise ConfigError(f"credits: {mode!r} is not one of {', '.join(MODES)}")
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("general_settings.credits_settings: expected a mapping")
    status = raw.get("refused_status_code")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599):
        raise ConfigError("general_settings.credits_settings.refused_status_code: an HTTP error status, "
                          f"got {status!r}")
    jwt = raw.get("jwt", True)
    if not isinstance(jwt, bool):
        raise ConfigError("general_settings.credits_settings.jwt: expected true or false")
    return CreditSettings(
        default=mode, currency=_env(raw.get("currency", "USD"), "credits_settings.currency").upper() or "USD",
        poll_interval_s=_number(raw, "poll_interval_seconds", 30.0), max_age_s=_number(raw, "max_age_seconds", 300.0),
        refused_status=status, hmac_key=_env(raw.get("webhook_hmac_key", "os.environ/LAGO_WEBHOOK_HMAC_KEY"),
                                             "credits_settings.webhook_hmac_key"),
        jwt=jwt, issuer=_env(raw.get("webhook_issuer"), "credits_settings.webhook_issuer"))
