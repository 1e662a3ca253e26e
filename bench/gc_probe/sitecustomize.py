"""Bench-only: loaded into llmbill-proxy by stream_bench.py --gc-probe / --gc-freeze and ab_proxy.py
--gc-probe, which put this directory on the proxy's PYTHONPATH (Python imports `sitecustomize` at
start-up). It changes nothing in the proxy but what is said here.

- $BENCH_GC_PROBE_LOG set: one JSON line per garbage collection to that file, {"t": wall seconds at
  its end, "gen", "ms", "collected"} (a callback per collection, about a microsecond).
- $BENCH_GC_FREEZE_ON_USR1 set: SIGUSR1 calls gc.freeze() — every object alive then (imports,
  config, caches, pools after the warm-up) leaves the collector's generations, so a full collection
  no longer walks them. An experiment for what that would do to the tail, not a setting of the proxy.
- $BENCH_GC_SAVEALL set to a file: gc.DEBUG_SAVEALL, so what the collector finds unreachable (objects
  that only a reference cycle kept alive) is kept in gc.garbage instead of freed; SIGUSR2 writes the
  count by type of what it holds to that file (JSON) and empties it. Finds the request path's cycles:
  an object refcounting frees never reaches the collector.
- $BENCH_STALL_LOG set: stall_watch.py's watchdog thread logs every turn of the event loop longer
  than $BENCH_STALL_MS with what the loop's thread was doing (bench/stall_hunt.py reads it).
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

_saveall = os.environ.get("BENCH_GC_SAVEALL")
if _saveall:
    gc.set_debug(gc.DEBUG_SAVEALL)

    def _dump(signum: int, frame: object) -> None:
        import collections
        import json

        gc.collect()
        kinds = collections.Counter(type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage)
        # A coroutine's or a frame's name says which code made the cycle.
        named = collections.Counter(
            f"{type(o).__qualname__} {getattr(o, '__qualname__', '') or getattr(getattr(o, 'f_code', None), 'co_qualname', '')}"
            for o in gc.garbage if type(o).__name__ in ("coroutine", "frame", "function", "cell", "method"))
        with open(_saveall, "w", encoding="utf-8") as out:
            json.dump({"objects": len(gc.garbage), "by_type": kinds.most_common(60),
                       "named": named.most_common(40)}, out, indent=1)
        gc.garbage.clear()

    signal.signal(signal.SIGUSR2, _dump)

if os.environ.get("BENCH_STALL_LOG"):
    import stall_watch  # this directory is on the path: see stall_watch.py

    stall_watch.start()
