"""Budget and key durations: `30s`, `5m`, `1h`, `1d`, `1w`, `1mo` (LiteLLM's notation).

`s`, `m`, `h` windows roll from the moment they start; `d`, `w`, `mo` align to calendar boundaries
(midnight, Monday, the 1st) in the configured timezone.

>>> from datetime import datetime, timezone
>>> start = datetime(2026, 1, 31, 15, 0, tzinfo=timezone.utc)
>>> next_reset(start, "1mo", "UTC").isoformat()
'2026-02-01T00:00:00+00:00'
>>> next_reset(start, "30s", "UTC").isoformat()
'2026-01-31T15:00:30+00:00'
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_PATTERN = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")


def parse_duration(text: str) -> tuple[int, str]:
    """'30d' → (30, 'd'); ValueError naming the accepted forms otherwise."""
    m = _PATTERN.match(text) if isinstance(text, str) else None
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 1d, 1w, 1mo")
    return int(m.group(1)), m.group(2)


def add_duration(start: datetime, text: str) -> datetime:
    """start + duration, rolling (for key expiry)."""
    n, unit = parse_duration(text)
    if unit == "mo":
        return _add_months(start, n)
    return start + {"s": timedelta(seconds=n), "m": timedelta(minutes=n), "h": timedelta(hours=n),
                    "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def next_reset(start: datetime, text: str, tz: str) -> datetime:
    """When a budget window that began at `start` ends."""
    n, unit = parse_duration(text)
    if unit in ("s", "m", "h"):
        return add_duration(start, text)
    local = start.astimezone(ZoneInfo(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        end = midnight + timedelta(days=n)
    elif unit == "w":
        end = midnight - timedelta(days=midnight.weekday()) + timedelta(weeks=n)
    else:
        end = _add_months(midnight.replace(day=1), n)
    return end.astimezone(timezone.utc)


def _add_months(moment: datetime, n: int) -> datetime:
    month0 = moment.month - 1 + n
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    days_in_month = [31, 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28, 31, 30, 31, 30,
                     31, 31, 30, 31, 30, 31][month - 1]
    return moment.replace(year=year, month=month, day=min(moment.day, days_in_month))
