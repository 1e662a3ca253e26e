"""Operator tools: reconciliation with Lago, dead-letter replay, spool slots.

`llmbill.reconcile(start, end)` is the library entry; `llmbill reconcile` and `llmbill deadletters`
the commands. Nothing here is imported by `import llmbill` until it is called.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..lago.reconcile import ReconcileReport


def reconcile(start: datetime, end: datetime, *, config: str | None = None, spool_dir: str | None = None,
              fix: bool = False, max_age: timedelta = timedelta(days=31), force_late: bool = False,
              wait: float = 30.0) -> ReconcileReport:
    """Compares the proxy's billed calls in [start, end) with Lago's events; see `llmbill reconcile`.

    Reads the proxy's config (`config`, else LLMBILL_PROXY_CONFIG) for its database and LAGO_* from
    the environment. With `fix`, missing events are re-sent (original transaction_id and timestamp)
    and Lago is read again; the report is that of the second reading. Raises llmbill.Error
    subclasses (ConfigError, LagoReadError) when it cannot reconcile.

    >>> from datetime import timezone
    >>> report = reconcile(datetime(2026, 8, 1, tzinfo=timezone.utc),
    ...                    datetime(2026, 8, 2, tzinfo=timezone.utc))  # doctest: +SKIP
    >>> report.clean, report.to_json()["totals"]  # doctest: +SKIP
    """
    from .commands import reconcile as run

    return run(start, end, config=config, spool_dir=spool_dir, fix=fix, max_age=max_age, force_late=force_late,
               wait=wait)
