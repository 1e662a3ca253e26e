"""The window a per-model budget (`model_max_budget`) counts spend in, from the time alone — so every
process and every restart agrees on it without storing it.

Windows align to fixed boundaries: `1d`, `1w`, `1mo` are the current day, week (from Monday) and
calendar month in the configured timezone; `Nd`, `Nw`, `Nmo` are runs of N of them counted from
1970-01-01 (a Monday is 1970-01-05); `s`, `m`, `h` windows are runs counted from the Unix epoch.
No duration: the window is all time.

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 3, 18, 15, 30, tzinfo=timezone.utc)
>>> window_start(now, "1mo", "UTC").isoformat()
'2026-03-01T00:00:00+00:00'
>>> window_start(now, "1h", "UTC").isoformat()
'2026-03-18T15:00:00+00:00'
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from .durations import parse_duration

_EPOCH_MONDAY = datetime(1970, 1, 5).date()
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def window_start(now: datetime, duration: str | None, tz: str) -> datetime | None:
    if not duration:
        return None
    n, unit = parse_duration(duration)
    if unit in _SECONDS:
        length = n * _SECONDS[unit]
        return datetime.fromtimestamp(int(now.timestamp()) // length * length, timezone.utc)
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    day = local.date()
    if unit == "d":
        start = day - timedelta(days=(day.toordinal() - datetime(1970, 1, 1).toordinal()) % n)
    elif unit == "w":
        monday = day - timedelta(days=day.weekday())
        start = monday - timedelta(weeks=((monday - _EPOCH_MONDAY).days // 7) % n)
    else:
        months = (day.year - 1970) * 12 + day.month - 1
        first = months - months % n
        start = day.replace(year=1970 + first // 12, month=first % 12 + 1, day=1)
    return datetime(start.year, start.month, start.day, tzinfo=zone).astimezone(timezone.utc)
