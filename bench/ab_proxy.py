"""Two commits' llmbill-proxy side by side in one run: the before/after of a change to the request path.

    .venv/bin/python bench/ab_proxy.py REV_A REV_B [--rounds 3] [--concurrency 1,64] [--seconds 3] [--mode chat]

Each revision's python/llmbill is taken with `git archive` into a temporary directory, beside the
C++ extension installed in .venv (so only Python changes are compared: rebuild first for a C++ one),
and run as its own llmbill-proxy on SQLite, set up as in proxy_bench.py (key and customer budgets,
spend, Lago on a C++ fake), in front of the same bench/fake_openai. The points are interleaved, A then
B then B then A, round after round, so the machine's drifting load falls on both alike; the medians
over the rounds are printed, with B's ratio to A.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402


def tree(rev: str, into: Path) -> Path:
    """python/llmbill of `rev` plus the installed extension; returns the directory for PYTHONPATH."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(pb.ROOT), "archive", rev, "python/llmbill"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    site = subprocess.run([str(pb.ROOT / ".venv" / "bin" / "python"), "-c",
                           "import llmbill, os; print(os.path.dirname(llmbill.__file__))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    for so in Path(site).glob("_core*.so"):
        shutil.copy(so, into / "python" / "llmbill" / so.name)
    return into / "python"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,64")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--mode", default="chat", choices=sorted(pb.BODIES))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmbill-ab-"))
    ladder = [int(c) for c in args.concurrency.split(",")]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        body = work / "body.json"
        body.write_text(json.dumps(pb.BODIES[args.mode]))
        systems = []
        for label, rev in (("A", args.a), ("B", args.b)):
            path = tree(rev, work / label)
            os.environ["PYTHONPATH"] = str(path)
            try:
                s = pb.start_llmbill(f"{label} {rev}", upstream.port, f"sqlite:///{work}/{label}.db", work / f"{label}-run",
                                     anthropic=pb.MODES[args.mode].pass_through is not None)
            finally:
                del os.environ["PYTHONPATH"]
            pb.wrk(s.url, s.auth, body, 8, 2, work / "warm.json", pb.MODES[args.mode].path)
            systems.append(s)
        for r in range(args.rounds):
            for conns in ladder:
                for s in (systems if r % 2 == 0 else systems[::-1]):
                    p = pb.measure(s, args.mode, conns, args.seconds, work, body)
                    pb.settle(s)
                    results.setdefault((s.name, conns), []).append(p)
        print(f"{args.mode}, {args.rounds} rounds of {args.seconds:g} s per point, interleaved; medians")
        print("| c | revision | req/s | p50 ms | p99 ms | CPU ms/req | errors |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for conns in ladder:
            medians = []
            for s in systems:
                ps = results[(s.name, conns)]
                m = {k: statistics.median(p[k] for p in ps) for k in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req")}
                medians.append(m)
                print(f"| {conns} | {s.name} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.2f} | "
                      f"{m['cpu_ms_per_req']:.3f} | {sum(p['errors'] for p in ps)} |")
            a, b = medians
            print(f"| {conns} | B ÷ A | {b['rps'] / a['rps']:.2f}x | {b['p50_ms'] / a['p50_ms']:.2f}x | "
                  f"{b['p99_ms'] / a['p99_ms']:.2f}x | {b['cpu_ms_per_req'] / a['cpu_ms_per_req']:.2f}x | |")
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
