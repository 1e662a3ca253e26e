"""No spend lost on kill -9 (issue 16, part 3): a proxy killed with SIGKILL right after a burst of
calls, then started again on the same directory, holds in its database exactly the sum of the
`x-litellm-response-cost` headers it returned — for the key, user, team and customer — and Lago holds
one event per call with the same total. Measured before the fix: 300 calls, $0.0402 answered, 0 in
the database after the restart (the last flush interval lived only in memory).

Also: a replica on shared storage takes over a dead replica's spool slot (its spool and spend
journal) when it starts, while another replica keeps serving from its own slot."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import tempfile
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config, lago_env

CALLS = 300


def exact(proxy: Proxy, path: str) -> Any:
    """GET with JSON numbers parsed as Decimal: spend compared to the unit, not as a float."""
    req = urllib.request.Request(proxy.url + path, headers={"authorization": f"Bearer {MASTER}"})
    with urllib.request.urlopen(req, timeout=30) as reply:
        return json.loads(reply.read(), parse_float=Decimal)


def burst(proxy: Proxy, key: str, calls: int) -> dict[str, Decimal]:
    """`calls` chat calls from 8 threads: call id → the cost header returned."""
    body = {"model": "custom-model", "messages": [{"role": "user", "content": "hi"}], "user": "cust-1"}

    def one(_: int) -> tuple[str, Decimal]:
        status, reply, headers = proxy.request("POST", "/chat/completions", body, key)
        assert status == 200, reply
        return headers["x-litellm-call-id"], Decimal(headers["x-litellm-response-cost"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, range(calls)))


def kill9(proxy: Proxy) -> None:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGKILL)
    assert proxy.proc.wait(10) == -signal.SIGKILL
    proxy.stop()  # closes the output reader


def assert_spend(proxy: Proxy, key: str, total: Decimal) -> None:
    assert exact(proxy, f"/key/info?key={key}")["info"]["spend"] == total
    assert exact(proxy, "/user/info?user_id=u-1")["user_info"]["spend"] == total
    assert exact(proxy, "/team/info?team_id=t-1")["team_info"]["spend"] == total
    assert exact(proxy, "/customer/info?end_user_id=cust-1")["spend"] == total


def assert_lago(lago: FakeLago, costs: dict[str, Decimal]) -> None:
    events = lago.wait_for(len(costs), timeout=30)
    time.sleep(0.3)  # a duplicate would arrive now
    assert lago.count_by_transaction_id() == {call_id: 1 for call_id in costs}
    assert sum(Decimal(e["properties"]["response_cost"]) for e in lago.events) == sum(costs.values())
    assert len(events) >= len(costs)


def make_key(proxy: Proxy) -> str:
    status, body, _ = proxy.request("POST", "/key/generate", {"team_id": "t-1", "user_id": "u-1"}, MASTER)
    assert status == 200, body
    return str(body["key"])


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None  # a file in the proxy's own directory, kept across the restart
    from tests.python.pg import create_database

    return str(create_database(request.getfixturevalue("postgres_url"), f"recovery_{uuid.uuid4().hex[:10]}"))


def test_kill_9_after_a_burst_loses_no_spend(upstream: FakeOpenAI, lago: FakeLago, database_url: str | None) -> None:
    cfg = config(upstream, database_url)
    env = lago_env(lago, "end_user_id")
    proxy = Proxy(cfg, env).start()
    try:
        key = make_key(proxy)
        costs = burst(proxy, key, CALLS)
    finally:
        kill9(proxy)
    total = sum(costs.values(), Decimal(0))
    assert total > 0
    with Proxy(cfg, env, workdir=proxy.dir) as again:
        assert_spend(again, key, total)
        logs = exact(again, "/spend/logs?team_id=t-1")
        assert sorted(r["request_id"] for r in logs) == sorted(costs)
        assert sum(r["spend"] for r in logs) == total
        assert_lago(lago, costs)
    assert not list((proxy.dir / "spool" / "slot-0" / "spend-journal").iterdir())  # released at shutdown


def test_kill_9_with_lago_off_loses_no_spend_either(upstream: FakeOpenAI) -> None:
    """Budgets without Lago: no spool, but the spend journal still takes a slot (its lock) of its own."""
    cfg = config(upstream, None)
    cfg["litellm_settings"] = {"callbacks": []}
    never_flushes = {**cfg, "general_settings": {**cfg["general_settings"], "spend_flush_interval": 3600}}
    proxy = Proxy(never_flushes, {}).start()  # all of its spend is still unwritten when it dies
    try:
        key = make_key(proxy)
        costs = burst(proxy, key, 100)
    finally:
        kill9(proxy)
    journal = proxy.dir / "spool" / "slot-0" / "spend-journal"
    assert list(journal.iterdir())  # the rows of the last flush interval were only there
    total = sum(costs.values(), Decimal(0))
    with Proxy(cfg, {}, workdir=proxy.dir) as again:
        assert "spool off" in again.output  # nothing is sent to Lago
        assert_spend(again, key, total)
        logs = exact(again, "/spend/logs?team_id=t-1")
        assert sorted(r["request_id"] for r in logs) == sorted(costs)
    assert not list(journal.iterdir())  # released at shutdown


def test_a_replica_adopts_a_dead_replicas_slot_on_shared_storage(upstream: FakeOpenAI, lago: FakeLago) -> None:
    shared = Path(tempfile.mkdtemp(prefix="llmbill-shared-"))
    cfg = config(upstream, f"sqlite:///{shared / 'llmbill.db'}")
    env = {**lago_env(lago, "end_user_id"), "LLMBILL_SPOOL_DIR": str(shared / "spool")}
    never_flushes = {**cfg, "general_settings": {**cfg["general_settings"], "spend_flush_interval": 3600}}
    a = Proxy(never_flushes, env).start()  # all of a's spend is still unwritten when it dies
    try:
        key = make_key(a)
        with Proxy(cfg, env) as b:
            assert "slot-1" in b.output and "slot-0" in a.output
            costs = burst(a, key, 100)
            kill9(a)
            costs.update(burst(b, key, 50))  # b serves on from its own slot meanwhile
            with Proxy(cfg, env) as c:  # takes slot-0, the one the dead replica held
                assert "slot-0" in c.output
                costs.update(burst(c, key, 20))
                assert_spend(c, key, sum(costs.values(), Decimal(0)))  # b's part flushed, a's recovered
                assert_lago(lago, costs)
    finally:
        a.stop()
