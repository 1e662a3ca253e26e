"""Added latency of one request shape over another through the same llmbill-proxy, request by request:
the modes take turns on their own keep-alive connections (A B, then B A, ...), one request at a time.

    .venv/bin/python bench/interleave_modes.py [--modes chat,anthropic-chat,messages] [--requests 5000]
        [--warmup 500] [--blocks 5] [--json F]

proxy_bench.py measures each mode for seconds at a time, so on a machine shared with other work the
load can change between two points by more than a fraction of a millisecond (issue 14's target is
0.05 ms). Here every mode sees the same moments: the drift falls on all alike, and what is left is the
difference of the paths. The client is Python (http.client), slower than wrk, but the same for every
mode; its time is in every figure alike. The set-up is proxy_bench.py's (SQLite, key and customer
budgets, spend logs, Lago on a C++ fake, bench/fake_openai upstream). Added p50 is each mode's p50
minus the first mode's; it is also given per block of the run (min–max), which says how steady it was.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="chat,anthropic-chat,messages")
    ap.add_argument("--requests", type=int, default=5000, help="per mode")
    ap.add_argument("--warmup", type=int, default=500, help="per mode, not measured")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if any(m not in pb.MODES for m in modes):
        raise SystemExit(f"interleave_modes: modes are {', '.join(pb.MODES)}")
    work = Path(tempfile.mkdtemp(prefix="llmbill-interleave-"))
    lat: dict[str, list[float]] = {m: [] for m in modes}
    load0 = Path("/proc/loadavg").read_text().split()[0]
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        s = pb.start_llmbill("llmbill-sqlite", upstream.port, f"sqlite:///{work}/llmbill.db", work / "sqlite")
        port = int(s.url.rsplit(":", 1)[1])
        conns = {m: http.client.HTTPConnection("127.0.0.1", port, timeout=60) for m in modes}
        bodies = {m: json.dumps(pb.BODIES[m]).encode() for m in modes}
        headers = {"content-type": "application/json", "authorization": s.auth}

        def one(mode: str) -> float:
            conn = conns[mode]
            t = time.perf_counter_ns()
            conn.request("POST", pb.MODES[mode].path, bodies[mode], headers)
            reply = conn.getresponse()
            reply.read()  # a stream is read to its end: the latency is the whole call's
            took = (time.perf_counter_ns() - t) / 1e6
            if reply.status != 200:
                raise RuntimeError(f"{mode}: HTTP {reply.status}")
            return took

        for _ in range(args.warmup):
            for m in modes:
                one(m)
        for i in range(args.requests):
            for m in (modes if i % 2 == 0 else modes[::-1]):
                lat[m].append(one(m))
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        shutil.rmtree(work, ignore_errors=True)
    load1 = Path("/proc/loadavg").read_text().split()[0]
    base = modes[0]
    size = max(1, args.requests // args.blocks)
    rows: list[dict[str, Any]] = []
    for m in modes:
        v = sorted(lat[m])
        blocks = [statistics.median(lat[m][k:k + size]) - statistics.median(lat[base][k:k + size])
                  for k in range(0, args.requests - size + 1, size)]
        rows.append({"mode": m, "requests": len(v), "p50_ms": statistics.median(v), "p90_ms": v[int(0.9 * len(v))],
                     "p99_ms": v[int(0.99 * len(v))],
                     "added_p50_ms": statistics.median(v) - statistics.median(lat[base]),
                     "added_p50_ms_blocks": [round(b, 4) for b in blocks]})
    print(f"llmbill-proxy (SQLite), {args.requests} requests per mode taking turns one at a time (c=1), after "
          f"{args.warmup} each to warm up; load {load0} before, {load1} after (1-minute average, 2 shared cores)")
    print(f"\n| mode | p50 ms | p90 ms | p99 ms | added p50 ms over {base} | per block of {size} (min – max) |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        b = r["added_p50_ms_blocks"]
        print(f"| {r['mode']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.2f} | {r['added_p50_ms']:+.3f} | "
              f"{min(b):+.3f} – {max(b):+.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "load_before": load0, "load_after": load1,
                                               "requests": args.requests, "warmup": args.warmup}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
