"""Bench-only: a watchdog thread that times the proxy's event loop from outside and says, for every
turn of it that took longer than a threshold, what the loop's thread was doing meanwhile. Started by
sitecustomize.py when $BENCH_STALL_LOG names a file; the proxy changes in nothing else.

Every 2 ms the thread hands the loop a callback (`call_soon_threadsafe`) and waits for it to run.
While one is outstanding past 10 ms it samples the loop thread's Python stack; when the callback
finally runs more than $BENCH_STALL_MS (default 30) after it was handed over, one JSON line:

    {"t": wall seconds when it was handed over, "lag_ms", "cpu_ms": the loop thread's CPU time in
     that interval, "runq_ms": its time waiting for a CPU (both from /proc/self/task/TID/schedstat),
     "steal_ms": the machine's steal time (/proc/stat, all CPUs), "stacks": [[count, "file:line
     function < caller < ..."], ...] the samples, most frequent first}

cpu_ms ≈ lag_ms: the loop ran code (the stacks say which); runq_ms ≈ lag_ms: the thread was ready but
had no CPU (the host's other work, steal); neither: the thread was blocked in a system call (the
stacks show the Python line that made it). The loop is found once, after start-up, on the loop
thread's stack. Its cost: a wake-up of the loop every 2 ms.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import sys
import threading
import time

PERIOD_S = 0.002
SAMPLE_AFTER_S = 0.010
FRAMES = 10


def _schedstat(tid: int) -> tuple[int, int]:
    with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as f:
        cpu_ns, runq_ns, _ = f.read().split()
    return int(cpu_ns), int(runq_ns)


def _steal_ticks() -> int:
    with open("/proc/stat", encoding="ascii") as f:
        return int(f.readline().split()[8])


def _is_running_loop(obj: object) -> bool:
    try:
        return callable(getattr(obj, "call_soon_threadsafe", None)) and bool(obj.is_running())  # type: ignore[attr-defined]
    except Exception:
        return False


def _running_loop(main: threading.Thread) -> object | None:
    """The loop the main thread runs: a local (or its `_loop`) of a frame on its stack — asyncio's
    Runner holds it — else among the collector's objects (not the frozen ones: the proxy freezes
    start-up's objects, the loop with them)."""
    frame = sys._current_frames().get(main.ident)  # type: ignore[arg-type]
    while frame is not None:
        for value in list(frame.f_locals.values()):
            for candidate in (value, getattr(value, "_loop", None)):
                if _is_running_loop(candidate):
                    return candidate
        frame = frame.f_back
    return next((o for o in gc.get_objects() if _is_running_loop(o)), None)


def _stack(frame: object | None) -> str:
    parts = []
    while frame is not None and len(parts) < FRAMES:
        code = frame.f_code  # type: ignore[attr-defined]
        parts.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}")  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]
    return " < ".join(parts)


def _watch(path: str, threshold_s: float) -> None:
    main = threading.main_thread()
    out = open(path, "a", buffering=1, encoding="utf-8")
    loop = None
    while loop is None:
        time.sleep(0.5)
        loop = _running_loop(main)
    tick = os.sysconf("SC_CLK_TCK")
    ran = threading.Event()

    def beat() -> None:
        ran.set()

    while True:
        ran.clear()
        sent, wall = time.perf_counter(), time.time()
        cpu0, runq0 = _schedstat(main.native_id)  # type: ignore[arg-type]
        steal0 = _steal_ticks()
        try:
            loop.call_soon_threadsafe(beat)  # type: ignore[attr-defined]
        except RuntimeError:
            return  # the loop closed: the proxy is stopping
        stacks: collections.Counter[str] = collections.Counter()
        if not ran.wait(SAMPLE_AFTER_S):
            while not ran.wait(PERIOD_S):
                stacks[_stack(sys._current_frames().get(main.ident))] += 1
        lag = time.perf_counter() - sent
        if lag >= threshold_s:
            cpu1, runq1 = _schedstat(main.native_id)  # type: ignore[arg-type]
            out.write(json.dumps({"t": round(wall, 4), "lag_ms": round(lag * 1000, 1),
                                  "cpu_ms": round((cpu1 - cpu0) / 1e6, 1), "runq_ms": round((runq1 - runq0) / 1e6, 1),
                                  "steal_ms": round((_steal_ticks() - steal0) * 1000 / tick, 1),
                                  "stacks": [[n, s] for s, n in stacks.most_common(8)]}) + "\n")
        time.sleep(PERIOD_S)


def start() -> None:
    path = os.environ.get("BENCH_STALL_LOG")
    if path:
        threshold = float(os.environ.get("BENCH_STALL_MS", "30")) / 1000
        threading.Thread(target=_watch, args=(path, threshold), name="bench-stall-watch", daemon=True).start()
