"""Profiles llmbill-proxy's hot path with py-spy: the proxy on SQLite (keys, budgets, spend, Lago on,
as in proxy_bench.py) in front of bench/fake_openai, wrk at a fixed concurrency, py-spy recording
the proxy process for the same time.

    .venv/bin/python bench/profile_proxy.py [--seconds 15] [--concurrency 64] [--mode chat|stream|anthropic-chat|messages|...]
        [--native] [--out-dir bench/results/profiles] [--label before]

Writes <label>.svg (flamegraph), <label>.txt (collapsed stacks) and <label>-top.md (the top entries
by own time and by total time, as shares of all samples) and prints the top tables. py-spy comes
from PyPI (`pip install py-spy` into .venv; bench/run --profile installs it); run as root.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402


def frame_name(frame: str) -> str:
    """'handler (llmbill/proxy/app.py:42)' → 'handler (proxy/app.py)': one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    path = path.replace("llmbill/proxy/", "proxy/")
    return f"{name} ({path})" if path else name


COMPONENTS = (  # (name, markers in a leaf frame), first match wins
    ("aiohttp client", ("aiohttp/", "multidict", "yarl/", "aiohappyeyeballs")),
    ("llmbill upstream client (httpclient.py, upstream.py)", ("proxy/httpclient.py", "proxy/upstream.py")),
    ("uvicorn (HTTP server, socket writes)", ("uvicorn/",)),
    ("prometheus_client", ("prometheus_client",)),
    ("llmbill request path (routes, guards, spend, observe; C++ calls included)", ("proxy/", "llmbill/")),
    ("event loop (uvloop, asyncio)", ("Runner.run", "asyncio/")),
)


def component(leaf: str) -> str:
    for name, markers in COMPONENTS:
        if any(m in leaf for m in markers):
            return name
    return "other (uuid, dataclasses, json, ...)"


def top_tables(collapsed: Path, rows: int = 25) -> tuple[str, dict[str, list[tuple[str, float]]]]:
    """Tables over the event loop's thread only: it is the one that serves requests (and the limit).
    Other threads (the SQLite executor) are counted apart: py-spy samples them as busy while they wait
    for the GIL, so their share overstates their CPU (per-thread CPU from /proc says ~35 µs per call)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    samples = others = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if "_bootstrap (threading.py" in stack:
            others += n
            continue
        samples += n
        frames = [frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        own[frames[-1]] += n
        parts[component(frames[-1])] += n
        for f in set(frames):
            total[f] += n
    out: dict[str, list[tuple[str, float]]] = {
        "own": [(f, 100.0 * n / samples) for f, n in own.most_common(rows)],
        "total": [(f, 100.0 * n / samples) for f, n in total.most_common(rows)],
    }
    lines = [f"{samples} samples of the event loop's thread (and {others} of other threads, left out)", "",
             "| component (by the frame the CPU was in) | % of samples |", "|---|---:|"]
    lines += [f"| {name} | {100.0 * n / samples:.1f} |" for name, n in parts.most_common()]
    lines.append("")
    for kind, title in (("own", "own time (where the CPU was)"), ("total", "total time (the function and what it called)")):
        lines += [f"| {title} | % of samples |", "|---|---:|"]
        lines += [f"| `{f}` | {pct:.1f} |" for f, pct in out[kind]]
        lines.append("")
    return "\n".join(lines), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--mode", default="chat", choices=sorted(pb.BODIES))
    ap.add_argument("--native", action="store_true", help="py-spy --native (C and C++ frames too)")
    ap.add_argument("--out-dir", default=str(pb.ROOT / "bench" / "results" / "profiles"))
    ap.add_argument("--label", default=time.strftime("%Y-%m-%d-%H%M%S"))
    ap.add_argument("--database", default="sqlite", choices=["sqlite", "pg"])
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(pb.ROOT / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("profile_proxy: py-spy not found (.venv/bin/python -m pip install py-spy)")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llmbill-profile-"))
    pg_stop = None
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        if args.database == "pg":
            from pg import create_database, start_postgres

            url, pg_stop = start_postgres()
            db_url = create_database(url, "llmbill_profile")
        else:
            db_url = f"sqlite:///{work}/llmbill.db"
        s = pb.start_llmbill("llmbill", upstream.port, db_url, work / "proxy")
        body = work / "body.json"
        body.write_text(json.dumps(pb.BODIES[args.mode]))
        path = pb.MODES[args.mode].path
        pb.wrk(s.url, s.auth, body, 8, 2, work / "warm.json", path)
        assert s.proc is not None
        raw = out_dir / f"{args.label}.txt"
        svg = out_dir / f"{args.label}.svg"
        spy_args = [spy, "record", "--pid", str(s.proc.pid), "--duration", str(int(args.seconds)), "--rate", "200"]
        spy_args += ["--native"] if args.native else ["--nonblocking"]  # --native must pause the process
        # Two recorders on the same run (--nonblocking: the proxy is never paused): collapsed stacks for
        # the tables, the flamegraph for the eye.
        recorders = [subprocess.Popen(spy_args + fmt, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for fmt in (["--format", "raw", "--output", str(raw)], ["--output", str(svg)])]
        time.sleep(0.5)
        cpu0 = pb.cpu_seconds(s.pids())
        r = pb.wrk(s.url, s.auth, body, args.concurrency, args.seconds, work / "wrk.json", path)
        cpu = pb.cpu_seconds(s.pids()) - cpu0
        for rec in recorders:
            _, err = rec.communicate(timeout=args.seconds + 60)
            if rec.returncode != 0:
                raise SystemExit(f"py-spy failed: {err}")
        text, _ = top_tables(raw)
        rps = r["requests"] / (r["duration_us"] / 1e6)
        head = (f"llmbill-proxy ({args.database}), {args.mode}, wrk c={args.concurrency} for {args.seconds:.0f} s: "
                f"{rps:,.0f} req/s, p50 {r['latency_us']['p50'] / 1000:.2f} ms, p99 {r['latency_us']['p99'] / 1000:.2f} ms, "
                f"{cpu * 1000 / max(1, r['requests']):.3f} ms CPU per request, errors {sum(r['errors'].values())}")
        (out_dir / f"{args.label}-top.md").write_text(head + "\n\n" + text + "\n")
        print(head + "\n\n" + text)
        print(f"flamegraph: {svg}\ncollapsed stacks: {raw}", file=sys.stderr)
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        if pg_stop is not None:
            pg_stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
