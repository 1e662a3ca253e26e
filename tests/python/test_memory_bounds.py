"""Memory a client can make the proxy hold (issue 13, item 9): 50k calls, each with a new random
model name (served by a wildcard deployment) and a new customer id, against the real proxy process
(fewer than the 100k this first ran with, for CI's time: the cache is made small, so the calls still
pass its bound fifty times over).

What grows, and why it is bounded now:
- Prometheus series: a wildcard deployment's calls are labelled "*" (metrics.py), not by the name the
  client sent — every label value used to be a series kept forever (measured on the code before:
  +172 MB RSS and a 55 MB, 10 s scrape after only 10k names).
- The limiter's minute per entity is dropped once its minute has passed (limits.py).
- The ledger's entry per entity leaves it at every flush (drain), so nothing stays per idle customer.
- What remains is legitimate data: each new customer is a row (created by its first call, as LiteLLM
  does); the process's cache holds at most `cache_max_entries` of them (cache.py's LRU).
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson

from llmbill import _core
from llmbill.proxy.cache import EntityCache
from llmbill.proxy.spend import SpendTracker
from llmbill.proxy.store import SpendLog, open_store
from tests.python.http_load import http_request, send_all
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER

CALLS = 40_000
PRICED = 10_000
CACHE_MAX = 1000  # records per kind the proxy holds: the calls' customers overflow it
RSS_GROWTH_BOUND = 60 * 2**20
METRICS_BOUND = 64 * 2**10


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def calls(rng: random.Random, count: int, model: str | None = None) -> list[bytes]:
    """Calls with a new random customer each, and a new random model name unless `model` is given."""
    auth = (b"authorization", f"Bearer {MASTER}".encode())
    out = []
    for _ in range(count):
        name = "".join(rng.choices(string.ascii_lowercase + string.digits, k=16))
        body = orjson.dumps({"model": model or f"m-{name}", "user": f"c-{name}",
                             "messages": [{"role": "user", "content": "hi"}]})
        out.append(http_request("POST", "/chat/completions", body, [auth, (b"content-type", b"application/json")]))
    return out


def test_random_model_names_and_customers_leave_memory_and_metrics_bounded(tmp_path: Path) -> None:
    # Wildcard names are priced by the table, so random ones are unpriced and their customers get no
    # row (no spend); PRICED calls with new customers add the rows, to count them in the bound too.
    config = {"model_list": [{"model_name": "*", "litellm_params": {"model": "mock/*"}},
                             {"model_name": "priced", "litellm_params": {"model": "mock/priced",
                                                                         "input_cost_per_token": 1e-06,
                                                                         "output_cost_per_token": 2e-06}}],
              "general_settings": {"master_key": MASTER, "cache_max_entries": CACHE_MAX}}
    rng = random.Random(13)
    with Proxy(config, workdir=tmp_path) as proxy:
        assert proxy.proc is not None
        warm = send_all(proxy.port, calls(rng, 1000))  # imports, pools and caches settle first
        assert {r.status for r in warm} == {200}
        before = rss_bytes(proxy.proc.pid)
        # In rounds, each followed by a few spend flushes: what is measured is what the process keeps,
        # not the peak of spend rows waiting for the database during one long burst (the writer
        # drains them; RSS never gives a peak back, so one burst would measure the machine's speed).
        todo = calls(rng, CALLS) + calls(rng, PRICED, "priced")
        replies = []
        for start in range(0, len(todo), 10_000):
            replies += send_all(proxy.port, todo[start:start + 10_000])
            time.sleep(4 * 0.5)  # four spend flush intervals
        assert sum(r.status == 200 for r in replies) == CALLS + PRICED, {r.status for r in replies}
        growth = rss_bytes(proxy.proc.pid) - before
        status, text, _ = proxy.request("GET", "/metrics", None, MASTER)
        assert status == 200
        assert len(text.encode()) < METRICS_BOUND, len(text)
        billed = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line.startswith("llmbill_billed_calls_total{")}
        assert billed == {'llmbill_billed_calls_total{model="*",team=""}': CALLS + 1000,
                          'llmbill_billed_calls_total{model="priced",team=""}': PRICED}
        assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.0f} MB over {CALLS + PRICED} calls"
        status, customers, _ = proxy.request("GET", "/global/spend/end_users?limit=100000", None, MASTER)
        assert status == 200 and len(customers) == PRICED  # the legitimate rows: one per priced customer


def test_the_ledger_keeps_nothing_of_idle_customers_after_a_flush(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        cache = EntityCache(store)
        tracker = SpendTracker(store, cache)
        usage = _core.Usage(prompt_tokens=10, completion_tokens=5)
        now = datetime.now(timezone.utc)
        for i in range(5000):
            row = SpendLog(f"r{i}", "chat_completion", f"m{i}", "", "", "", f"c{i}", Decimal(0), 10, 5, 0, 0,
                           now, now, "success")
            tracker.record(usage, None, row, model=f"m{i}")
        assert len(tracker.ledger.snapshot()) == 10_000  # a customer and a model per call
        assert await tracker.flush()
        assert tracker.ledger.snapshot() == [] and tracker.logs == []
        assert tracker.pending("customer", "c1") == 0 and tracker.ledger.snapshot() == []  # reading adds none
        await store.close()

    asyncio.run(scenario())
