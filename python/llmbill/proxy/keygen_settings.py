"""LiteLLM's limits on who makes keys and how big they may be, from `litellm_settings`:

    key_generation_settings:
      team_key_generation: {allowed_team_member_roles: [admin], required_params: [key_alias]}
      personal_key_generation: {allowed_user_roles: [proxy_admin], required_params: [max_budget]}
    upperbound_key_generate_params: {max_budget: 100, budget_duration: 30d, duration: 90d,
                                     max_parallel_requests: 10, tpm_limit: 100000, rpm_limit: 1000}

Unset, every member of a team may make keys in it for itself and every internal user may make
personal keys (LiteLLM's defaults). Proxy admins are never restricted by `key_generation_settings`;
the upper bounds apply to every /key/generate (a missing value takes the bound, as in LiteLLM) and,
beyond LiteLLM, to a non-admin's /key/update, which would otherwise lift them.

>>> s = parse_key_generation({"upperbound_key_generate_params": {"duration": "30d"}})
>>> check_upper_bounds(s, {"duration": "5w"}, fill=False)
Traceback (most recent call last):
...
llmbill.proxy.errors.ProxyError: 'duration' may be at most 30d (litellm_settings.upperbound_key_generate_params)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..billing import ConfigError
from .auth import ROLES
from .durations import parse_duration
from .errors import bad_request

BOUNDED = ("max_budget", "budget_duration", "duration", "max_parallel_requests", "tpm_limit", "rpm_limit")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000}  # a month counts 30 days
_WHERE = "litellm_settings.upperbound_key_generate_params"


@dataclass(frozen=True)
class KeyGenerationSettings:
    team_member_roles: tuple[str, ...] = ("admin", "user")
    team_required: tuple[str, ...] = ()
    personal_roles: tuple[str, ...] | None = None  # None: no restriction beyond the roles themselves
    personal_required: tuple[str, ...] = ()
    upper: Mapping[str, Any] = field(default_factory=dict)


def duration_seconds(text: str) -> int:
    n, unit = parse_duration(text)
    return n * _SECONDS[unit]


def _names(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of strings")
    wrong = [v for v in value if allowed is not None and v not in allowed]
    if wrong:
        raise ConfigError(f"{where}: {wrong[0]!r} is not one of {', '.join(allowed or ())}")
    return tuple(value)


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = raw.get(name) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"litellm_settings.key_generation_settings.{name}: must be a mapping")
    return section


def _upper(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{_WHERE}: must be a mapping")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"{_WHERE}.{name}"
        if name not in BOUNDED:
            raise ConfigError(f"{where}: not a bound llmbill knows ({', '.join(BOUNDED)})")
        if name in ("budget_duration", "duration"):
            try:
                parse_duration(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            out[name] = value.strip()
        elif name == "max_budget":
            try:
                amount = Decimal(repr(value) if isinstance(value, float) else str(value))
            except InvalidOperation:
                amount = Decimal(-1)
            if isinstance(value, bool) or not amount.is_finite() or amount < 0:
                raise ConfigError(f"{where}: must be a non-negative number")
            out[name] = amount
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: must be a non-negative integer")
        else:
            out[name] = value
    return out


def parse_key_generation(litellm: Mapping[str, Any]) -> KeyGenerationSettings:
    """The two settings from the litellm_settings section; ConfigError naming the key otherwise."""
    raw = litellm.get("key_generation_settings") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("litellm_settings.key_generation_settings: must be a mapping")
    where = "litellm_settings.key_generation_settings"
    team, personal = _section(raw, "team_key_generation"), _section(raw, "personal_key_generation")
    team_roles = team.get("allowed_team_member_roles")
    personal_roles = personal.get("allowed_user_roles")
    return KeyGenerationSettings(
        team_member_roles=("admin", "user") if team_roles is None else _names(
            team_roles, f"{where}.team_key_generation.allowed_team_member_roles", ("admin", "user")),
        team_required=_names(team.get("required_params") or [], f"{where}.team_key_generation.required_params"),
        personal_roles=None if personal_roles is None else _names(
            personal_roles, f"{where}.personal_key_generation.allowed_user_roles", ROLES),
        personal_required=_names(personal.get("required_params") or [],
                                 f"{where}.personal_key_generation.required_params"),
        upper=_upper(litellm.get("upperbound_key_generate_params")))


def _over(name: str, value: Any, bound: Any) -> bool:
    if name in ("budget_duration", "duration"):
        return duration_seconds(value) > duration_seconds(bound)
    return bool(value > bound)


def check_upper_bounds(settings: KeyGenerationSettings, body: Mapping[str, Any], fill: bool) -> dict[str, Any]:
    """The body's bounded values, checked (400 naming the first one over its bound; removing a bounded
    limit counts as over). With `fill` (/key/generate) a value the body leaves out takes the bound;
    returns the values to add to the body. Types are the caller's to validate first."""
    added: dict[str, Any] = {}
    for name, bound in settings.upper.items():
        if body.get(name) is None:
            if fill:
                added[name] = str(bound) if isinstance(bound, Decimal) else bound
            elif name in body:
                raise bad_request(f"'{name}' may not be removed: it is bounded by {_WHERE}", name)
            continue
        value = body[name]
        if name == "max_budget":
            value = Decimal(repr(value) if isinstance(value, float) else str(value))
        if _over(name, value, bound):
            raise bad_request(f"'{name}' may be at most {bound} ({_WHERE})", name)
    return added


def require_params(required: tuple[str, ...], body: Mapping[str, Any], kind: str) -> None:
    missing = [p for p in required if body.get(p) in (None, "", [], {})]
    if missing:
        raise bad_request(f"{kind} keys need {', '.join(repr(p) for p in missing)} "
                          "(litellm_settings.key_generation_settings)", missing[0])
