"""What idle polling (general_settings.idle_poll_us, proxy/idle_poll.py) costs where it cannot help:
one request at a time to an upstream slower than the window. Polling is adaptive (a window opens
only when the last wait of its kind fitted in it), so after the first slow reply no window should
open after an upstream write; the client's next request follows at once and is still polled for.

    .venv/bin/python bench/idle_poll_cost.py [--delay-ms 20] [--calls 300] [--rounds 3] [--window-us 200]

Two llmbill-proxy processes set up as proxy_bench.py's llmbill-sqlite (key and customer budgets,
spend, Lago on a C++ fake), one with idle polling and one without, in front of the tests' Python
fake upstream answering each call after --delay-ms; a plain client sends --calls sequential chat
calls to each in turn, --rounds times (order alternating). Reported per round: the proxy process's
CPU a call (utime+stime from /proc) and its wall time a call, for both, and the difference. Before
polling was adaptive a window was paid after every upstream write here (+217 µs a call at 200 µs);
now the difference should be within the run-to-run spread.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import proxy_bench as pb  # noqa: E402
from tests.python.fakes.openai_upstream import FakeOpenAI  # noqa: E402


def sequential(s: pb.System, calls: int) -> tuple[float, float]:
    """(proxy CPU seconds a call, wall seconds a call) over `calls` sequential chat calls."""
    host, port = s.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    body = json.dumps(pb.BODIES["chat"])
    headers = {"authorization": s.auth, "content-type": "application/json"}
    cpu0, t0 = pb.cpu_seconds(s.pids()), time.perf_counter()
    for _ in range(calls):
        conn.request("POST", "/chat/completions", body, headers)
        reply = conn.getresponse()
        reply.read()
        if reply.status != 200:
            raise SystemExit(f"{s.name}: {reply.status}")
    wall = time.perf_counter() - t0
    cpu = pb.cpu_seconds(s.pids()) - cpu0
    conn.close()
    return cpu / calls, wall / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window-us", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmbill-idle-poll-cost-"))
    with FakeOpenAI() as upstream:
        upstream.delay = args.delay_ms / 1000
        off = pb.start_llmbill("off", upstream.port, f"sqlite:///{work}/off.db", work / "off",
                               general={"idle_poll_us": 0})
        on = pb.start_llmbill("on", upstream.port, f"sqlite:///{work}/on.db", work / "on",
                              general={"idle_poll_us": args.window_us})
        try:
            for s in (off, on):
                sequential(s, 20)  # warm-up
            diffs = []
            print(f"sequential chat calls, upstream {args.delay_ms:g} ms, window {args.window_us} µs; "
                  f"load {open('/proc/loadavg').read().split()[0]}")
            print("| round | off CPU µs/call | on CPU µs/call | on − off | off wall ms | on wall ms |")
            print("|---:|---:|---:|---:|---:|---:|")
            for r in range(args.rounds):
                got = {}
                for s in ((off, on) if r % 2 == 0 else (on, off)):
                    got[s.name] = sequential(s, args.calls)
                d = (got["on"][0] - got["off"][0]) * 1e6
                diffs.append(d)
                print(f"| {r + 1} | {got['off'][0] * 1e6:.0f} | {got['on'][0] * 1e6:.0f} | {d:+.0f} | "
                      f"{got['off'][1] * 1e3:.2f} | {got['on'][1] * 1e3:.2f} |", flush=True)
            print(f"\nmedian on − off: {statistics.median(diffs):+.0f} µs of CPU a call "
                  f"(bound: 2 x {args.window_us} = {2 * args.window_us} µs)")
        finally:
            for s in (on, off):
                for child in (s.proc, s.lago):
                    if child is not None:
                        child.stop(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
