"""Scenario 4 of ../shared/docs/benchmarks.md: ~1,000 streams open at once through llmbill-proxy, beside
the same streams on the direct path (client → fake upstream), in the same run.

    .venv/bin/python bench/stream_bench.py --out R.json [--quick] [--streams 1000] [--ramp 2]
        [--chunks 40] [--interval-ms 100] [--rounds 2] [--gc-probe] [--gc-freeze] [--keep]

Processes, all on this machine: bench/fake_stream (C++, one epoll thread, N chunks one interval apart
per request, reporting how late it sent), llmbill-proxy on SQLite set up as in proxy_bench.py (a
virtual key and a customer with budgets, spend logs, Lago on) with a bench/fake_lago that writes every
event's transaction_id to a file, and bench/stream_load.py, the load generator (its own process,
asyncio on uvloop, every read timestamped). Each round runs the direct path and the proxy one after
the other (the order alternates between rounds), each with the same streams; the figures pool the
rounds' samples.

Reported per path: time to first byte (p50, p99), the gap between consecutive content chunks (p50,
p99, max), errors, streams open at once; for the proxy the added TTFB and added gap (its percentile
minus the direct path's), CPU per stream (utime + stime of its process tree over the round, from
/proc, / streams), its RSS (VmHWM at the end of each round, start-up included); and the evidence
that neither the generator nor the fake is the limit: the direct path's gap p50 against the
configured interval, the generator's CPU share and loop lag, the fake's send lateness.

Billing check, after the proxy stopped cleanly: every stream that went through the proxy (warm-up
included) must have exactly one Lago event (by transaction_id, the call id the proxy returned in
x-litellm-call-id) and exactly one spend-log row, and there must be none for anything else.
Any error, a missing or duplicated bill, makes the run invalid (exit 1). `uptime`'s load is
recorded before and after every round: figures taken on a busy machine say so.

Where the tail comes from: the generator reports when late chunks (over 1.2 x interval) arrived, by
50 ms window from the round's first stream; a window holding many streams' late chunks is a stall of
the whole proxy, not of one stream. With --gc-probe the proxy runs with bench/gc_probe on its
PYTHONPATH (a sitecustomize that logs every garbage collection, nothing else), and each round lists
the proxy's collections over 5 ms, placed on the same time axis. --gc-freeze (an experiment, implies
--gc-probe) has the proxy call gc.freeze() after the warm-up (SIGUSR1 to the same sitecustomize): what
keeping start-up objects out of full collections would do to the tail.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402
from stream_load import schedstat  # noqa: E402

TARGETS = {"added_ttfb_p99_ms": 10.0, "added_gap_p99_ms": 5.0, "peak_rss_mb": 250.0, "errors": 0}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def fake_stats(port: int) -> dict[str, Any]:
    _, stats = pb.http("GET", f"http://127.0.0.1:{port}/_fake/stats")
    return stats if isinstance(stats, dict) else {}


def load(url: str, auth: str, streams: int, ramp: float, chunks: int, interval_ms: int, out: Path,
         watch: list[int] | None = None) -> dict[str, Any]:
    """Runs stream_load.py; with `watch` (pids), samples their main threads' CPU and run-queue wait every
    0.5 s meanwhile: result["timeline"] = [[s, CPU share of a core, run-queue wait share], ...] (from
    this process, so the generator's loop is not disturbed)."""
    argv = [sys.executable, str(pb.ROOT / "bench" / "stream_load.py"), "--url", url, "--auth", auth,
            "--streams", str(streams), "--ramp", str(ramp), "--chunks", str(chunks), "--interval-ms", str(interval_ms),
            "--out", str(out)]
    out.unlink(missing_ok=True)
    timeline: list[list[float]] = []
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        start = last_t = time.monotonic()
        last = sched(watch or [])
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - start > ramp + chunks * interval_ms / 1000 + 180:
                    proc.kill()
            if watch:
                now_t, now = time.monotonic(), sched(watch)
                dt = now_t - last_t
                timeline.append([round(now_t - start, 2), round((now[0] - last[0]) * 1e-9 / dt, 3),
                                 round((now[1] - last[1]) * 1e-9 / dt, 3)])
                last_t, last = now_t, now
        err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"stream_load.py failed ({proc.returncode}): {err.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["timeline"] = timeline
    return result


def sched(pids: list[int]) -> tuple[int, int]:
    """(ns on a CPU, ns ready but waiting on a run queue), summed over the main threads of `pids` (the
    proxy's event loop, the fake's epoll loop: the threads whose delays the streams see)."""
    run = wait = 0
    for p in pids:
        r, w = schedstat(p, main_only=True)
        run, wait = run + r, wait + w
    return run, wait


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Percentiles of pooled samples (ms)."""
    out: dict[str, Any] = {}
    for name, values in samples.items():
        for p in (50, 90, 99, 99.9):
            out[f"{name}_p{str(p).replace('.', '_')}_ms"] = pct(values, p)
        out[f"{name}_max_ms"] = max(values) if values else None
        out[f"{name}_samples"] = len(values)
    return out


def run_round(path: str, url: str, auth: str, args: argparse.Namespace, proxy: pb.System, upstream: pb.Child,
              work: Path) -> dict[str, Any]:
    pb.settle(proxy)
    pb.http("POST", f"http://127.0.0.1:{upstream.port}/_fake/reset")
    before = loadavg()
    pids = proxy.pids()
    cpu0, fake0 = pb.cpu_seconds(pids), pb.cpu_seconds([upstream.pid])
    sched0, fake_sched0 = sched(pids[:1]), sched([upstream.pid])
    r = load(url, auth, args.streams, args.ramp, args.chunks, args.interval_ms, work / "load.json",
             pids[:1] if path != "direct" else [upstream.pid])
    pids = proxy.pids()
    cpu, fake_cpu = pb.cpu_seconds(pids) - cpu0, pb.cpu_seconds([upstream.pid]) - fake0
    sched1, fake_sched1 = sched(pids[:1]), sched([upstream.pid])
    stats = fake_stats(upstream.port)
    r.update(path=path, load_before=before, load_after=loadavg(), fake=stats,
             fake_cpu_share=fake_cpu / r["wall_s"] if r["wall_s"] else None,
             loadgen_cpu_share=r["loadgen_cpu_s"] / r["wall_s"] if r["wall_s"] else None,
             loadgen_wait_share=r["loadgen_runqueue_wait_s"] / r["wall_s"] if r["wall_s"] else None,
             fake_wait_share=(fake_sched1[1] - fake_sched0[1]) * 1e-9 / r["wall_s"] if r["wall_s"] else None)
    if path != "direct":
        r.update(proxy_cpu_s=cpu, proxy_cpu_ms_per_stream=cpu * 1000 / args.streams,
                 proxy_wait_share=(sched1[1] - sched0[1]) * 1e-9 / r["wall_s"] if r["wall_s"] else None,
                 proxy_cpu_share=cpu / r["wall_s"] if r["wall_s"] else None,
                 proxy_rss_mb=pb.status_kb(pids, "VmRSS") / 1024, proxy_peak_rss_mb=pb.status_kb(pids, "VmHWM") / 1024)
    ttfb, gaps = r["ttfb_ms"], r["gaps_ms"]
    pb.log(f"{path:15} {args.streams} streams: ttfb p50 {pct(ttfb, 50) or 0:7.2f} p99 {pct(ttfb, 99) or 0:7.2f} ms, "
           f"gap p50 {pct(gaps, 50) or 0:7.2f} p99 {pct(gaps, 99) or 0:7.2f} ms, errors {r['errors']}, "
           f"open {r['peak_open']}, load {before} → {r['load_after']}")
    return r


def gc_pauses(log: Path, rounds: list[dict[str, Any]]) -> None:
    """Adds to each proxy round its garbage collections: count and total ms per generation, and every
    one over 5 ms as [seconds from the round's first stream, generation, ms]."""
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for r in rounds:
        if r["path"] == "direct":
            continue
        t0, t1 = r["t0_wall"], r["t0_wall"] + r["wall_s"]
        mine = [e for e in events if t0 <= e["t"] <= t1]
        r["gc"] = {f"gen{g}": {"count": sum(1 for e in mine if e["gen"] == g),
                               "total_ms": round(sum(e["ms"] for e in mine if e["gen"] == g), 1),
                               "max_ms": round(max((e["ms"] for e in mine if e["gen"] == g), default=0), 1)}
                   for g in (0, 1, 2)}
        r["gc"]["over_5ms"] = [[round(e["t"] - e["ms"] / 1000 - t0, 3), e["gen"], round(e["ms"], 1)]
                               for e in mine if e["ms"] > 5]


def billing_check(ids_file: Path, db: Path, issued: list[str]) -> dict[str, Any]:
    """Exactly one Lago event and one spend-log row per call id the proxy returned, none for others."""
    want = collections.Counter(issued)
    lines = ids_file.read_text().split("\n") if ids_file.exists() else []
    lago = collections.Counter(line for line in lines if line)
    with sqlite3.connect(db) as conn:
        logs = collections.Counter(row[0] for row in conn.execute("SELECT request_id FROM spend_logs"))
    out: dict[str, Any] = {"streams_through_proxy": len(issued), "distinct_call_ids": len(want)}
    for name, got in (("lago", lago), ("spend_log", logs)):
        out[f"{name}_events"] = sum(got.values())
        out[f"{name}_missing"] = sum(1 for k in want if got[k] == 0)
        out[f"{name}_duplicated"] = sum(1 for k in want if got[k] > 1)
        out[f"{name}_unknown"] = sum(1 for k in got if k not in want)
    out["every_stream_billed_once"] = (len(want) == len(issued) and all(
        out[f"{n}_{k}"] == 0 for n in ("lago", "spend_log") for k in ("missing", "duplicated", "unknown")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="200 streams over 1 s, 10 chunks, one round")
    ap.add_argument("--streams", type=int)
    ap.add_argument("--ramp", type=float, help="seconds over which the streams arrive")
    ap.add_argument("--chunks", type=int)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--gc-probe", action="store_true", help="log the proxy's garbage collections (bench/gc_probe)")
    ap.add_argument("--gc-freeze", action="store_true", help="experiment: gc.freeze() in the proxy after the warm-up")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, database, ids)")
    args = ap.parse_args()
    args.streams = args.streams or (200 if args.quick else 1000)
    args.ramp = args.ramp if args.ramp is not None else (1.0 if args.quick else 2.0)
    args.chunks = args.chunks or (10 if args.quick else 40)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.gc_probe = args.gc_probe or args.gc_freeze
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * args.streams:  # the proxy holds two sockets per stream; children inherit this
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * args.streams + 1000), hard))
    work = Path(tempfile.mkdtemp(prefix="llmbill-stream-bench-"))
    result: dict[str, Any] = {
        "config": {"streams": args.streams, "ramp_s": args.ramp, "chunks": args.chunks, "interval_ms": args.interval_ms,
                   "rounds": args.rounds, "quick": args.quick},
        "upstream": "bench/fake_stream.cpp (C++ epoll + timerfd, one thread; chunk k due at start + k x interval)",
        "load_generator": "bench/stream_load.py (asyncio on uvloop, raw Protocol per stream, one connection each)",
        "rounds": [], "errors": [], "load_start": loadavg(), "targets": TARGETS,
    }
    issued: list[str] = []
    proxy = None
    try:
        upstream = pb.Child("fake_stream", [str(pb.BIN / "fake_stream"), "--chunks", str(args.chunks),
                                            "--interval-ms", str(args.interval_ms)], port_from_stdout=True)
        ids = work / "lago-ids.txt"
        db = work / "sqlite" / "llmbill.db"
        pb.log("starting llmbill-proxy on SQLite")
        gc_log = work / "gc.jsonl"
        saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "BENCH_GC_PROBE_LOG", "BENCH_GC_FREEZE_ON_USR1")}
        if args.gc_probe:
            os.environ.update(PYTHONPATH=str(pb.ROOT / "bench" / "gc_probe"), BENCH_GC_PROBE_LOG=str(gc_log))
        if args.gc_freeze:
            os.environ["BENCH_GC_FREEZE_ON_USR1"] = "1"
        try:
            proxy = pb.start_llmbill("llmbill-sqlite", upstream.port, f"sqlite:///{db}", work / "sqlite", ["--ids", str(ids)])
        finally:  # only the proxy gets them
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        assert proxy.proc is not None
        result["proxy"] = {"startup_s": round(proxy.startup_s, 2), "idle_rss_mb": pb.status_kb(proxy.pids(), "VmRSS") / 1024,
                           "notes": proxy.notes}
        paths = {"direct": f"http://127.0.0.1:{upstream.port}/v1/chat/completions",
                 "llmbill-sqlite": proxy.url + "/chat/completions"}
        auths = {"direct": "", "llmbill-sqlite": proxy.auth}
        # Warm-up: imports, the upstream pool, caches; its streams are billed and checked too.
        for name, url in paths.items():
            w = load(url, auths[name], 50, 0.5, 3, 20, work / "warm.json")
            if w["errors"]:
                raise RuntimeError(f"warm-up on {name}: {w['error_samples']}")
            if name != "direct":
                issued += w["call_ids"]
        if args.gc_freeze:
            proxy.proc.proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            result["proxy"]["experiment"] = "gc.freeze() after the warm-up (--gc-freeze)"
        for rnd in range(args.rounds):
            order = list(paths) if rnd % 2 == 0 else list(paths)[::-1]
            for name in order:
                r = run_round(name, paths[name], auths[name], args, proxy, upstream, work)
                r["round"] = rnd
                call_ids = r.pop("call_ids")
                if name != "direct":
                    issued += call_ids
                    if len(call_ids) != args.streams:  # a stream the proxy served without its call id
                        result["errors"].append(f"{name} round {rnd}: {len(call_ids)} call ids for {args.streams} streams")
                if r["errors"]:
                    result["errors"].append(f"{name} round {rnd}: {r['errors']} errors, e.g. {r['error_samples'][:3]}")
                result["rounds"].append(r)
        result["proxy"]["peak_rss_mb"] = pb.status_kb(proxy.pids(), "VmHWM") / 1024
        rc = proxy.proc.stop(60)
        result["proxy"]["exit_code"] = rc
        # The sender delivers what is spooled at shutdown; wait for the last events to land.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not ids.exists() or len(ids.read_text().split()) < len(issued)):
            time.sleep(0.2)
        result["billing"] = billing_check(ids, db, issued)
        if args.gc_probe:
            gc_pauses(gc_log, result["rounds"])
        if not result["billing"]["every_stream_billed_once"]:
            result["errors"].append(f"billing: {result['billing']}")
    except Exception as exc:  # a process that cannot start or a generator that fails: the run is invalid
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        if args.keep:
            pb.log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["load_end"] = loadavg()
    result["paths"] = pooled(result["rounds"], args)
    result["rows"] = rows(result)
    for r in result["rounds"]:  # the samples stay out of the result file: pooled above
        for k in ("ttfb_ms", "first_event_ms", "connect_ms", "gaps_ms", "loop_lag_ms"):
            r.pop(k, None)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))
    for e in result["errors"]:
        pb.log(f"ERROR: {e}")
    return 1 if result["errors"] else 0


