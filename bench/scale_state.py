"""Scale of the proxy's state (issue 16): what a proxy costs as its database grows, beside an empty one.

    .venv/bin/python bench/scale_state.py [--sizes 10000,100000,1000000] [--keys 100000] [--idle 10]
        [--calls 300] [--database sqlite|pg] [--out F.json]

For the empty store and for each size: a fresh database holding SIZE customers (half of them on a
pricing tier with a 30-day window) and KEYS virtual keys, written through the store in bulk; one
llmbill-proxy process (one worker, the built-in mock upstream, billing off) started on it; then:

  start-up     seconds from exec to the worker's "ready" line and a first health answer
  idle CPU     utime + stime of the process over --idle seconds with no traffic, in % of a core
  RSS          VmRSS after the idle period, and again after the calls below
  hot p50      a call's median time as the client sees it (the mock upstream answers in-process:
               the proxy's own time plus loopback HTTP) for one virtual key and one customer called
               again and again (all in memory)
  cold customer p50   the same key with a customer the process has never read (one database read;
               in the empty store a new customer id: the same read, finding nothing)
  cold key p50        a virtual key never read (one read for the key; its customer is hot)

Calls go one at a time over one keep-alive connection. Every figure is printed beside the empty
store's, measured in the same run (the machine is shared: absolute figures move with its load; the
`uptime` load averages are recorded). Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.python.proxy_harness import Proxy  # noqa: E402

MASTER = "sk-bench-scale-0123456789abcdef"
MODEL = {"model_name": "m", "litellm_params": {"model": "mock/m", "input_cost_per_token": 1e-06,
                                               "output_cost_per_token": 2e-06}}
CHUNK = 50_000  # records per bulk insert (one transaction each)
TICKS = os.sysconf("SC_CLK_TCK")


def raw_key(i: int) -> str:
    return f"sk-bench-key-{i:08d}-abcdefghijklmnop"


async def fill(url: str, customers: int, keys: int) -> float:
    """Writes the records in bulk; returns the seconds it took."""
    from llmbill.proxy.store import open_store

    started = time.monotonic()
    store = open_store(url)
    await store.open()
    try:
        await store.insert("budget", {"budget_id": "tier", "max_budget": 1000, "budget_duration": "30d"})
        for start in range(0, customers, CHUNK):
            await store.insert_many("customer", [
                {"user_id": f"cust-{i}", "budget_id": "tier" if i % 2 else None, "max_budget": None if i % 2 else 1000}
                for i in range(start, min(customers, start + CHUNK))])
        for start in range(0, keys, CHUNK):
            await store.insert_many("key", [
                {"token_hash": hashlib.sha256(raw_key(i).encode()).hexdigest(), "key_alias": f"k{i}",
                 "max_budget": 1000, "models": [], "blocked": False}
                for i in range(start, min(keys, start + CHUNK))])
    finally:
        await store.close()
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def overhead_ms(conn: http.client.HTTPConnection, key: str, customer: str) -> float:
    """One call's time as the client sees it (the mock upstream answers in-process, so this is the
    proxy's own time plus loopback HTTP); the proxy's overhead header leaves authentication out."""
    body = json.dumps({"model": "m", "user": customer, "messages": [{"role": "user", "content": "hi"}]})
    started = time.perf_counter()
    conn.request("POST", "/chat/completions", body, {"authorization": f"Bearer {key}",
                                                     "content-type": "application/json"})
    reply = conn.getresponse()
    reply.read()
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status != 200:
        raise RuntimeError(f"call refused: {reply.status}")
    return elapsed


def measure(label: str, customers: int, keys: int, args: argparse.Namespace, pg_url: str | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"llmbill-scale-{label}-"))
    if pg_url:
        from tests.python.pg import create_database

        url = create_database(pg_url, f"scale_{label}_{os.getpid()}")
    else:
        url = f"sqlite:///{work / 'llmbill.db'}"
    fill_s = asyncio.run(fill(url, customers, keys))
    config = {"model_list": [MODEL], "general_settings": {"master_key": MASTER, "database_url": url}}
    proxy = Proxy(config, workdir=work)
    started = time.monotonic()
    proxy.start(timeout=120)
    startup = time.monotonic() - started
    try:
        assert proxy.proc is not None
        pid = proxy.proc.pid
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        overhead_ms(conn, MASTER, "warm-up")  # imports and pools settle
        conn.close()
        time.sleep(2)
        before = cpu_seconds(pid)
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(pid) - before) / args.idle
        idle_rss = rss_mb(pid)
        rng = random.Random(7)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)  # the idle one timed out
        hot_key = raw_key(0)
        for _ in range(20):
            overhead_ms(conn, hot_key, "hot")
        hot = [overhead_ms(conn, hot_key, "hot") for _ in range(args.calls)]
        # A customer never read: an existing one when the store holds some, else a new id (the same
        # one database read, which finds nothing).
        cold = [overhead_ms(conn, hot_key, f"cust-{c}" if customers else f"new-{c}")
                for c in rng.sample(range(max(customers, args.calls)), args.calls)]
        cold_key = ([overhead_ms(conn, raw_key(k), "hot") for k in rng.sample(range(1, keys), args.calls)]
                    if keys > args.calls else [])
        conn.close()
        return {"label": label, "customers": customers, "keys": keys, "fill_s": round(fill_s, 1),
                "startup_s": round(startup, 2), "idle_cpu_pct": round(100 * idle_cpu, 2),
                "idle_rss_mb": round(idle_rss, 1), "rss_after_calls_mb": round(rss_mb(pid), 1),
                "hot_p50_ms": round(statistics.median(hot), 3), "cold_p50_ms": round(statistics.median(cold), 3),
                "cold_key_p50_ms": round(statistics.median(cold_key), 3) if cold_key else None}
    finally:
        proxy.stop()
        if pg_url is None:
            for path in work.glob("llmbill.db*"):
                path.unlink()


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    out = ["| store | fill s | start-up s | idle CPU % | idle RSS MB | RSS after calls MB | hot p50 ms | "
           "cold customer p50 ms | cold key p50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def vs(name: str) -> str:
            if r is base or not base[name] or r[name] is None:
                return str(r[name])
            return f"{r[name]} ({r[name] / base[name]:.2f}x)"
        out.append(f"| {r['label']} | {r['fill_s']} | {vs('startup_s')} | {r['idle_cpu_pct']} | {r['idle_rss_mb']} | "
                   f"{r['rss_after_calls_mb']} | {vs('hot_p50_ms')} | {vs('cold_p50_ms')} | {r['cold_key_p50_ms'] or '-'} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="customer counts, comma-separated")
    parser.add_argument("--keys", type=int, default=100_000, help="virtual keys in every non-empty store")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    parser.add_argument("--calls", type=int, default=300, help="calls per latency figure")
    parser.add_argument("--database", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    pg_url, stop = None, None
    if args.database == "pg":
        from tests.python.pg import start_postgres

        pg_url, stop = start_postgres()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    try:
        rows = [measure("empty", 0, 1, args, pg_url)]  # one key: the calls' own
        for size in (int(s) for s in args.sizes.split(",") if s):
            rows.append(measure(f"{size // 1000}k", size, args.keys, args, pg_url))
            print(table(rows), flush=True)
    finally:
        if stop is not None:
            stop()
    result = {"database": args.database, "uptime_before": load,
              "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), "rows": rows}
    print(f"\nload: before {load}\n      after  {result['uptime_after']}")
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
