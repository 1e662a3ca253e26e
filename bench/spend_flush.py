"""What a spend flush costs as spend_logs grows: call ids in time order (`ids.new_id`, the proxy's) beside
the ids they replaced, random within each process (issue 18). The baseline runs in the same run.

    .venv/bin/python bench/spend_flush.py [--rows 1500] [--flushes 200] [--databases sqlite,postgres] [--json F]

A call id is spend_logs' primary key. Each flush writes the rows of the calls since the last one (0.5 s
of traffic: 1,500 rows at 3,000 calls a second) with `SqlStore.apply_spend`, exactly as the proxy does.
With random ids every row lands on its own page of the key's index, wherever earlier rows put it, so a
flush dirties a page per row and the pages to visit grow with the table; with ids in time order the
rows of a flush go to the index's last pages. Both layouts write the same rows (one key, one customer,
a random provider response id as real providers give), each into its own fresh database of the same
kind, flush by flush in alternating order so the machine's drift falls on both. Reported per layout:
the median wall time of the first 10 flushes and of the last 20 (the table at its largest), and the
CPU of this process over the last 20 (SQLite's writer thread included; PostgreSQL's work is in its own
server, so there read the wall time). PostgreSQL is started as the tests start it (tests/python/pg.py:
fsync off) but with full_page_writes on, as in production, where the first change to a page after a
checkpoint writes the whole page to the WAL: what random keys pay most for.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))  # pg.py: the tests' PostgreSQL server

from llmbill.proxy import ids  # noqa: E402
from llmbill.proxy.spend import calls_batch  # noqa: E402
from llmbill.proxy.store import SpendLog, open_store  # noqa: E402
from llmbill.proxy.store.base import Store  # noqa: E402


def random_per_process_ids() -> Callable[[], str]:
    """The layout before (ids.py until this change): a random 64-bit prefix per process, then a counter
    sent through a bijection (an odd multiplier, a random offset)."""
    seed = os.urandom(16)
    prefix, offset, counter = seed[:8].hex(), int.from_bytes(seed[8:], "big"), itertools.count()
    return lambda: f"{prefix}{(next(counter) * 0x9E3779B97F4A7C15 + offset) % 2**64:016x}"


LAYOUTS: dict[str, Callable[[], Callable[[], str]]] = {
    "random per process (before)": random_per_process_ids,
    "time order (ids.new_id)": lambda: ids.new_id,
}


def rows(make_id: Callable[[], str], n: int) -> list[SpendLog]:
    now = datetime.now(timezone.utc)
    return [SpendLog(request_id=make_id(), call_type="chat_completion", model="gpt-4o-mini", api_key="ab" * 32,
                     user="", team_id="", end_user="bench-customer", spend=Decimal("0.000006"), prompt_tokens=12,
                     completion_tokens=7, cached_tokens=0, reasoning_tokens=0, start_time=now, end_time=now,
                     status="success", metadata={"key_alias": "bench"},
                     response_id=f"chatcmpl-{os.urandom(12).hex()}") for _ in range(n)]


async def measure(urls: dict[str, str], per_flush: int, flushes: int) -> dict[str, dict[str, Any]]:
    stores: dict[str, Store] = {name: open_store(url) for name, url in urls.items()}
    makers = {name: LAYOUTS[name]() for name in urls}
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
    try:
        for store in stores.values():
            await store.open()
        for flush in range(flushes):
            order = list(urls) if flush % 2 == 0 else list(reversed(urls))
            for name in order:
                batch = calls_batch(rows(makers[name], per_flush))
                wall, cpu = time.perf_counter(), time.process_time()
                await stores[name].apply_spend(batch)
                timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    finally:
        for store in stores.values():
            await store.close()
    out: dict[str, dict[str, Any]] = {}
    for name, t in timings.items():
        out[name] = {"rows": per_flush * flushes,
                     "first_ms": statistics.median(w for w, _ in t[:10]) * 1e3,
                     "last_ms": statistics.median(w for w, _ in t[-20:]) * 1e3,
                     "last_cpu_ms": statistics.median(c for _, c in t[-20:]) * 1e3}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1500, help="rows a flush (default: 0.5 s at 3,000 calls/s)")
    ap.add_argument("--flushes", type=int, default=200)
    ap.add_argument("--databases", default="sqlite,postgres")
    ap.add_argument("--json", help="the figures, raw")
    args = ap.parse_args()
    results: dict[str, Any] = {"rows_per_flush": args.rows, "flushes": args.flushes, "databases": {}}
    work = Path(tempfile.mkdtemp(prefix="llmbill-spend-flush-"))
    for database in args.databases.split(","):
        if database == "sqlite":
            urls = {name: f"sqlite:///{work}/{i}.db" for i, name in enumerate(LAYOUTS)}
            results["databases"][database] = asyncio.run(measure(urls, args.rows, args.flushes))
        elif database == "postgres":
            from pg import create_database, start_postgres

            # full_page_writes on, as a production server runs: after each checkpoint (every 64 MB of
            # WAL here) the first change to a page writes the whole page to the WAL.
            server, stop = start_postgres("-c full_page_writes=on")
            try:
                urls = {name: create_database(server, f"flush_{i}") for i, name in enumerate(LAYOUTS)}
                results["databases"][database] = asyncio.run(measure(urls, args.rows, args.flushes))
            finally:
                stop()
        else:
            raise SystemExit(f"spend_flush: unknown database {database!r} (sqlite, postgres)")
    print(f"{args.rows:,} rows a flush, {args.flushes} flushes into each database; medians\n")
    print("| database | call ids | rows at the end | flush ms, first 10 | flush ms, last 20 | CPU ms, last 20 | "
          "last 20 ÷ before |")
    print("|---|---|---:|---:|---:|---:|---:|")
    before = next(iter(LAYOUTS))
    for database, figures in results["databases"].items():
        for name, f in figures.items():
            ratio = f["last_ms"] / figures[before]["last_ms"]
            print(f"| {database} | {name} | {f['rows']:,} | {f['first_ms']:.1f} | {f['last_ms']:.1f} | "
                  f"{f['last_cpu_ms']:.1f} | {ratio:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
