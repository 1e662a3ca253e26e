"""Issue 16, end to end: a proxy's state follows its traffic, not the size of its database.

- Idle cost: a proxy over 50,000 customers costs, idle, no more than one over an empty store (CPU time
  from /proc over the same 10 s for both, so the machine's other load weighs on both alike). Before,
  every process re-read every record each second: 29 % of a core at 50k customers against 0.4 %.
- A change made through one process reaches the others within the notification delay, while the
  records it changes are held and would not be read again otherwise (stale_after is a minute here):
  `--workers 2` on SQLite (the change log, polled), two proxies on one PostgreSQL (LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmbill.proxy.store import open_store
from tests.python.pg import create_database
from tests.python.proxy_harness import Proxy

MASTER = "sk-scale-0123456789abcdef"
MODEL = {"model_name": "m", "litellm_params": {"model": "mock/m", "input_cost_per_token": 1e-06,
                                               "output_cost_per_token": 2e-06}}
CUSTOMERS = 50_000
IDLE_SECONDS = 10.0
SYNC_INTERVAL = 0.2
TICKS = os.sysconf("SC_CLK_TCK")


def config(database_url: str, **general: Any) -> dict[str, Any]:
    return {"model_list": [MODEL],
            "general_settings": {"master_key": MASTER, "database_url": database_url, **general}}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def fill(url: str, customers: int) -> None:
    store = open_store(url)
    await store.open()
    try:
        await store.insert("budget", {"budget_id": "tier", "max_budget": 100, "budget_duration": "30d"})
        await store.insert_many("customer", [{"user_id": f"cust-{i}", "budget_id": "tier" if i % 2 else None}
                                             for i in range(customers)])
    finally:
        await store.close()


def chat(proxy: Proxy, key: str, customer: str) -> int:
    status, _, _ = proxy.request("POST", "/chat/completions", {"model": "m", "user": customer,
                                                               "messages": [{"role": "user", "content": "hi"}]}, key)
    return status


def test_an_idle_proxy_costs_the_same_over_50k_customers_as_over_none(tmp_path: Path) -> None:
    empty, big = tmp_path / "empty", tmp_path / "big"
    empty.mkdir()
    big.mkdir()
    asyncio.run(fill(f"sqlite:///{big / 'llmbill.db'}", CUSTOMERS))
    with Proxy(config(f"sqlite:///{empty / 'llmbill.db'}"), workdir=empty) as a, \
            Proxy(config(f"sqlite:///{big / 'llmbill.db'}"), workdir=big) as b:
        assert a.proc is not None and b.proc is not None
        for proxy in (a, b):  # a little traffic first: what it read stays held
            assert all(chat(proxy, MASTER, f"cust-{i}") == 200 for i in range(20))
        time.sleep(2)  # the last flush and sync settle
        before = cpu_seconds(a.proc.pid), cpu_seconds(b.proc.pid)
        time.sleep(IDLE_SECONDS)
        empty_cpu = (cpu_seconds(a.proc.pid) - before[0]) / IDLE_SECONDS
        big_cpu = (cpu_seconds(b.proc.pid) - before[1]) / IDLE_SECONDS
    print(f"idle CPU: {empty_cpu:.3%} empty, {big_cpu:.3%} over {CUSTOMERS}")
    assert big_cpu <= 2 * empty_cpu + 0.01, f"idle: {big_cpu:.2%} of a core over {CUSTOMERS} customers, " \
                                            f"{empty_cpu:.2%} over none"


def served_by(proxy: Proxy, since: int) -> set[int]:
    """The worker pids of the chat calls logged since output line `since` (JSON access lines)."""
    pids = set()
    for line in proxy.output.splitlines()[since:]:
        if "/chat/completions" in line:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "chat/completions" in entry.get("message", ""):
                pids.add(int(entry["pid"]))
    return pids


def calls_on_every_worker(proxy: Proxy, call: Callable[[], int], workers: int, at_least: int = 10) -> list[int]:
    """Statuses of calls made until every worker served some (at most 400 calls)."""
    start = len(proxy.output.splitlines())
    statuses: list[int] = []
    while len(statuses) < 400:
        statuses.append(call())
        if len(statuses) >= at_least and len(served_by(proxy, start)) >= workers:
            return statuses
    raise AssertionError(f"the calls did not reach {workers} workers: {served_by(proxy, start)}")


def made(proxy: Proxy) -> tuple[str, str]:
    """A key and a customer with a budget, made through `proxy`."""
    status, body, _ = proxy.request("POST", "/key/generate", {"key_alias": "caller"}, MASTER)
    assert status == 200, body
    customer = f"c-{uuid.uuid4().hex[:8]}"
    status, made_customer, _ = proxy.request("POST", "/customer/new", {"user_id": customer, "max_budget": 1}, MASTER)
    assert status == 200, made_customer
    return str(body["key"]), customer


def test_a_change_reaches_every_sqlite_worker_within_the_sync_interval(tmp_path: Path) -> None:
    cfg = config(f"sqlite:///{tmp_path / 'llmbill.db'}", cache_sync_interval=SYNC_INTERVAL,
                 cache_refresh_interval=30)  # held records are not read again for a minute
    with Proxy(cfg, workdir=tmp_path, workers=2, args=["--log-format", "json", "--log-level", "info"]) as p:
        key, customer = made(p)
        assert set(calls_on_every_worker(p, lambda: chat(p, key, customer), 2)) == {200}  # both hold them
        status, body, _ = p.request("POST", "/customer/update", {"user_id": customer, "max_budget": 0.000001}, MASTER)
        assert status == 200, body
        time.sleep(5 * SYNC_INTERVAL)
        assert set(calls_on_every_worker(p, lambda: chat(p, key, customer), 2)) == {422}  # over budget
        status, body, _ = p.request("POST", "/key/block", {"key": key}, MASTER)
        assert status == 200, body
        time.sleep(5 * SYNC_INTERVAL)
        assert set(calls_on_every_worker(p, lambda: chat(p, key, "other"), 2)) == {401}


def first_refusal(call: Callable[[], int], refused: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if call() == refused:
            return time.monotonic() - started
    raise AssertionError(f"no {refused} within {timeout}s")


def test_a_change_reaches_another_proxy_on_postgres_by_notify(postgres_url: str, tmp_path: Path) -> None:
    url = create_database(postgres_url, f"s_{uuid.uuid4().hex[:12]}")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # A change not pushed would wait for the fallback poll (cache.PUSHED_POLL, 5 s).
    cfg = config(url, cache_refresh_interval=30)  # held records are not read again for a minute
    with Proxy(cfg, workdir=tmp_path / "a") as a, Proxy(cfg, workdir=tmp_path / "b") as b:
        key, customer = made(a)
        assert all(chat(b, key, customer) == 200 for _ in range(3))  # b holds the key and the customer
        status, body, _ = a.request("POST", "/customer/update", {"user_id": customer, "max_budget": 0.000001}, MASTER)
        assert status == 200, body
        assert first_refusal(lambda: chat(b, key, customer), 422, 5.0) < 1.5
        status, body, _ = a.request("POST", "/key/block", {"key": key}, MASTER)
        assert status == 200, body
        assert first_refusal(lambda: chat(b, key, customer), 401, 5.0) < 1.5