def pooled(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["path"] for r in rounds):
        rs = [r for r in rounds if r["path"] == name]
        p = summary({k: [v for r in rs for v in r[k + "_ms"]] for k in ("ttfb", "connect", "first_event", "gaps", "loop_lag")})
        p.update(streams=sum(r["streams"] for r in rs), errors=sum(r["errors"] for r in rs),
                 peak_open=max(r["peak_open"] for r in rs), rounds=len(rs),
                 loadgen_cpu_share=max(r["loadgen_cpu_share"] or 0 for r in rs),
                 fake_cpu_share=max(r["fake_cpu_share"] or 0 for r in rs),
                 loadgen_wait_share=max(r["loadgen_wait_share"] or 0 for r in rs),
                 fake_wait_share=max(r["fake_wait_share"] or 0 for r in rs),
                 fake_late_p99_us=max(r["fake"].get("late_p99_us", 0) for r in rs),
                 fake_late_max_us=max(r["fake"].get("late_max_us", 0) for r in rs),
                 load=[f"{r['load_before']} → {r['load_after']}" for r in rs])
        p["gap_p50_vs_interval"] = p["gaps_p50_ms"] / args.interval_ms if p["gaps_p50_ms"] else None
        if name != "direct":
            p.update(cpu_ms_per_stream=sum(r["proxy_cpu_s"] for r in rs) * 1000 / p["streams"],
                     cpu_share=max(r["proxy_cpu_share"] or 0 for r in rs),
                     wait_share=max(r["proxy_wait_share"] or 0 for r in rs),
                     peak_rss_mb=max(r["proxy_peak_rss_mb"] for r in rs))
        out[name] = p
    direct = out.get("direct")
    for name, p in out.items():
        if name == "direct" or direct is None:
            continue
        for k in ("ttfb_p50", "ttfb_p99", "gaps_p50", "gaps_p99", "first_event_p50", "first_event_p99"):
            a, b = p.get(k + "_ms"), direct.get(k + "_ms")
            p["added_" + k + "_ms"] = a - b if a is not None and b is not None else None
    return out


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table: figure, value, same-run baseline, target, met."""
    paths = result["paths"]
    d, p = paths.get("direct", {}), paths.get("llmbill-sqlite", {})
    interval = result["config"]["interval_ms"]
    billing = result.get("billing", {})

    def r(figure: str, value: Any, unit: str, base: str = "", base_value: Any = None, target: str = "",
          met: bool | None = None) -> dict[str, Any]:
        return {"figure": figure, "value": value, "unit": unit, "baseline": base, "baseline_value": base_value,
                "target": target, "met": met}

    def le(v: float | None, limit: float) -> bool | None:
        return None if v is None else v <= limit

    return [
        r("direct: content-chunk gap p50", d.get("gaps_p50_ms"), "ms", "configured interval", interval,
          "within a few %", None if d.get("gap_p50_vs_interval") is None else abs(d["gap_p50_vs_interval"] - 1) <= 0.03),
        r("direct: content-chunk gap p99 (generator + fake jitter)", d.get("gaps_p99_ms"), "ms", "configured interval", interval),
        r("direct: TTFB p50 / p99", _pair(d, "ttfb"), "ms"),
        r("generator: CPU share of a core (max over rounds)", _pct_of(p.get("loadgen_cpu_share")), "%"),
        r("run-queue wait, share of the round (ready, no CPU: the machine busy): generator / fake / llmbill's loop",
          f"{_n(_pct_of(p.get('loadgen_wait_share')))} / {_n(_pct_of(p.get('fake_wait_share')))} / "
          f"{_n(_pct_of(p.get('wait_share')))}", "%", "", None, "≈ 0 on a quiet machine"),
        r("generator: loop lag p99 (direct / proxy rounds)", _pair2(d, p, "loop_lag_p99_ms"), "ms"),
        r("fake upstream: send lateness p99 / max (direct rounds; llmbill rounds)",
          f"{d.get('fake_late_p99_us', '–')} / {d.get('fake_late_max_us', '–')}; "
          f"{p.get('fake_late_p99_us', '–')} / {p.get('fake_late_max_us', '–')}", "µs"),
        r("llmbill: TTFB p50 / p99 (of which connect p50 / p99)", f"{_pair(p, 'ttfb')} ({_pair(p, 'connect')})", "ms"),
        r("llmbill: added TTFB p50", p.get("added_ttfb_p50_ms"), "ms", "direct TTFB p50", d.get("ttfb_p50_ms")),
        r("llmbill: added TTFB p99", p.get("added_ttfb_p99_ms"), "ms", "direct TTFB p99", d.get("ttfb_p99_ms"),
          "≤ 10 ms", le(p.get("added_ttfb_p99_ms"), TARGETS["added_ttfb_p99_ms"])),
        r("llmbill: content-chunk gap p50 / p99 / max", f"{_n(p.get('gaps_p50_ms'))} / {_n(p.get('gaps_p99_ms'))} / "
          f"{_n(p.get('gaps_max_ms'))}", "ms"),
        r("llmbill: added chunk gap p50", p.get("added_gaps_p50_ms"), "ms", "direct gap p50", d.get("gaps_p50_ms")),
        r("llmbill: added chunk gap p99", p.get("added_gaps_p99_ms"), "ms", "direct gap p99", d.get("gaps_p99_ms"),
          "≤ 5 ms", le(p.get("added_gaps_p99_ms"), TARGETS["added_gap_p99_ms"])),
        r("llmbill: CPU per stream", p.get("cpu_ms_per_stream"), "ms", "", None),
        r("llmbill: CPU share of a core (max over rounds)", _pct_of(p.get("cpu_share")), "%"),
        r("llmbill: peak RSS (VmHWM)", p.get("peak_rss_mb"), "MB", "idle RSS", result.get("proxy", {}).get("idle_rss_mb"),
          "≤ 250 MB", le(p.get("peak_rss_mb"), TARGETS["peak_rss_mb"])),
        r("errors (direct + llmbill)", d.get("errors", 0) + p.get("errors", 0) if paths else None, "", "", None, "0",
          (d.get("errors", 0) + p.get("errors", 0)) == 0 if paths else None),
        r("streams open at once (peak, direct / llmbill)", f"{d.get('peak_open', '–')} / {p.get('peak_open', '–')}", ""),
        r("Lago events / spend-log rows for streams through llmbill",
          f"{billing.get('lago_events', '–')} / {billing.get('spend_log_events', '–')}", "",
          "streams through llmbill (warm-up included)", billing.get("streams_through_proxy"),
          "exactly one each", billing.get("every_stream_billed_once")),
    ]


def _n(v: float | None) -> str:
    return "–" if v is None else f"{v:,.2f}"


def _pair(p: dict[str, Any], name: str) -> str:
    return f"{_n(p.get(name + '_p50_ms'))} / {_n(p.get(name + '_p99_ms'))}"


def _pair2(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    return f"{_n(a.get(key))} / {_n(b.get(key))}"


def _pct_of(share: float | None) -> float | None:
    return None if share is None else share * 100


def markdown(result: dict[str, Any]) -> str:
    """The scenario's table (report.py prints the same from the result JSON)."""
    c = result["config"]
    lines = [
        f"Scenario 4, streams: {c['streams']} streams arriving over {c['ramp_s']:g} s, {c['chunks']} content chunks "
        f"{c['interval_ms']} ms apart, {c['rounds']} round(s) per path; upstream {result['upstream']}; load: "
        f"{result['load_generator']}. Load average (1/5/15 min) at start {result['load_start']}, at end "
        f"{result.get('load_end', '?')}; per round: "
        + "; ".join(f"{r['path']} {r['load_before']} → {r['load_after']}" for r in result["rounds"]) + ".",
        "",
        "| figure | value | same-run baseline | baseline value | target | met |",
        "|---|---:|---|---:|---|---|",
    ]
    for r in result["rows"]:
        v = r["value"]
        value = v if isinstance(v, str) else ("–" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.2f}")
        bv = r["baseline_value"]
        base_value = "–" if bv is None else (f"{bv:,.2f}" if isinstance(bv, float) else str(bv))
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['figure']} | {value} {r['unit']} | {r['baseline'] or '–'} | {base_value} | {r['target']} | {met} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
