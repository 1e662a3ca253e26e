"""Hunts the rare whole-proxy stall behind a c=256 point's p99 (issue 18): the same point run again and
again, with bench/gc_probe's stall watch in each proxy, and every point's tail printed beside what the
loop's thread was doing in its long turns (stall_watch.py) and what PostgreSQL logged meanwhile
(checkpoints, autovacuum, statements over 50 ms, lock waits).

    .venv/bin/python bench/stall_hunt.py [--systems llmbill-sqlite,llmbill-pg] [--points 12]
        [--concurrency 256] [--mode chat] [--seconds 10] [--stall-ms 30] [--json F]
        [--neighbour] [--perf-trace]

--neighbour runs a disk-heavy neighbour during the points (16 MB written and fsynced, again and
again, on the filesystem of the proxies' spools), the kind of load under which a filesystem journal
operation waits for tenths of a second. --perf-trace lists, per point, the calls that wait on the
filesystem's journal (fsync, fdatasync, file creation, unlink, rename, truncate) that each proxy's
event-loop thread made, with their longest time (`perf trace`; the other threads' are counted apart).

A point's p99 from wrk is corrected for coordinated omission (wrk adds the requests a stalled
connection would have sent), so one stall of ~0.3 s in a 10 s point at c=256 is enough to put p99 over
3 x p50: what to look for is that one stall, which the watch times from inside the process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402

PROBE = Path(__file__).resolve().parent / "gc_probe"
PG_LOGGING = ("-c log_checkpoints=on -c log_autovacuum_min_duration=0 -c log_min_duration_statement=50 "
              "-c log_lock_waits=on -c deadlock_timeout=50ms -c log_line_prefix='%m [%p] '")


def stalls_between(log: Path, t0: float, t1: float) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    found = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [s for s in found if t0 <= s["t"] <= t1]


def pg_lines_between(log: Path | None, t0: float, t1: float) -> list[str]:
    """Server log lines stamped inside [t0, t1] (the prefix's %m: local time with milliseconds)."""
    if log is None or not log.exists():
        return []
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + float(line[19:23])
        except ValueError:
            continue
        if t0 <= stamp <= t1:
            lines.append(line[:240])
    return lines


NEIGHBOUR = """
import os, sys, time
path, block = sys.argv[1], b"n" * (1 << 20)
while True:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for _ in range(16):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    time.sleep(0.2)
"""
JOURNAL_CALLS = "fdatasync,fsync,openat,unlink,unlinkat,rename,renameat2,ftruncate,fallocate"


def start_trace(pids: list[int], out: Path) -> pb.subprocess.Popen[bytes]:
    return pb.subprocess.Popen(["perf", "trace", "-p", ",".join(map(str, pids)), "-e", JOURNAL_CALLS,
                                "-o", str(out)], stdout=pb.subprocess.DEVNULL, stderr=pb.subprocess.DEVNULL)


def read_trace(proc: pb.subprocess.Popen[bytes], out: Path, loops: set[int]) -> dict[str, Any]:
    """Per call: count and longest ms on the event-loop threads (tid = a process's pid), and count
    on the other threads. A line: ` 126306.100 (28.718 ms): llmbill-proxy/32208 fdatasync(fd: 35) = 0`."""
    proc.send_signal(pb.signal.SIGINT)
    proc.wait(timeout=30)
    loop: dict[str, list[float]] = {}
    other: dict[str, int] = {}
    for line in out.read_text(errors="replace").splitlines():
        try:
            ms = float(line.split("(", 1)[1].split(" ms)", 1)[0])
            who, call = line.split("): ", 1)[1].split(None, 1)
            tid, name = int(who.rsplit("/", 1)[1]), call.split("(", 1)[0]
        except (IndexError, ValueError):
            continue
        if tid in loops:
            loop.setdefault(name, []).append(ms)
        else:
            other[name] = other.get(name, 0) + 1
    return {"loop": {k: {"count": len(v), "max_ms": round(max(v), 2)} for k, v in sorted(loop.items())},
            "other_threads": other}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", default="llmbill-pg")
    ap.add_argument("--points", type=int, default=12)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--mode", default="chat", choices=["chat", "stream"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--stall-ms", type=float, default=30.0)
    ap.add_argument("--json", help="write every point with its stalls here")
    ap.add_argument("--neighbour", action="store_true", help="a disk-heavy neighbour during the points")
    ap.add_argument("--perf-trace", action="store_true", help="the loop threads' filesystem-journal calls")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmbill-stall-hunt-"))
    wanted = args.systems.split(",")
    os.environ["PYTHONPATH"] = str(PROBE)
    os.environ["BENCH_STALL_MS"] = str(args.stall_ms)
    systems: list[pb.System] = []
    logs: dict[str, Path] = {}
    pg_stop, pg_log = None, None
    points: list[dict[str, Any]] = []
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        for name in wanted:
            logs[name] = work / f"{name}-stalls.jsonl"
            os.environ["BENCH_STALL_LOG"] = str(logs[name])
            if name == "llmbill-sqlite":
                systems.append(pb.start_llmbill(name, upstream.port, f"sqlite:///{work}/sqlite/llmbill.db",
                                                work / "sqlite"))
            elif name == "llmbill-pg":
                from pg import create_database, start_postgres

                url, pg_stop = start_postgres(PG_LOGGING)
                port = int(url.rsplit(":", 1)[1].split("/")[0])
                pg_log = max((p for p in Path("/dev/shm").glob("llmbill-pg-*/server.log")),
                             key=lambda p: p.stat().st_mtime, default=None)
                s = pb.start_llmbill(name, upstream.port, create_database(url, "llmbill_hunt"), work / "pg")
                s.db_pids = lambda port=port: pb.postgres_pids(port)  # type: ignore[misc]
                systems.append(s)
            else:
                raise SystemExit(f"stall_hunt: unknown system {name}")
        body = work / "body.json"
        body.write_text(json.dumps(pb.BODIES[args.mode]))
        for s in systems:
            pb.wrk(s.url, s.auth, body, 8, 2, work / "warm.json", pb.endpoint(s, args.mode))
            pb.settle(s)
        if args.neighbour:
            pb.Child("disk neighbour", [sys.executable, "-c", NEIGHBOUR, str(work / "neighbour.bin")])
        for i in range(args.points):
            for s in systems:
                trace = start_trace(s.pids(), work / "trace.txt") if args.perf_trace else None
                if trace is not None:
                    time.sleep(1.0)  # perf attaches
                t0 = time.time()
                p = pb.measure(s, args.mode, args.concurrency, args.seconds, work, body)
                t1 = time.time()
                if trace is not None:
                    p["journal_calls"] = read_trace(trace, work / "trace.txt", set(s.pids()))
                pb.settle(s)
                p["stalls"] = stalls_between(logs[s.name], t0, t1)
                p["pg_log"] = pg_lines_between(pg_log, t0, t1) if s.name == "llmbill-pg" else []
                points.append(p)
                ratio = p["p99_ms"] / p["p50_ms"] if p["p50_ms"] else 0.0
                worst = max(p["stalls"], key=lambda x: x["lag_ms"], default=None)
                pb.log(f"{i:2} {s.name:15} p50 {p['p50_ms']:7.2f} p99 {p['p99_ms']:7.2f} max {p['max_ms']:7.1f} "
                       f"ratio {ratio:4.2f}{' BREACH' if ratio > 3 else ''}  stalls {len(p['stalls'])}"
                       + (f", worst {worst['lag_ms']} ms (cpu {worst['cpu_ms']}, runq {worst['runq_ms']}, "
                          f"steal {worst['steal_ms']})" if worst else ""))
                for st in sorted(p["stalls"], key=lambda x: -x["lag_ms"])[:3]:
                    for n, stack in st["stacks"][:3]:
                        pb.log(f"     {st['lag_ms']:7.1f} ms  {n:3}x {stack[:300]}")
                if p["tcp"]:
                    pb.log(f"     tcp: {p['tcp']}")
                if "journal_calls" in p:
                    pb.log(f"     loop thread: {p['journal_calls']['loop'] or 'none'}; "
                           f"other threads: {p['journal_calls']['other_threads']}")
                for line in p["pg_log"][:12]:
                    pb.log(f"     pg: {line}")
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps({"points": points}, indent=1))
        for c in reversed(pb.ALL):
            c.stop()
        if pg_stop is not None:
            pg_stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
