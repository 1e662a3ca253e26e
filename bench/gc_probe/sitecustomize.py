"""Bench-only: loaded into llmbill-proxy by stream_bench.py --gc-probe / --gc-freeze, which put this
directory on the proxy's PYTHONPATH (Python imports `sitecustomize` at start-up). It changes nothing
in the proxy but what is said here.

- $BENCH_GC_PROBE_LOG set: one JSON line per garbage collection to that file, {"t": wall seconds at
  its end, "gen", "ms", "collected"} (a callback per collection, about a microsecond).
- $BENCH_GC_FREEZE_ON_USR1 set: SIGUSR1 calls gc.freeze() — every object alive then (imports,
  config, caches, pools after the warm-up) leaves the collector's generations, so a full collection
  no longer walks them. An experiment for what that would do to the tail, not a setting of the proxy.
"""

import gc
import os
import signal
import time

_path = os.environ.get("BENCH_GC_PROBE_LOG")
if _path:
    _log = open(_path, "a", buffering=1, encoding="utf-8")
    _started = [0.0]

    def _on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _started[0]) * 1000
        _log.write('{"t":%.4f,"gen":%d,"ms":%.3f,"collected":%d}\n' % (time.time(), info["generation"], ms,
                                                                        info["collected"]))

    gc.callbacks.append(_on_gc)

if os.environ.get("BENCH_GC_FREEZE_ON_USR1"):
    def _freeze(signum: int, frame: object) -> None:
        gc.collect()
        gc.freeze()

    signal.signal(signal.SIGUSR1, _freeze)
