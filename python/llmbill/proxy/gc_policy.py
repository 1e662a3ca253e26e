"""The proxy's garbage-collector policy: applied once per worker, when its start-up is done (the app's
lifespan calls `apply()` just before the worker reports ready).

Why. CPython's cyclic collector runs on the event loop thread, so every request in flight waits for
it, and a collection walks every tracked object of the generations it collects. In a running proxy
a full (generation 2) collection walks everything start-up left alive — modules, the config, the
prices' wrappers, pools — and took 50–75 ms at 256 connections (`bench/ab_proxy.py --gc-probe`;
76–385 ms in scenario 4's rounds under load). The request path makes no reference cycles to collect
(`bench/gc_probe` with DEBUG_SAVEALL found none per call, chat or stream): collections are set off
only by the count of young objects alive, and at 256 requests in flight each holding a few hundred,
Python's defaults (700, 10, 10) ran a generation-0 collection every ~25 calls and a full one every
~3,000, promoting live request objects to generation 2 on the way.

So, once start-up is done:
- `gc.collect()` then `gc.freeze()`: what start-up made and keeps goes to the permanent generation,
  which no collection walks again; a full collection then walks only what was promoted since.
- generation 0 at GEN0_THRESHOLD allocations instead of 700: far fewer collections and promotions.
  Each walks only the young objects still alive (those of the requests in flight, a few ms at 256
  connections); garbage a cycle keeps (an error path's exception and traceback) waits a little longer.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 10  # Python's defaults: a full collection every 100 young ones at most
GEN2_THRESHOLD = 10


def apply() -> None:
    """Collects start-up's garbage, freezes what is left and raises the young generation's threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
