"""Limits remember who set them: a limit set by a proxy admin is the proxy admin's to lift.

Each key keeps `limits_set_by` {field: authority}, the authority being "proxy_admin", "team_admin" (an
admin of the key's team, on a key not its own) or "owner" (the key's user). Anyone who may change a key
may tighten any of its limits; loosening one — a higher or removed budget or rate limit, a later expiry,
a shorter budget window, more models, another or any customer, unblocking — needs at least the
authority that set it. A field set back to "no limit" forgets who set it. Team members' budgets in a
team (`max_budget_in_team`) follow the same rule through `budget_set_by` on the member entry.

>>> loosens("max_budget", Decimal("1"), Decimal("1000"))
True
>>> loosens("models", ["a", "b"], ["a"])
False
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import auth_error
from .keygen_settings import duration_seconds

LEVELS = {"owner": 1, "team_admin": 2, "proxy_admin": 3}
# Stored field → the API's name for it (expiry is set through `duration`).
LIMITS = {"max_budget": "max_budget", "soft_budget": "soft_budget", "budget_duration": "budget_duration",
          "expires": "duration", "models": "models", "tpm_limit": "tpm_limit", "rpm_limit": "rpm_limit",
          "max_parallel_requests": "max_parallel_requests", "customer_id": "customer_id",
          "allowed_customer_ids": "allowed_customer_ids", "blocked": "blocked", "tpd_limit": "tpd_limit",
          "model_max_budget": "model_max_budget", "model_rpm_limit": "model_rpm_limit",
          "model_tpm_limit": "model_tpm_limit", "temp_budget_increase": "temp_budget_increase",
          "temp_budget_expiry": "temp_budget_expiry", "budget_id": "budget_id", "allowed_routes": "allowed_routes",
          "enforced_params": "enforced_params"}
_PER_MODEL = ("model_max_budget", "model_rpm_limit", "model_tpm_limit")


def unlimited(name: str, value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (list, dict)) and not value)


def _tighter_or_equal(new: Any, old: Any) -> bool:
    """One model's limit: an int, or {max_budget, budget_duration} (same window, no larger budget)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return (new.get("budget_duration") == old.get("budget_duration")
                and new.get("max_budget") is not None
                and (old.get("max_budget") is None or new["max_budget"] <= old["max_budget"]))
    return bool(new is not None and old is not None and new <= old)


def loosens(name: str, old: Any, new: Any) -> bool:
    """Whether setting field `name` from `old` to `new` lets the key do more."""
    if unlimited(name, old) and name != "budget_duration":
        return False  # nothing was limited (a budget without a window is the tightest of all)
    if unlimited(name, new):
        return name != "budget_duration"
    if name == "budget_duration":  # a shorter window resets the budget sooner
        return old is None or duration_seconds(new) < duration_seconds(old)
    if name == "models":
        return "all-team-models" not in old and not set(new) <= set(old)
    if name in ("allowed_customer_ids", "allowed_routes"):
        return not set(new) <= set(old)
    if name == "enforced_params":  # dropping a required field lets calls do more
        return not set(old) <= set(new)
    if name in _PER_MODEL:  # a model no longer limited, or limited less
        return any(m not in new or not _tighter_or_equal(new[m], limit) for m, limit in old.items())
    if name == "customer_id":
        return bool(new != old)
    if isinstance(old, (Decimal, int, datetime)):
        return bool(new > old)
    return bool(new != old)


def _higher(a: str | None, b: str) -> str:
    return a if a is not None and LEVELS.get(a, 1) > LEVELS[b] else b


def _refuse(what: list[tuple[str, str]]) -> None:
    named = ", ".join(f"{name} (set by {'the owner' if by == 'owner' else 'a ' + by.replace('_', ' ')})"
                      for name, by in what)
    raise auth_error(f"may not lift {named}: a limit is lifted only by whoever set it, or a higher admin", 403)


def check_change(set_by: dict[str, str], record: dict[str, Any], fields: dict[str, Any],
                 authority: str) -> dict[str, str]:
    """403 naming the limits `authority` may not loosen; else the key's new `limits_set_by`."""
    def setter(name: str) -> str | None:
        # A budget's window belongs to whoever set the budget: making a lifetime budget daily lifts it.
        if name == "budget_duration" and "max_budget" in set_by:
            return _higher(set_by.get(name), set_by["max_budget"])
        return set_by.get(name)

    refused = [(api, by) for n, api in LIMITS.items() if n in fields and (by := setter(n)) is not None
               and LEVELS.get(by, 1) > LEVELS[authority] and loosens(n, record.get(n), fields[n])]
    if refused:
        _refuse(refused)
    out = dict(set_by)
    for name in LIMITS:
        if name not in fields or fields[name] == record.get(name):
            continue
        if unlimited(name, fields[name]):
            out.pop(name, None)
        else:
            out[name] = _higher(out.get(name), authority)
    return out


def initial(fields: dict[str, Any], authority: str) -> dict[str, str]:
    """`limits_set_by` of a new key: every limit it starts with is its creator's."""
    return {name: authority for name in LIMITS if not unlimited(name, fields.get(name))}


def member_budget_change(entry: dict[str, Any], new_budget: Decimal | None, authority: str) -> str | None:
    """403 when `authority` would lift a member budget set by a higher one; else the new `budget_set_by`."""
    setter = entry.get("budget_set_by")
    if setter and LEVELS.get(setter, 1) > LEVELS[authority] \
            and loosens("max_budget", entry.get("max_budget_in_team"), new_budget):
        _refuse([(f"max_budget_in_team of {entry.get('user_id')!r}", setter)])
    if new_budget is None:
        return None
    return _higher(setter if entry.get("max_budget_in_team") is not None else None, authority)


def set_by_of(record: dict[str, Any]) -> dict[str, str]:
    """A key's `limits_set_by`; a key made before limits remembered their setter counts every limit
    it has as a proxy admin's (the safe guess)."""
    stored = record.get("limits_set_by")
    return dict(stored) if isinstance(stored, dict) else initial(record, "proxy_admin")
