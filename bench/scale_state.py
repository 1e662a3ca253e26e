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
  cold customer p50   the same key with a customer the process has never read (one database read),
               beside two baselines of the empty store: a new customer id (the same read, finding
               nothing: no record, so no budget to check either) and a customer that exists there
               (the empty store holds no key but the calls' own and as many customers as the cold
               calls read, of the same shape: the same read and checks, only the store's size differs)
  cold key p50        a virtual key never read (one read for the key; its customer is hot)

The empty store's proxy runs throughout: its idle CPU is measured over the same window as each
sized store's, and calls alternate between the two (one at a time, one keep-alive connection each),
so the machine's other load weighs on both alike (it is shared: absolute figures move with it; the
`uptime` load averages are recorded). Start-up is the median of three starts. Not run in CI.
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


class Subject:
    """A store of a given size and one llmbill-proxy process on it."""

    def __init__(self, label: str, customers: int, keys: int, pg_url: str | None) -> None:
        self.label, self.customers, self.keys = label, customers, keys
        self.work = Path(tempfile.mkdtemp(prefix=f"llmbill-scale-{label}-"))
        if pg_url:
            from tests.python.pg import create_database

            self.url = create_database(pg_url, f"scale_{label}_{os.getpid()}")
        else:
            self.url = f"sqlite:///{self.work / 'llmbill.db'}"
        self.fill_s = asyncio.run(fill(self.url, customers, keys))
        os.sync()  # the bulk write reaches the disk now, not during the measurements
        self.config = {"model_list": [MODEL], "general_settings": {"master_key": MASTER, "database_url": self.url}}
        self.proxy: Proxy | None = None
        self.conn: http.client.HTTPConnection | None = None

    def start(self) -> float:
        """Starts the proxy; the seconds from exec to ready."""
        self.proxy = Proxy(self.config, workdir=self.work)
        started = time.monotonic()
        self.proxy.start(timeout=120)
        return time.monotonic() - started

    def startup(self, times: int) -> float:
        """The median start-up of `times` starts (the proxy is left running)."""
        seconds = []
        for i in range(times):
            seconds.append(self.start())
            if i < times - 1:
                self.stop()
        return statistics.median(seconds)

    @property
    def pid(self) -> int:
        assert self.proxy is not None and self.proxy.proc is not None
        return self.proxy.proc.pid

    def call_ms(self, key: str, customer: str) -> float:
        """One call's time as the client sees it (the mock upstream answers in-process, so this is the
        proxy's own time plus loopback HTTP; the overhead header leaves authentication out)."""
        assert self.proxy is not None
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=30)
        body = json.dumps({"model": "m", "user": customer, "messages": [{"role": "user", "content": "hi"}]})
        started = time.perf_counter()
        self.conn.request("POST", "/chat/completions", body, {"authorization": f"Bearer {key}",
                                                              "content-type": "application/json"})
        reply = self.conn.getresponse()
        reply.read()
        elapsed = (time.perf_counter() - started) * 1000
        if reply.status != 200:
            raise RuntimeError(f"{self.label}: call refused: {reply.status}")
        return elapsed

    def hang_up(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop(self) -> None:
        self.hang_up()
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    def remove(self) -> None:
        self.stop()
        for path in self.work.glob("llmbill.db*"):
            path.unlink()


def idle_cpu(subjects: list[Subject], seconds: float) -> list[float]:
    """% of a core each process used over the same idle window."""
    for s in subjects:
        s.hang_up()  # an idle keep-alive connection would time out meanwhile
    time.sleep(2)  # the last flush and sync settle
    before = [cpu_seconds(s.pid) for s in subjects]
    time.sleep(seconds)
    return [round(100 * (cpu_seconds(s.pid) - b) / seconds, 2) for s, b in zip(subjects, before)]


def measure(base: Subject, target: Subject, args: argparse.Namespace, base_ids: Any) -> dict[str, Any]:
    """Every figure of `target`, each beside the empty store's measured at the same time (interleaved)."""
    startup = target.startup(3)
    base_idle, target_idle = idle_cpu([base, target], args.idle)
    idle_rss = rss_mb(target.pid)
    rng = random.Random(7)
    hot_key = raw_key(0)
    hot: dict[str, list[float]] = {"base": [], "target": []}
    cold: dict[str, list[float]] = {"base": [], "target": [], "existing": [], "target_existing": []}
    ratios: dict[str, list[float]] = {"hot": [], "cold": [], "existing": []}
    for _ in range(20):
        base.call_ms(hot_key, "hot"), target.call_ms(hot_key, "hot")
    targets = iter(rng.sample(range(target.customers), 2 * args.calls * args.rounds))
    for r in range(args.rounds):
        this: dict[str, dict[str, list[float]]] = {"hot": {"base": [], "target": []},
                                                   "cold": {"base": [], "target": [], "existing": []}}
        for i in range(args.calls):
            for name, s in [("base", base), ("target", target)][:: 1 if i % 2 else -1]:
                this["hot"][name].append(s.call_ms(hot_key, "hot"))
        # A customer never read: an existing one in the sized store; in the empty store a new id (the
        # same one database read, which finds nothing).
        # Each baseline in a pass of its own, the two proxies strictly alternating: a proxy called twice
        # in a row answers the second call faster (its thread has not gone idle), which an order of three
        # calls gave the empty store's every call and never the sized one's (1.15x at equal sizes).
        for i in range(args.calls):
            pair = [("base", base, f"new-{target.label}-{r}-{i}"), ("target", target, f"cust-{next(targets)}")]
            for name, s, customer in pair[:: 1 if i % 2 else -1]:
                this["cold"][name].append(s.call_ms(hot_key, customer))
        targets_existing: list[float] = []
        for i in range(args.calls):
            pair = [("existing", base, f"cust-{next(base_ids)}"), ("target", target, f"cust-{next(targets)}")]
            for name, s, customer in pair[:: 1 if i % 2 else -1]:
                (targets_existing if name == "target" else this["cold"][name]).append(s.call_ms(hot_key, customer))
        for figure, into in (("hot", hot), ("cold", cold)):
            for name in this[figure]:
                into[name] += this[figure][name]
            ratios[figure].append(statistics.median(this[figure]["target"]) / statistics.median(this[figure]["base"]))
        cold["target_existing"] += targets_existing
        ratios["existing"].append(statistics.median(targets_existing) / statistics.median(this["cold"]["existing"]))
    cold_key = [target.call_ms(raw_key(k), "hot") for k in rng.sample(range(1, target.keys), min(args.calls, target.keys - 1))]
    return {"label": target.label, "customers": target.customers, "keys": target.keys, "fill_s": round(target.fill_s, 1),
            "startup_s": round(startup, 2), "idle_cpu_pct": target_idle, "empty_idle_cpu_pct": base_idle,
            "idle_rss_mb": round(idle_rss, 1), "rss_after_calls_mb": round(rss_mb(target.pid), 1),
            "empty_rss_mb": round(rss_mb(base.pid), 1),
            "hot_p50_ms": round(statistics.median(hot["target"]), 3),
            "empty_hot_p50_ms": round(statistics.median(hot["base"]), 3),
            "cold_p50_ms": round(statistics.median(cold["target"]), 3),
            "empty_cold_p50_ms": round(statistics.median(cold["base"]), 3),
            "existing_p50_ms": round(statistics.median(cold["target_existing"]), 3),
            "empty_existing_p50_ms": round(statistics.median(cold["existing"]), 3),
            "existing_round_ratios": [round(x, 2) for x in ratios["existing"]],
            "cold_key_p50_ms": round(statistics.median(cold_key), 3),
            "hot_round_ratios": [round(x, 2) for x in ratios["hot"]],
            "cold_round_ratios": [round(x, 2) for x in ratios["cold"]]}


def table(base_startup: float, rows: list[dict[str, Any]]) -> str:
    def pair(r: dict[str, Any], name: str) -> str:
        mine, empty = r[name], r[f"empty_{name}"]
        rounds = r[f"{name.split('_')[0]}_round_ratios"]
        return f"{mine} / {empty} ({mine / empty:.2f}x; rounds {', '.join(f'{x:.2f}' for x in rounds)})"

    out = [f"Start-up of the empty store's proxy: {base_startup:.2f} s. Pairs: this store / the empty store, "
           "measured at the same time.", "",
           "| store | fill s | start-up s | idle CPU % of a core | RSS MB idle, after calls (empty) | hot p50 ms | "
           "cold customer p50 ms, vs a new id | the same, vs an existing customer | cold key p50 ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['fill_s']} | {r['startup_s']} | {r['idle_cpu_pct']} / {r['empty_idle_cpu_pct']} | "
                   f"{r['idle_rss_mb']}, {r['rss_after_calls_mb']} ({r['empty_rss_mb']}) | {pair(r, 'hot_p50_ms')} | "
                   f"{pair(r, 'cold_p50_ms')} | {pair(r, 'existing_p50_ms')} | {r['cold_key_p50_ms']} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="customer counts, comma-separated")
    parser.add_argument("--keys", type=int, default=100_000, help="virtual keys in every non-empty store")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    parser.add_argument("--calls", type=int, default=300, help="calls per latency figure and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of hot then cold calls")
    parser.add_argument("--database", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    pg_url, stop = None, None
    if args.database == "pg":
        from tests.python.pg import start_postgres

        pg_url, stop = start_postgres()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    # One key (the calls' own) and the customers the cold calls read, of the sized stores' shape.
    base = Subject("empty", args.calls * args.rounds * len(sizes), 1, pg_url)
    base_ids = iter(range(base.customers))
    rows: list[dict[str, Any]] = []
    try:
        base_startup = base.startup(3)
        for size in sizes:
            target = Subject(f"{size // 1000}k", size, args.keys, pg_url)
            try:
                rows.append(measure(base, target, args, base_ids))
            finally:
                target.remove()
            print(table(base_startup, rows), flush=True)
    finally:
        base.remove()
        if stop is not None:
            stop()
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nload: before {load}\n      after  {after}")
    if args.out:
        Path(args.out).write_text(json.dumps({"database": args.database, "uptime_before": load, "uptime_after": after,
                                              "empty_startup_s": round(base_startup, 2), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
