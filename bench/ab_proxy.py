"""Two commits' llmbill-proxy side by side in one run: the before/after of a change to the request path.

    .venv/bin/python bench/ab_proxy.py REV_A REV_B [--rounds 9] [--concurrency 1,64] [--seconds 3] [--mode chat]
        [--env-a NAME=VALUE ...] [--env-b NAME=VALUE ...] [--general-a KEY=VALUE ...] [--general-b KEY=VALUE ...]
        [--venv-a DIR] [--venv-b DIR] [--gc-probe]
        [--no-direct] [--json F]

Each revision's python/llmbill is taken with `git archive` into a temporary directory, beside the
C++ extension installed in .venv (so only Python changes are compared: rebuild first for a C++ one),
and run as its own llmbill-proxy on SQLite, set up as in proxy_bench.py (key and customer budgets,
spend, Lago on a C++ fake), in front of the same bench/fake_openai. REV_A and REV_B may be the same
commit with a different environment (--env-a / --env-b) or general_settings (--general-a / --general-b,
JSON values: e.g. idle_poll_us=200, spend_flush_interval=0.1): the A/B of a setting; or with another
virtualenv (--venv-a / --venv-b: its interpreter, its packages and its installed extension).

The points are interleaved, A then B in even rounds and B then A in odd ones, each concurrency in
turn, so the machine's drifting load falls on both alike; the direct path (wrk → the fake) is measured
just before each pair, so "added" latency is read against the same moment. A shared 2-core machine
moves absolute figures by 2x from one minute to the next: what this program reports as the result is
the **median over the rounds of the per-round difference B − A** (and ratio B ÷ A), with the spread
(lowest and highest round) and how many rounds B came out lower, beside the 1-minute load average
each point began under. Medians of each side are printed too, for scale, and the tails of every
round (a stall that comes now and then shows there, not in a median).

--gc-probe puts bench/gc_probe on both proxies' PYTHONPATH: every garbage collection is logged with
its generation and wall time, and each point reports collections and pause time per 10,000 calls.
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
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402

GC_PROBE = Path(__file__).resolve().parent / "gc_probe"
METRICS = (("p50_ms", "p50 ms", 3), ("p99_ms", "p99 ms", 2), ("cpu_ms_per_req", "CPU ms/req", 3), ("rps", "req/s", 0))


def tree(rev: str, into: Path, venv: Path = pb.ROOT / ".venv") -> Path:
    """python/llmbill of `rev` plus the extension installed in `venv`; returns the directory for PYTHONPATH."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(pb.ROOT), "archive", rev, "python/llmbill"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import llmbill, os; print(os.path.dirname(llmbill.__file__))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    for so in Path(site).glob("_core*.so"):
        shutil.copy(so, into / "python" / "llmbill" / so.name)
    return into / "python"


def gc_window(log: Path, t0: float, t1: float, calls: int) -> dict[str, Any]:
    """The collections logged between t0 and t1 (wall), per 10,000 calls."""
    rows = []
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line being written
            if t0 <= r["t"] <= t1:
                rows.append(r)
    per = 10_000 / max(1, calls)
    pauses = sorted(r["ms"] for r in rows)
    return {
        "collections_per_10k": {str(g): sum(1 for r in rows if r["gen"] == g) * per for g in (0, 1, 2)},
        "pause_ms_per_10k": sum(pauses) * per,
        "full_pause_ms_per_10k": sum(r["ms"] for r in rows if r["gen"] == 2) * per,
        "max_pause_ms": pauses[-1] if pauses else 0.0,
        "pauses_over_5ms": sum(1 for p in pauses if p > 5),
        "pauses_over_20ms": sum(1 for p in pauses if p > 20),
        "collections": len(rows),
    }


def env_pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"ab_proxy: --env-a/--env-b/--general-a/--general-b take NAME=VALUE, not {item!r}")
        out[name] = value
    return out


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):+.{digits}f} ({min(values):+.{digits}f} … {max(values):+.{digits}f})"


