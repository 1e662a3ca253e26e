"""The SQLite spend flush's log rows, one statement a row (executemany, what the store does) against a
hundred rows a statement (`INSERT ... VALUES (...), (...)`, tried and dropped: no faster), interleaved
round by round on one store's writing connection, in one process.

    .venv/bin/python bench/spend_insert_ab.py [--rows 1000] [--rounds 15] [--busy-us 300]

Each round inserts --rows calls' log rows (converted by the store's log_row first) each way, in one
transaction in the store's writer thread, the order alternating, and reports per way: the insert's
wall time, the writer thread's CPU, the process's CPU over it, and what the event loop's thread
saw meanwhile — a task standing in for the requests (--busy-us of Python work a turn, then a yield;
0: it only yields) counts its turns and the longest gap between two: the writer thread holding or
taking back the GIL shows there, and in the proxy every request waits the same way. Results: medians
of the per-round ratio after ÷ before, with the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmbill.proxy.store import SpendBatch, SpendLog, open_store
from llmbill.proxy.store.sql import LOG_FIELDS, log_converters, log_row, q
from llmbill.proxy.store.sqlite import SQLITE, SqliteStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def rows(prefix: str, n: int) -> SpendBatch:
    batch = SpendBatch()
    batch.add("customer", "bench-customer", Decimal("0.000123") * n)
    for i in range(n):
        batch.logs.append(SpendLog(
            request_id=f"{prefix}-{i:06d}", call_type="chat_completion", model="gpt-4o-mini", api_key="a" * 64,
            user="", team_id="", end_user="bench-customer", spend=Decimal("0.000123"), prompt_tokens=12,
            completion_tokens=7, cached_tokens=0, reasoning_tokens=0, start_time=T0 + timedelta(microseconds=i),
            end_time=T0 + timedelta(microseconds=i + 400), status="success", metadata={"key_alias": "bench"},
            response_id=f"chatcmpl-{i}"))
    return batch


async def insert(store: SqliteStore, rows_: list[tuple[Any, ...]], batched: bool, busy: float) -> dict[str, float]:
    conn = store._writer.conn
    assert conn is not None
    names = ", ".join(map(q, LOG_FIELDS))
    one = "(" + ", ".join(["?"] * len(LOG_FIELDS)) + ")"

    def run() -> float:
        cpu = time.thread_time()
        conn.execute("BEGIN IMMEDIATE")
        if batched:
            for i in range(0, len(rows_), 100):
                part = rows_[i:i + 100]
                conn.execute(f"INSERT INTO spend_logs ({names}) VALUES " + ", ".join([one] * len(part)),
                             [v for row in part for v in row]).close()
        else:
            conn.executemany(f"INSERT INTO spend_logs ({names}) VALUES {one}", rows_).close()
        conn.execute("COMMIT")
        return time.thread_time() - cpu

    turns, longest, done = 0, 0.0, False

    async def ticker() -> None:
        nonlocal turns, longest
        last = time.perf_counter()
        while not done:
            until = time.perf_counter() + busy
            while time.perf_counter() < until:  # a request's Python work, holding the GIL
                pass
            await asyncio.sleep(0)
            now = time.perf_counter()
            turns, longest, last = turns + 1, max(longest, now - last), now

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    cpu, wall = time.process_time(), time.perf_counter()
    writer_cpu = await store._writer.call(run)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = True
    await tick
    return {"wall_ms": wall * 1000, "writer_cpu_ms": writer_cpu * 1000, "cpu_ms": cpu * 1000,
            "loop_turns": turns, "longest_gap_ms": longest * 1000}


async def main_async(args: argparse.Namespace) -> int:
    path = Path(tempfile.mkdtemp(prefix="llmbill-spend-insert-")) / "db.sqlite"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    await store.open()
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    convert = log_converters(SQLITE)
    try:
        for r in range(args.rounds):
            for way in (("before", "after") if r % 2 == 0 else ("after", "before")):
                rows_ = [log_row(SQLITE, log, convert) for log in rows(f"{way}-{r}", args.rows).logs]
                results[way].append(await insert(store, rows_, way == "after", args.busy_us / 1e6))
    finally:
        await store.close()
    print(f"{args.rows} spend-log rows a flush, {args.rounds} interleaved rounds, the loop busy {args.busy_us:g} µs a "
          "turn; medians, and after ÷ before per round: median (lowest … highest)\n")
    print("| figure | executemany | 100 rows a statement | ratio |")
    print("|---|---:|---:|---|")
    for key, label in (("wall_ms", "insert wall ms"), ("writer_cpu_ms", "writer thread CPU ms"),
                       ("cpu_ms", "process CPU ms"), ("loop_turns", "event-loop turns during it"),
                       ("longest_gap_ms", "longest loop gap ms")):
        b = [x[key] for x in results["before"]]
        a = [x[key] for x in results["after"]]
        ratios = [y / x for x, y in zip(b, a) if x]
        print(f"| {label} | {statistics.median(b):.2f} | {statistics.median(a):.2f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f} … {max(ratios):.2f}) |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--busy-us", type=float, default=300, help="Python work per turn of the loop's stand-in task")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
