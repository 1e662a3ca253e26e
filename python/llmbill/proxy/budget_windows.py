"""`budget_reset_at` on a management update: the window an entity's budget runs in must follow its
duration at once. A reset time left behind by a removed duration would, once it passed, make the
budget check count only unwritten spend — switching the budget off (guards.window_spend).

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> reset_fields(None, None, touched=True, current_reset=now, now=now, tz="UTC")
{'budget_reset_at': None}
>>> reset_fields("30d", "1d", touched=False, current_reset=now, now=now, tz="UTC")["budget_reset_at"].isoformat()
'2026-01-02T00:00:00+00:00'
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .durations import next_reset


def reset_fields(old_duration: str | None, new_duration: str | None, *, touched: bool,
                 current_reset: Any, now: datetime, tz: str) -> dict[str, Any]:
    """The `budget_reset_at` change for an update (empty: keep it). `touched`: the update names the
    duration itself. Without a duration there is no window: cleared. A duration set, changed or
    restated starts a window now (LiteLLM's behaviour when budget_duration is sent)."""
    if not new_duration:
        return {"budget_reset_at": None} if touched or current_reset is not None else {}
    if touched or new_duration != old_duration or current_reset is None:
        return {"budget_reset_at": next_reset(now, new_duration, tz)}
    return {}
