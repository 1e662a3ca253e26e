"""Spend logs from past days, written straight into a proxy's SQLite database before it starts, so
reports and the Spend tab's chart have a history that live calls (all "now") cannot make."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmbill.proxy.store import SpendBatch, SpendLog, open_store

# (days ago, model, team, customer, spend) — deterministic, a few teams/customers/models.
PAST: list[tuple[int, str, str, str, str]] = [
    (d, model, team, cust, spend)
    for d in range(1, 29, 2)
    for model, team, cust, spend in [("gpt-3.5-turbo", "team-web", "acme", f"0.0{d % 7 + 1}"),
                                     ("mistral", "team-api", "globex", f"0.00{d % 5 + 2}"),
                                     ("gpt-3.5-turbo", "team-api", "initech", "0.004")]
]


def log(request_id: str, when: datetime, model: str, team: str, customer: str, spend: str,
        prompt: int = 12, completion: int = 7) -> SpendLog:
    return SpendLog(request_id, "chat_completion", model, "", "", team, customer, Decimal(spend), prompt,
                    completion, 0, 0, when, when, "success")


def past_logs(now: datetime | None = None) -> list[SpendLog]:
    now = now or datetime.now(timezone.utc)
    return [log(f"past-{i}", now - timedelta(days=d), model, team, cust, spend)
            for i, (d, model, team, cust, spend) in enumerate(PAST)]


def seed(db_path: Path, logs: list[SpendLog]) -> None:
    """Writes `logs` (no spend increments: entity spend stays as it was) into the SQLite database."""
    async def write() -> None:
        store = open_store(f"sqlite:///{db_path}")
        await store.open()
        try:
            await store.apply_spend(SpendBatch(logs=logs))
        finally:
            await store.close()

    # In a thread of its own: Playwright's sync API keeps an event loop running in the test's thread.
    failure: list[BaseException] = []
    worker = threading.Thread(target=lambda: _run(write(), failure))
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def _run(coro: Coroutine[Any, Any, None], failure: list[BaseException]) -> None:
    try:
        asyncio.run(coro)
    except BaseException as exc:  # handed to the calling thread
        failure.append(exc)
