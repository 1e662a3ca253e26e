"""Times and durations as operators write them: ISO 8601, `now`, or `-<n>[smhdw]` relative to now.

>>> parse_duration("31d", "max_age").days
31
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone


_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(ValueError):
    """A command-line value the command cannot use; the message says which."""


def parse_time(text: str, name: str, now: datetime | None = None) -> datetime:
    """ISO 8601 date or date-time (UTC unless it names a zone), `now`, or `-<n><s|m|h|d|w>` ago.

    >>> parse_time("2026-08-06", "--from").isoformat()
    '2026-08-06T00:00:00+00:00'
    """
    now = now or datetime.now(timezone.utc)
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"{name}: {text!r} is not an ISO 8601 time, 'now' or '-<n>[smhdw]'") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_duration(text: str, name: str) -> timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if not match:
        raise UsageError(f"{name}: {text!r} is not a duration like 31d, 12h or 90m")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
