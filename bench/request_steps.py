"""Where one call's time goes inside llmbill-proxy at concurrency 1, step by step, in the running proxy.

`ablation.py --pieces` times the request path's parts in a warm loop in process; this times the same
parts where the benchmark's figure is made: the proxy serving wrk at concurrency 1 in front of
bench/fake_openai (SQLite, key and customer budgets, spend, Lago on, as proxy_bench.py runs it). The
proxy is started with each step wrapped in a timer (wall clock and the thread's CPU, inclusive of the
steps inside it); per step the median over every call is reported. Each wrapper adds ~0.3 µs to its
step and to every step around it: read the figures as shares, not as exact costs.

What it showed first (bench/README.md, "The request path at concurrency 1, step by step"): at c=1 each
step costs 2–3.5x what the same code costs in a warm loop, wall time equal to the thread's CPU time
(nothing waits: the code itself runs slower — most likely on caches the socket work between the steps
leaves cold), so a cut is worth about twice its in-process figure at c=1.

    .venv/bin/python bench/request_steps.py [--mode chat|stream] [--seconds 10] [--json F]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import statistics
import sys
import tempfile
import shutil
import time
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402

# (depth, step, module, attribute path, also): the step's name in the table (under the step above it
# at a lower depth) and where the proxy calls it from; a function imported by name is wrapped where it
# is imported too (the `also` modules).
STEPS: list[tuple[int, str, str, str, tuple[str, ...]]] = [
    (0, "request (the app, from routing to the reply's end)", "llmbill.proxy.app", "ProxyApp.__call__", ()),
    (1, "key: authenticate", "llmbill.proxy.app", "ProxyApp._authenticate", ()),
    (1, "body: read and decode", "llmbill.proxy.http", "Request.json", ()),
    (1, "admission (bound, records, plan, limits, credits)", "llmbill.proxy.budget_fallbacks", "admit", ()),
    (2, "upper bound of the cost", "llmbill.proxy.budget_fallbacks", "upper_bound_cost", ()),
    (2, "plan: entities, limits, spend, slots", "llmbill.proxy.guards", "_plan", ()),
    (1, "forward, settle (with the upstream's wait)", "llmbill.proxy.fallbacks", "serve", ()),
    (2, "upstream exchange (with its wait)", "llmbill.proxy.upstream", "Upstream.call", ()),
    (2, "upstream stream opened (with its wait)", "llmbill.proxy.upstream", "Upstream.stream", ()),
    (2, "usage of the reply", "llmbill.proxy.routes.llm", "usage_of", ()),
    (2, "stream relayed (events, usage, settle)", "llmbill.proxy.relay", "RelayedStream.pipe", ()),
    (2, "settle", "llmbill.proxy.settle", "settle", ("llmbill.proxy.routes.llm", "llmbill.proxy.relay")),
    (3, "priced, ledger, Lago event spooled, row made: core.settle_call", "llmbill.proxy.settle", "core.settle_call", ()),
    (3, "row queued", "llmbill.proxy.spend", "SpendTracker.note_settled", ()),
    (3, "spend journal append", "llmbill.proxy.spend_journal", "SpendJournal.append", ()),
    (3, "reservations released", "llmbill.proxy.guards", "Admission.release", ()),
    (1, "reply sent", "llmbill.proxy.http", "Response.send", ()),
    (1, "stream reply sent (relay included)", "llmbill.proxy.http", "StreamingResponse.send", ()),
    (1, "metrics and access log", "llmbill.proxy.observe", "finish", ()),
]
DUMP_EVERY = 1000  # calls of the outermost step a window: each window's medians are appended as a line
# (the proxy is killed at the end, not exited); the run's figures are the medians of its windows


# ---- inside the proxy's process ---------------------------------------------------------------------

def instrument(out: Path) -> None:
    import importlib

    times: dict[str, tuple[list[float], list[float]]] = {}
    calls = [0]

    def dump() -> None:
        window = {name: [len(wall), statistics.median(wall) * 1e6, statistics.median(cpu) * 1e6]
                  for name, (wall, cpu) in times.items() if wall}
        with out.open("a") as f:
            f.write(json.dumps({"at": time.time(), "steps": window}) + "\n")
        for wall, cpu in times.values():
            wall.clear()
            cpu.clear()

    def timed(name: str, fn: Any, outermost: bool) -> Any:
        wall, cpu = times.setdefault(name, ([], []))
        clock, thread = time.perf_counter, time.thread_time
        if outermost:  # the app's __call__: its exact signature (uvicorn tells an app from a factory by it)
            @functools.wraps(fn)
            async def app_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
                w, c = clock(), thread()
                try:
                    await fn(self, scope, receive, send)
                finally:
                    wall.append(clock() - w)
                    cpu.append(thread() - c)
                    calls[0] += 1
                    if calls[0] % DUMP_EVERY == 0:
                        dump()
            return app_call
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awaited(*args: Any, **kwargs: Any) -> Any:
                w, c = clock(), thread()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    wall.append(clock() - w)
                    cpu.append(thread() - c)
            return awaited

        @functools.wraps(fn)
        def called(*args: Any, **kwargs: Any) -> Any:
            w, c = clock(), thread()
            try:
                return fn(*args, **kwargs)
            finally:
                wall.append(clock() - w)
                cpu.append(thread() - c)
        return called

    for i, (_, name, module_name, path, also) in enumerate(STEPS):
        module = importlib.import_module(module_name)
        owner: Any = module
        *outer, attr = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original = getattr(owner, attr)
        wrapped = timed(name, original, outermost=i == 0)
        setattr(owner, attr, wrapped)
        for other in also:
            setattr(importlib.import_module(other), attr, wrapped)


def serve(out: str, argv: list[str]) -> int:
    instrument(Path(out))
    from llmbill.proxy.cli import main

    return main(argv)


# ---- the run ----------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["chat", "stream"], default="chat")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", help="the figures, raw")
    ap.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # inside the proxy
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve[0], args.serve[1:])
    work = Path(tempfile.mkdtemp(prefix="llmbill-steps-"))
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        figures_file = work / "steps.json"
        s = start_instrumented(upstream.port, work, figures_file)
        body = work / "body.json"
        body.write_text(json.dumps(pb.BODIES[args.mode]))
        path = pb.MODES[args.mode].path
        pb.wrk(s.url, s.auth, body, 1, 2, work / "warm.json", path)
        began = time.time()
        run = pb.wrk(s.url, s.auth, body, 1, args.seconds, work / "run.json", path)
        windows = [w["steps"] for w in map(json.loads, figures_file.read_text().splitlines()) if w["at"] > began + 0.5]
        figures = {name: {"n": sum(w[name][0] for w in windows if name in w),
                          "wall_us": statistics.median(w[name][1] for w in windows if name in w),
                          "cpu_us": statistics.median(w[name][2] for w in windows if name in w)}
                   for _, name, *_ in STEPS if any(name in w for w in windows)}
        print(f"llmbill-proxy, {args.mode}, wrk c=1 for {args.seconds:g} s: {run['requests']:,} calls, "
              f"p50 {run['latency_us']['p50'] / 1000:.3f} ms (the timers included); load "
              f"{Path('/proc/loadavg').read_text().split()[0]}; {len(windows)} windows of {DUMP_EVERY} calls\n")
        print("| step (inclusive of the steps under it) | calls timed | wall p50 µs | thread CPU p50 µs |")
        print("|---|---:|---:|---:|")
        for depth, name, *_ in STEPS:
            f = figures.get(name)
            if f is not None:
                print(f"| {'↳ ' * depth}{name} | {f['n']:,} | {f['wall_us']:.1f} | {f['cpu_us']:.1f} |")
        if args.json:
            Path(args.json).write_text(json.dumps({"mode": args.mode, "run": run, "steps": figures}, indent=1))
        return 0
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        shutil.rmtree(work, ignore_errors=True)


def start_instrumented(upstream: int, work: Path, figures: Path) -> pb.System:
    """pb.start_llmbill's system, its proxy started through serve() (the steps wrapped)."""
    return pb.start_llmbill("llmbill", upstream, f"sqlite:///{work}/llmbill.db", work / "proxy",
                            command=[sys.executable, str(Path(__file__).resolve()), "--serve", str(figures)])

if __name__ == "__main__":
    sys.exit(main())