def report(args: argparse.Namespace, ladder: list[int], systems: list[pb.System],
           points: list[dict[str, Any]]) -> str:
    a, b = (s.name for s in systems)
    by = {(p["system"], p["concurrency"], p["round"]): p for p in points}
    rounds = range(args.rounds)
    loads = [p["load1"] for p in points]
    out = [f"{args.mode}, {args.rounds} interleaved rounds of {args.seconds:g} s per point; "
           f"A = {a}, B = {b}; 1-minute load {min(loads):.1f}–{max(loads):.1f} (median {statistics.median(loads):.1f})", ""]
    out += ["Medians of each side:", "",
            "| c | revision | req/s | p50 ms | p99 ms | CPU ms/req | errors |", "|---:|---|---:|---:|---:|---:|---:|"]
    for conns in ladder:
        for name in (a, b):
            ps = [by[(name, conns, r)] for r in rounds]
            m = {k: statistics.median(p[k] for p in ps) for k, _, _ in METRICS}
            out.append(f"| {conns} | {name} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.2f} | "
                       f"{m['cpu_ms_per_req']:.3f} | {sum(p['errors'] for p in ps)} |")
    out += ["", "Per-round B − A: median (lowest … highest round); B ÷ A: median of the per-round ratios; "
            "rounds where B was lower:", "",
            "| c | figure | B − A | B ÷ A | B lower |", "|---:|---|---|---:|---:|"]
    for conns in ladder:
        for key, label, digits in METRICS:
            diffs = [by[(b, conns, r)][key] - by[(a, conns, r)][key] for r in rounds]
            ratios = [by[(b, conns, r)][key] / by[(a, conns, r)][key] for r in rounds if by[(a, conns, r)][key]]
            lower = sum(1 for d in diffs if d < 0)
            out.append(f"| {conns} | {label} | {spread(diffs, digits)} | {statistics.median(ratios):.2f}x | "
                       f"{lower}/{len(diffs)} |")
        if args.direct:
            direct = [by[("direct", conns, r)]["p50_ms"] for r in rounds]
            added = {name: [by[(name, conns, r)]["p50_ms"] - by[("direct", conns, r)]["p50_ms"] for r in rounds]
                     for name in (a, b)}
            out.append(f"| {conns} | added p50 ms over direct (direct p50 {statistics.median(direct):.3f}) | "
                       f"A {spread(added[a], 3)}; B {spread(added[b], 3)} | | |")
    out += ["", "Tails, every round: rounds with p99 over 3 × p50 (the target's breach), the highest p99 and the "
            "longest call of any round:", "",
            "| c | revision | p99 > 3 × p50 | highest p99 ms | longest call ms |", "|---:|---|---:|---:|---:|"]
    for conns in ladder:
        for name in (a, b):
            ps = [by[(name, conns, r)] for r in rounds]
            out.append(f"| {conns} | {name} | {sum(1 for p in ps if p['p99_ms'] > 3 * p['p50_ms'])}/{len(ps)} | "
                       f"{max(p['p99_ms'] for p in ps):.1f} | {max(p['max_ms'] for p in ps):.1f} |")
    if args.gc_probe:
        out += ["", "Garbage collections per 10,000 calls (median over rounds; max pause: the highest of any round):", "",
                "| c | revision | gen 0 | gen 1 | gen 2 | pause ms | of which gen 2 | max pause ms | pauses > 5 ms / > 20 ms (all rounds) |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for conns in ladder:
            for name in (a, b):
                gs = [by[(name, conns, r)]["gc"] for r in rounds]
                med = {g: statistics.median(x["collections_per_10k"][g] for x in gs) for g in ("0", "1", "2")}
                out.append(f"| {conns} | {name} | {med['0']:.0f} | {med['1']:.1f} | {med['2']:.2f} | "
                           f"{statistics.median(x['pause_ms_per_10k'] for x in gs):.1f} | "
                           f"{statistics.median(x['full_pause_ms_per_10k'] for x in gs):.1f} | "
                           f"{max(x['max_pause_ms'] for x in gs):.1f} | "
                           f"{sum(x['pauses_over_5ms'] for x in gs)} / {sum(x['pauses_over_20ms'] for x in gs)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--concurrency", default="1,64")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--mode", default="chat", choices=sorted(pb.BODIES))
    ap.add_argument("--env-a", action="append", default=[], metavar="NAME=VALUE", help="environment of A's proxy")
    ap.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE", help="environment of B's proxy")
    ap.add_argument("--general-a", action="append", default=[], metavar="KEY=VALUE", help="general_settings of A's config (a JSON value)")
    ap.add_argument("--general-b", action="append", default=[], metavar="KEY=VALUE", help="general_settings of B's config (a JSON value)")
    ap.add_argument("--venv-a", type=Path, default=pb.ROOT / ".venv", help="the virtualenv (interpreter) A runs in")
    ap.add_argument("--venv-b", type=Path, default=pb.ROOT / ".venv", help="the virtualenv (interpreter) B runs in")
    ap.add_argument("--gc-probe", action="store_true", help="log the proxies' collections (bench/gc_probe)")
    ap.add_argument("--no-direct", dest="direct", action="store_false", help="leave out the direct path's points")
    ap.add_argument("--json", help="every point, raw")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmbill-ab-"))
    ladder = [int(c) for c in args.concurrency.split(",")]
    points: list[dict[str, Any]] = []
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        direct = pb.System("direct", f"http://127.0.0.1:{upstream.port}/v1", "", None)
        body = work / "body.json"
        body.write_text(json.dumps(pb.BODIES[args.mode]))
        systems = []
        gc_logs: dict[str, Path] = {}
        for label, rev, extra, general, venv in (
                ("A", args.a, env_pairs(args.env_a), env_pairs(args.general_a), args.venv_a),
                ("B", args.b, env_pairs(args.env_b), env_pairs(args.general_b), args.venv_b)):
            path = tree(rev, work / label, venv)
            name = f"{label} {rev}" + "".join(f" {k}={v}" for k, v in {**extra, **general}.items())
            if venv != pb.ROOT / ".venv":
                name += f" ({venv})"
            saved = dict(os.environ)
            os.environ["PYTHONPATH"] = str(path) + (os.pathsep + str(GC_PROBE) if args.gc_probe else "")
            os.environ.update(extra)
            if args.gc_probe:
                gc_logs[name] = work / f"{label}-gc.jsonl"
                os.environ["BENCH_GC_PROBE_LOG"] = str(gc_logs[name])
            try:
                s = pb.start_llmbill(name, upstream.port, f"sqlite:///{work}/{label}.db", work / f"{label}-run",
                                     anthropic=pb.MODES[args.mode].pass_through is not None, venv=venv,
                                     general={k: json.loads(v) for k, v in general.items()})
            finally:
                os.environ.clear()
                os.environ.update(saved)
            pb.wrk(s.url, s.auth, body, 8, 2, work / "warm.json", pb.MODES[args.mode].path)
            systems.append(s)
        for r in range(args.rounds):
            for conns in ladder:
                order = ([direct] if args.direct else []) + (systems if r % 2 == 0 else systems[::-1])
                for s in order:
                    t0 = time.time()
                    p = pb.measure(s, args.mode, conns, args.seconds, work, body)
                    t1 = time.time()
                    p["round"] = r
                    if s.name in gc_logs:
                        p["gc"] = gc_window(gc_logs[s.name], t0, t1, p["requests"])
                    pb.settle(s)
                    points.append(p)
                    pb.log(f"round {r + 1}/{args.rounds} c={conns} {s.name}: p50 {p['p50_ms']:.3f} ms, "
                           f"p99 {p['p99_ms']:.2f} ms, load {p['load1']:.2f}")
        text = report(args, ladder, systems, points)
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "points": points, "table": text}, indent=1, default=str))
        errors = sum(p["errors"] for p in points if p["system"] != "direct")
        return 1 if errors else 0
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
