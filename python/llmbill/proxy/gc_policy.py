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
- generation 0 at GEN0_THRESHOLD net allocations instead of 700, generation 1 at GEN1_THRESHOLD
  young collections instead of 10. A young collection walks the young objects still alive, so its
  pause grows with the threshold: at 50,000, a thousand streams opening in two seconds (scenario 4,
  ~100 tracked objects a stream) met two collections of 20–70 ms each, every open stream's next
  chunk waiting behind them; at 5,000 the same work is split into ~26 collections of at most
  13–15 ms at load 4–6 (`bench/stream_bench.py --gc-probe`, 51–54 ms at 50,000 in the same runs;
  the total is the same ~0.1 s). In steady state (as many
  requests ending as starting) collections are rare at either value: the count only rises while
  the number in flight grows. What they promote stays in generation 1 until it dies (refcounting
  frees it there; nothing on the request path makes cycles); the older generations are walked
  a thousand times less often than Python's defaults would, the walk that took 50–385 ms.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 5_000
GEN1_THRESHOLD = 1_000  # generation 1 (what young collections promoted) walked once per 1,000 of them
GEN2_THRESHOLD = 10


def apply() -> None:
    """Collects start-up's garbage, freezes what is left and raises the young generation's threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
