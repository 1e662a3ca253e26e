"""The storage contract (llmbill.proxy.store.base), one suite run against SQLite and PostgreSQL.

Coroutines run on a per-test event loop (the `run` fixture), so no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest


from llmbill.proxy.store import (INDEXED, KINDS, DuplicateError, RecordError, SpendBatch, SpendLog, Store,
                                 StoreError, open_store)
from llmbill.proxy.store.codec import TABLES, dumps, loads
from llmbill.proxy.store.log_line import LineLog, encode_line
from llmbill.proxy.store.sql import LOG_FIELDS
from tests.python.pg import create_database

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]
UTC = timezone.utc
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TINY = Decimal("0.0000001")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tempfile.mkdtemp(prefix='llmbill-store-')}/store.db"
    else:
        yield create_database(request.getfixturevalue("postgres_url"), f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def run() -> Iterator[Run[Any]]:
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@pytest.fixture
def store(url: str, run: Run[Any]) -> Iterator[Store]:
    s = open_store(url)
    run(s.open())
    try:
        yield s
    finally:
        run(s.close())


def log(request_id: str, start: datetime = T0, **fields: Any) -> SpendLog:
    values: dict[str, Any] = dict(
        call_type="chat_completion", model="gpt-4o-mini", api_key="k1", user="u1", team_id="t1",
        end_user="c1", spend=Decimal("0.001113"), prompt_tokens=10, completion_tokens=5, cached_tokens=0,
        reasoning_tokens=0, end_time=start + timedelta(seconds=1), status="success")
    values.update(fields)
    return SpendLog(request_id=request_id, start_time=start, **values)


def batch(*increments: tuple[str, str, Decimal], logs: tuple[SpendLog, ...] = ()) -> SpendBatch:
    b = SpendBatch()
    for kind, ident, amount in increments:
        b.add(kind, ident, amount)
    b.logs.extend(logs)
    return b


def record(kind: str, ident: str, **fields: Any) -> dict[str, Any]:
    return {KINDS[kind]: ident, **fields}


# -- records ------------------------------------------------------------------------------------


def test_open_twice_and_on_existing_schema(store: Store, url: str, run: Run[Any]) -> None:
    run(store.open())
    run(store.insert("key", record("key", "k1")))
    other = open_store(url)
    run(other.open())
    try:
        assert run(other.get("key", "k1")) == {"token_hash": "k1", "spend": Decimal(0)}
        assert run(other.version()) == run(store.version()) == 1
        assert run(other.ping())
    finally:
        run(other.close())
    run(other.close())  # closing twice is harmless
    assert not run(other.ping())
    with pytest.raises(StoreError, match="not open"):
        run(other.get("key", "k1"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_insert_get_each_kind(store: Store, run: Run[Any], kind: str) -> None:
    fields = {name: f"{name}-value" for name in INDEXED[kind]}
    rec = record(kind, "id-1", alias="first", **fields)
    expected = {**rec, "spend": Decimal(0)} if kind != "budget" else rec
    assert run(store.insert(kind, rec)) == expected
    assert run(store.get(kind, "id-1")) == expected
    assert run(store.get(kind, "missing")) is None
    with pytest.raises(DuplicateError, match="id-1"):
        run(store.insert(kind, record(kind, "id-1", alias="second")))
    assert run(store.get(kind, "id-1")) == expected


def test_round_trip_is_exact(store: Store, run: Run[Any]) -> None:
    paris = timezone(timedelta(hours=1))
    rec = record("key", "k1", team_id=None, max_budget=Decimal("0.001113"), tiny=Decimal("1E-7"),
                 expires=datetime(2025, 6, 1, 13, 30, 0, 1, tzinfo=paris), blocked=False, rpm=60,
                 ratio=0.1, big=2**70, models=["gpt-4o", "o3"], nothing=None, text="Grüße ✓",
                 metadata={"tier": {"limits": [1, Decimal("2.50"), {"at": T0}]}, "empty": {}},
                 tricky={"$decimal": "not a decimal"}, tricky2={"$dict": [["a", 1]]})
    got = run(store.insert("key", rec))
    again = run(store.get("key", "k1"))
    for value in (got, again):
        assert value == {**rec, "spend": Decimal(0)}
        assert isinstance(value["max_budget"], Decimal) and str(value["tiny"]) == "1E-7"
        assert value["expires"].tzinfo == UTC and value["metadata"]["tier"]["limits"][2]["at"] == T0
        assert type(value["big"]) is int and type(value["ratio"]) is float
    with pytest.raises(ValueError, match="timezone-aware"):
        run(store.insert("key", record("key", "k2", at=datetime(2025, 1, 1))))
    assert loads(dumps({"$datetime": {"$decimal": 1}})) == {"$datetime": {"$decimal": 1}}


def test_insert_with_spend_and_bad_records(store: Store, run: Run[Any]) -> None:
    assert run(store.insert("team", record("team", "t1", spend=Decimal("1.25"))))["spend"] == Decimal("1.25")
    with pytest.raises(ValueError):
        run(store.insert("team", {"alias": "no id"}))
    with pytest.raises(ValueError):
        run(store.insert("nope", {"id": "x"}))
    with pytest.raises(ValueError):
        run(store.insert("key", record("key", "k1", team_id=7)))  # indexed fields are strings


def test_update(store: Store, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1", team_id="t1", alias="a", models=["x"])))
    run(store.apply_spend(batch(("key", "k1", Decimal("0.5")))))
    got = run(store.update("key", "k1", {"team_id": "t2", "alias": None, "max_budget": Decimal("10")}))
    expected = record("key", "k1", team_id="t2", alias=None, models=["x"], max_budget=Decimal("10"),
                      spend=Decimal("0.5"))
    assert got == expected and run(store.get("key", "k1")) == expected
    assert run(store.list("key", {"team_id": "t2"})) == [expected]
    assert run(store.list("key", {"team_id": "t1"})) == []
    assert run(store.update("key", "missing", {"alias": "x"})) is None
    with pytest.raises(ValueError, match="spend"):
        run(store.update("key", "k1", {"spend": Decimal(0)}))
    with pytest.raises(ValueError, match="token_hash"):
        run(store.update("key", "k1", {"token_hash": "k2"}))
    assert run(store.get("key", "k1")) == expected


def test_delete(store: Store, run: Run[Any]) -> None:
    for ident in ("a", "b", "c"):
        run(store.insert("user", record("user", ident)))
    v = run(store.version())
    assert run(store.delete("user", ["c", "missing", "a", "c"])) == ["c", "a"]
    assert run(store.version()) > v
    assert [r["user_id"] for r in run(store.list("user"))] == ["b"]
    v = run(store.version())
    assert run(store.delete("user", ["missing"])) == []
    assert run(store.version()) == v


def test_list_filters_and_paging(store: Store, run: Run[Any]) -> None:
    for i in range(7):
        run(store.insert("key", record("key", f"k{6 - i}", team_id=f"t{i % 2}", user_id="u" if i < 3 else None,
                                       key_alias=f"alias{i}")))
    ids = lambda rows: [r["token_hash"] for r in rows]  # noqa: E731
    assert ids(run(store.list("key"))) == ["k6", "k5", "k4", "k3", "k2", "k1", "k0"]  # creation order
    assert ids(run(store.list("key", {"team_id": "t0"}))) == ["k6", "k4", "k2", "k0"]
    assert ids(run(store.list("key", {"team_id": "t0", "user_id": "u"}))) == ["k6", "k4"]
    assert ids(run(store.list("key", {"user_id": None}))) == ["k3", "k2", "k1", "k0"]
    assert ids(run(store.list("key", {"key_alias": "alias3"}))) == ["k3"]
    assert ids(run(store.list("key", offset=2, limit=3))) == ["k4", "k3", "k2"]
    assert ids(run(store.list("key", offset=5))) == ["k1", "k0"]
    assert ids(run(store.list("key", {"team_id": "t0"}, offset=1, limit=2))) == ["k4", "k2"]
    assert run(store.list("key", limit=0)) == []
    with pytest.raises(ValueError, match="alias"):
        run(store.list("key", {"alias": "x"}))
    run(store.insert("user", record("user", "u1", user_email="a@example.com")))
    run(store.insert("customer", record("customer", "c1", budget_id="tier1")))
    assert run(store.list("user", {"user_email": "a@example.com"}))[0]["user_id"] == "u1"
    assert run(store.list("customer", {"budget_id": "tier1"}))[0]["user_id"] == "c1"
    assert run(store.list("team")) == [] and run(store.list("budget")) == []


# -- spend ----------------------------------------------------------------------------------------


def test_apply_spend(store: Store, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1")))
    run(store.insert("team", record("team", "t1", spend=Decimal("1"))))
    run(store.insert("user", record("user", "u1")))
    v = run(store.version())
    b = batch(("key", "k1", Decimal("0.001113")), ("team", "t1", Decimal("0.001113")),
              ("user", "u1", Decimal("0.002")), ("customer", "new", Decimal("0.003")),
              ("key", "deleted", Decimal("1")), logs=(log("r1"), log("r2", metadata={"unpriced": True})))
    run(store.apply_spend(b))
    run(store.apply_spend(batch(("key", "k1", Decimal("0.000001")), ("customer", "new", Decimal("0.003")))))
    assert run(store.get("key", "k1"))["spend"] == Decimal("0.001114")
    assert run(store.get("team", "t1"))["spend"] == Decimal("1.001113")
    assert run(store.get("user", "u1"))["spend"] == Decimal("0.002")
    assert run(store.get("customer", "new")) == {"user_id": "new", "spend": Decimal("0.006")}
    assert run(store.get("key", "deleted")) is None  # a missing key is skipped, not created
    assert run(store.spend_logs()) == [log("r2", metadata={"unpriced": True}), log("r1")]
    assert run(store.version()) == v  # spend does not invalidate caches
    run(store.apply_spend(SpendBatch()))  # empty batch: nothing to do
    with pytest.raises(ValueError, match="budget"):
        run(store.apply_spend(batch(("budget", "b1", Decimal(1)))))


def test_increments_are_exact(store: Store, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1")))

    async def many() -> None:
        for _ in range(1000):
            await store.apply_spend(batch(("key", "k1", TINY), ("customer", "c1", TINY)))

    run(many())
    assert run(store.get("key", "k1"))["spend"] == Decimal("0.0001")
    assert run(store.get("customer", "c1"))["spend"] == Decimal("0.0001")


def test_failed_batch_changes_nothing(store: Store, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1")))
    run(store.apply_spend(batch(("key", "k1", Decimal("1")), logs=(log("r1"),))))
    for logs in ((log("r2"), log("r1")), (log("r3"), log("r3"))):  # stored before / twice in the batch
        with pytest.raises(DuplicateError):
            run(store.apply_spend(batch(("key", "k1", Decimal("5")), ("customer", "c9", Decimal("5")),
                                        logs=logs)))
    assert run(store.get("key", "k1"))["spend"] == Decimal("1")
    assert run(store.get("customer", "c9")) is None
    assert [x.request_id for x in run(store.spend_logs())] == ["r1"]


def test_values_the_database_cannot_store_raise_record_error(store: Store, url: str, run: Run[Any]) -> None:
    """RecordError, not a plain StoreError: the spend flush isolates such a row instead of retrying it
    forever (and holding back every other row)."""
    run(store.insert("key", record("key", "k1")))
    # over a 64-bit column on both backends (2**63: SQLite's JSON would read it as a float, silently)
    unstorable = [log("r-big", prompt_tokens=2**70), log("r-u64", prompt_tokens=2**63)]
    if url.startswith("postgresql"):
        # PostgreSQL refuses NUL in text and index entries over ~2.7 kB; SQLite stores both.
        unstorable += [log("r-nul", end_user="a\x00b"), log("r-long", end_user=secrets.token_urlsafe(4000))]
    for bad in unstorable:
        with pytest.raises(RecordError):
            run(store.apply_spend(batch(("key", "k1", Decimal("5")), ("customer", bad.end_user, Decimal("5")),
                                        logs=(bad,))))
    assert run(store.get("key", "k1"))["spend"] == Decimal(0)
    assert run(store.spend_logs()) == [] and run(store.list("customer")) == []
    run(store.apply_spend(batch(("key", "k1", Decimal("1")), logs=(log("r1"),))))  # the connection still works
    assert run(store.get("key", "k1"))["spend"] == Decimal("1")


def test_spends_reads_every_spend_by_id(store: Store, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1", alias="a")))
    run(store.apply_spend(batch(("key", "k1", Decimal("0.25")), ("customer", "c1", TINY))))
    assert run(store.spends("key")) == {"k1": Decimal("0.25")}
    assert run(store.spends("customer")) == {"c1": TINY}
    assert run(store.spends("team")) == {}
    with pytest.raises(ValueError, match="budget"):
        run(store.spends("budget"))


def test_concurrent_tasks(store: Store, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1")))

    async def task() -> None:
        for _ in range(50):
            await store.apply_spend(batch(("key", "k1", TINY), ("customer", "c1", TINY)))

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(4)))

    run(main())
    assert run(store.get("key", "k1"))["spend"] == TINY * 200
    assert run(store.get("customer", "c1"))["spend"] == TINY * 200


def test_two_stores_on_one_database(store: Store, url: str, run: Run[Any]) -> None:
    run(store.insert("key", record("key", "k1")))
    other = open_store(url)
    run(other.open())

    async def task(s: Store, n: int) -> None:
        for i in range(50):
            await s.apply_spend(batch(("key", "k1", TINY), ("customer", "c1", TINY),
                                      logs=(log(f"{id(s)}-{n}-{i}"),)))

    async def main() -> None:
        await asyncio.gather(*(task(s, n) for s in (store, other) for n in range(2)))

    try:
        run(main())
    finally:
        run(other.close())
    assert run(store.get("key", "k1"))["spend"] == TINY * 200
    assert run(store.get("customer", "c1"))["spend"] == TINY * 200
    assert len(run(store.spend_logs())) == 200


WORKER = """
import asyncio, sys
from decimal import Decimal
from llmbill.proxy.store import DuplicateError, SpendBatch, open_store

async def main(url: str, n: int) -> None:
    store = open_store(url)
    await store.open()  # all workers create the schema of a fresh database at once
    try:
        try:
            await store.insert("key", {"token_hash": "k1"})
        except DuplicateError:
            pass
        for _ in range(n):
            batch = SpendBatch()
            batch.add("key", "k1", Decimal("0.0000001"))
            batch.add("customer", "c1", Decimal("0.0000001"))
            await store.apply_spend(batch)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_processes_share_a_database(url: str, run: Run[Any]) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, url, "60"], stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    s = open_store(url)
    run(s.open())
    try:
        assert run(s.get("key", "k1"))["spend"] == TINY * 180
        assert run(s.get("customer", "c1"))["spend"] == TINY * 180
    finally:
        run(s.close())


def test_reset_spend(store: Store, run: Run[Any]) -> None:
    run(store.insert("customer", record("customer", "c1", budget_duration="1d")))
    run(store.apply_spend(batch(("customer", "c1", Decimal("3")))))
    v = run(store.version())
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    expected = record("customer", "c1", budget_duration="1d", budget_reset_at=tomorrow, spend=Decimal(0))
    assert run(store.reset_spend("customer", "c1", tomorrow)) == expected
    assert run(store.get("customer", "c1")) == expected
    # A second process noticing the same expiry does not wipe the new window's spend.
    run(store.apply_spend(batch(("customer", "c1", Decimal("1")))))
    assert run(store.reset_spend("customer", "c1", tomorrow + timedelta(seconds=1)))["spend"] == Decimal(1)
    assert run(store.get("customer", "c1"))["budget_reset_at"] == tomorrow
    # Once due it resets again; None clears the window.
    run(store.update("customer", "c1", {"budget_reset_at": datetime.now(UTC) - timedelta(seconds=1)}))
    assert run(store.reset_spend("customer", "c1", None))["spend"] == Decimal(0)
    assert run(store.get("customer", "c1"))["budget_reset_at"] is None
    assert run(store.reset_spend("customer", "missing", tomorrow)) is None
    assert run(store.version()) == v + 1  # only the update() above
    with pytest.raises(ValueError):
        run(store.reset_spend("budget", "b1", None))


def test_spend_logs(store: Store, run: Run[Any]) -> None:
    logs = [log("a", T0, api_key="k1", user="u1", team_id="t1", end_user="c1", model="m1"),
            log("b", T0 + timedelta(minutes=1), api_key="k2", user="u1", team_id="t2", end_user="c2", model="m1"),
            log("c", T0 + timedelta(minutes=2), api_key="k1", user="u2", team_id="t1", end_user="c2", model="m2"),
            log("d", T0 + timedelta(minutes=3), api_key="", user="", team_id="", end_user="", model="m2",
                spend=Decimal("0"), metadata={"estimated": True, "nested": {"x": [1, None]}})]
    run(store.apply_spend(batch(logs=tuple(logs))))
    ids = lambda rows: "".join(r.request_id for r in rows)  # noqa: E731
    assert run(store.spend_logs()) == logs[::-1]  # newest first, values exact
    assert ids(run(store.spend_logs({"api_key": "k1"}))) == "ca"
    assert ids(run(store.spend_logs({"user": "u1"}))) == "ba"
    assert ids(run(store.spend_logs({"team_id": "t1", "end_user": "c2"}))) == "c"
    assert ids(run(store.spend_logs({"model": "m2"}))) == "dc"
    assert ids(run(store.spend_logs({"request_id": "b"}))) == "b"
    assert ids(run(store.spend_logs({"api_key": ""}))) == "d"
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    assert ids(run(store.spend_logs(start=start, end=end))) == "cb"  # [start, end)
    assert ids(run(store.spend_logs(start=start.astimezone(timezone(timedelta(hours=-5)))))) == "dcb"
    assert ids(run(store.spend_logs(end=start))) == "a"
    assert ids(run(store.spend_logs(limit=2))) == "dc"
    with pytest.raises(ValueError):
        run(store.spend_logs({"spend": "0"}))


def test_spend_logs_by_response_id(store: Store, run: Run[Any]) -> None:
    logs = [log("a", T0, response_id="chatcmpl-1"), log("b", T0 + timedelta(minutes=1))]
    run(store.apply_spend(batch(logs=tuple(logs))))
    assert [r.request_id for r in run(store.spend_logs({"response_id": "chatcmpl-1"}))] == ["a"]
    assert run(store.spend_logs({"request_id": "b"}))[0].response_id == ""


async def _undo_v4(tx: Any) -> None:
    """What version 4 added: the reset_at columns, member spend (a new table, with its column) and the
    change log."""
    await tx.execute("DROP TABLE members")
    for t in TABLES.values():
        if t.windowed and t.name != "members":
            await tx.execute(f"ALTER TABLE {t.name} DROP COLUMN reset_at")
    await tx.execute("DROP TABLE changes")


def test_a_version_1_database_gains_the_response_id_column(store: Store, url: str, run: Run[Any]) -> None:
    """Schema 1 (before spend logs kept the reply's id): opening it adds the column, keeping the rows."""
    async def downgrade() -> None:
        async with store._transaction(True) as tx:  # type: ignore[attr-defined]
            await _undo_v4(tx)
            await tx.execute("DROP TABLE ui_sessions")
            await tx.execute("DROP INDEX spend_logs_response_id")
            await tx.execute("ALTER TABLE spend_logs DROP COLUMN response_id")
            await tx.execute("UPDATE meta SET value = 1 WHERE name = 'schema'")

    run(store.apply_spend(batch(logs=(log("old"),))))
    run(downgrade())
    upgraded = open_store(url)
    run(upgraded.open())
    try:
        run(upgraded.apply_spend(batch(logs=(log("new", T0 + timedelta(minutes=1), response_id="resp_1"),))))
        assert [(r.request_id, r.response_id) for r in run(upgraded.spend_logs())] == [("new", "resp_1"), ("old", "")]
        assert [r.request_id for r in run(upgraded.spend_logs({"response_id": "resp_1"}))] == ["new"]
    finally:
        run(upgraded.close())


def test_version(store: Store, run: Run[Any]) -> None:
    seen = [run(store.version())]

    def step(op: Awaitable[Any]) -> None:
        run(op)
        seen.append(run(store.version()))

    step(store.insert("team", record("team", "t1")))
    step(store.update("team", "t1", {"alias": "x"}))
    step(store.delete("team", ["t1"]))
    assert seen[0] < seen[1] < seen[2] < seen[3]
    step(store.apply_spend(batch(("customer", "c1", Decimal(1)), logs=(log("r1"),))))
    step(store.update("team", "missing", {"alias": "x"}))
    with pytest.raises(DuplicateError):
        run(store.insert("customer", record("customer", "c1")))
    step(store.get("customer", "c1"))
    assert seen[3] == seen[4] == seen[5] == seen[6]


def test_unreachable_database(url: str, run: Run[Any]) -> None:
    bad = (f"sqlite:///{tempfile.mkdtemp()}/missing-dir/x.db" if url.startswith("sqlite")
           else "postgresql://postgres:secret@127.0.0.1:1/nowhere")
    s = open_store(bad)
    with pytest.raises(StoreError) as info:
        run(s.open())
    assert "secret" not in str(info.value)
    assert not run(s.ping())
    run(s.close())


def test_open_store_urls() -> None:
    from llmbill.proxy.store.postgres import PostgresStore
    from llmbill.proxy.store.sqlite import SqliteStore

    rel, absolute = open_store("sqlite:///data/llmbill.db"), open_store("sqlite:////var/lib/llmbill.db")
    assert isinstance(rel, SqliteStore) and rel.path == "data/llmbill.db"
    assert isinstance(absolute, SqliteStore) and Path(absolute.path) == Path("/var/lib/llmbill.db")
    for good in ("postgresql://u:p@db:5432/llmbill", "postgres://db/llmbill"):
        assert isinstance(open_store(good), PostgresStore)
    for bad in ("mysql://u:hunter2@db/x", "sqlite://", "sqlite:///", "llmbill.db", ""):
        with pytest.raises(ValueError, match="unsupported database URL") as info:
            open_store(bad)
        assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="mysql://u:\\*\\*\\*@db/x"):
        open_store("mysql://u:hunter2@db/x")


def test_logged_request_ids_names_the_calls_already_stored(store: Store, run: Run[Any]) -> None:
    run(store.apply_spend(batch(logs=(log("a"), log("b", T0 + timedelta(minutes=1))))))
    asked = ["a", "x", "b", "a"] + [f"n{i}" for i in range(1200)]  # more than one query's worth
    assert run(store.logged_request_ids(asked)) == {"a", "b"}
    assert run(store.logged_request_ids([])) == set()


def test_ui_sessions_are_stored_by_digest_bounded_and_ended(store: Store, run: Run[Any]) -> None:
    run(store.put_ui_session("d1", "c1", expires_ms=2_000, now_ms=1_000, keep=2))
    run(store.put_ui_session("d2", "c2", expires_ms=3_000, now_ms=1_000, keep=2))
    assert run(store.ui_session("d1")) == ("c1", 2_000)
    run(store.put_ui_session("d3", "c3", expires_ms=4_000, now_ms=1_000, keep=2))  # d1, the oldest, goes
    assert run(store.ui_session("d1")) is None and run(store.count_ui_sessions(1_000)) == 2
    run(store.put_ui_session("d4", "c4", expires_ms=9_000, now_ms=3_500, keep=10))  # d2 expired: dropped
    assert run(store.ui_session("d2")) is None and run(store.count_ui_sessions(3_500)) == 2
    run(store.end_ui_session("d3"))
    assert run(store.ui_session("d3")) is None and run(store.ui_session("d4")) == ("c4", 9_000)


def test_a_version_2_database_gains_the_ui_sessions_table(store: Store, url: str, run: Run[Any]) -> None:
    async def downgrade() -> None:
        async with store._transaction(True) as tx:  # type: ignore[attr-defined]
            await _undo_v4(tx)
            await tx.execute("DROP TABLE ui_sessions")
            await tx.execute("UPDATE meta SET value = 2 WHERE name = 'schema'")

    run(downgrade())
    upgraded = open_store(url)
    run(upgraded.open())
    try:
        run(upgraded.put_ui_session("d", "c", expires_ms=2, now_ms=1, keep=5))
        assert run(upgraded.ui_session("d")) == ("c", 2)
    finally:
        run(upgraded.close())



def test_a_large_spend_batch_is_stored_whole_or_not_at_all(store: Store, run: Run[Any]) -> None:
    """A flush's worth of rows, converted over several turns of the event loop (LOG_TURN_SECONDS):
    every row stored exactly, in one transaction; a duplicate among the last rows leaves nothing
    of the batch behind, and a value that cannot be stored among them neither."""
    n = 250
    logs = tuple(log(f"r{i:04d}", T0 + timedelta(microseconds=i), spend=Decimal(i) / 10**9, prompt_tokens=i,
                     metadata={"i": i}) for i in range(n))
    run(store.apply_spend(batch(("customer", "c1", Decimal("1")), logs=logs)))
    assert run(store.spend_logs(limit=n + 1)) == list(logs[::-1])
    again = tuple(log(f"s{i:04d}") for i in range(n - 1)) + (log("r0000"),)  # the last row is stored already
    with pytest.raises(DuplicateError):
        run(store.apply_spend(batch(("customer", "c1", Decimal("5")), logs=again)))
    bad = tuple(log(f"t{i:04d}") for i in range(n - 1)) + (log("t-bad", spend=Decimal("NaN")),)
    with pytest.raises(RecordError):
        run(store.apply_spend(batch(("customer", "c1", Decimal("5")), logs=bad)))
    assert run(store.get("customer", "c1"))["spend"] == Decimal("1")
    assert len(run(store.spend_logs(limit=2 * n))) == n



def test_a_large_spend_batch_lets_the_event_loop_run_while_its_rows_are_converted(
        store: Store, run: Run[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows of a flush are converted LOG_TURN_SECONDS of the loop at a time: another task runs
    between, where converting them all at once held every request of the proxy for the whole batch.
    Here each reading of the turn's clock advances it 30 µs: a 100 µs turn ends after the 4th row."""
    from llmbill.proxy.store import sql

    logs = tuple(log(f"r{i:04d}") for i in range(300))  # rows made in Python: each encoded as its line
    converted = 0
    real = sql.encode_line
    now = [0.0]

    def counted(*args: Any, **kwargs: Any) -> bytes:
        nonlocal converted
        converted += 1
        return real(*args, **kwargs)

    def clock() -> float:
        now[0] += 30e-6
        return now[0]

    monkeypatch.setattr(sql, "encode_line", counted)
    monkeypatch.setattr(sql, "_turn_clock", clock)
    assert sql.LOG_TURN_SECONDS == 100e-6
    seen: list[int] = []  # how many rows were converted at each turn of another task

    async def flush_beside_a_ticker() -> None:
        flush = asyncio.ensure_future(store.apply_spend(batch(logs=logs)))
        while not flush.done():
            seen.append(converted)
            await asyncio.sleep(0)
        await flush

    run(flush_beside_a_ticker())
    assert converted == len(logs)
    converting = [n for n in seen if 0 < n < len(logs)]
    assert len(converting) > 2  # the ticker ran while rows were being converted
    assert max(b - a for a, b in zip(converting, converting[1:])) <= 4  # never more than a turn's rows between
    assert len(run(store.spend_logs(limit=1000))) == len(logs)


def test_a_sqlite_store_opens_while_another_process_holds_the_fresh_file(tmp_path: Path) -> None:
    """Workers of one proxy open a fresh SQLite file at once; switching it to WAL needs the file to
    itself, and SQLite refuses that at once (not after its busy timeout) while another connection holds
    a lock. The store waits for the lock instead of failing start-up."""
    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_worker (x INTEGER)")  # a rollback-journal file, as before any WAL
    holder.execute("BEGIN IMMEDIATE")  # another worker mid-migration
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        store = open_store(f"sqlite:///{path}")
        asyncio.run(_open_and_close(store))
    finally:
        release.join()
        holder.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    check.close()


async def _open_and_close(store: Store) -> None:
    await store.open()
    await store.insert("key", {"token_hash": "k1"})
    await store.close()


def test_a_batch_of_spend_logs_is_stored_exactly_whichever_way_it_goes_in(store: Store, url: str,
                                                                          run: Run[Any]) -> None:
    """A batch goes in as its rows' lines, one JSON array bound to one INSERT (SQLite's json_each,
    PostgreSQL's json_array_elements with a cast a column), or row by row when a text holds a NUL
    (SQLite's JSON text would end there) or an integer is past 2**53. Every field comes back as it
    went in, whichever way, and whether the row was made in Python or held as its line (LineLog)."""
    rows = [log(f"r{i}", T0 + timedelta(microseconds=i), end_user=f"cüst-{i} 名前 \"q\" \\ \t",
                spend=Decimal(f"0.{i:06d}0000000000001"), prompt_tokens=2**52 + i, cached_tokens=i,
                metadata={"tags": ["a", "b"], "unpriced": True} if i % 2 else {}, response_id=f"chatcmpl-{i}")
            for i in range(150)]
    as_lines = [LineLog(encode_line(r)) if i % 3 else r for i, r in enumerate(rows)]
    run(store.apply_spend(batch(("key", "k1", Decimal("1")), logs=tuple(as_lines))))
    stored = {x.request_id: x for x in run(store.spend_logs(limit=1000))}
    assert [stored[r.request_id] for r in rows] == rows
    assert all(list(r.__dict__) == ["line"] for r in as_lines if isinstance(r, LineLog))  # stored unread
    huge = (log("h1", prompt_tokens=2**63 - 1, completion_tokens=2**53 + 1), log("h2"))  # row by row, exact
    unusual = [huge]
    if url.startswith("sqlite"):  # PostgreSQL refuses NUL in text (above)
        numbers = {"prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "start_time", "end_time"}
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:  # the column types the row-by-row way gives
            kinds = db.execute("SELECT DISTINCT " + ", ".join(f'typeof("{f}")' for f in LOG_FIELDS)
                               + " FROM spend_logs").fetchall()
        assert kinds == [tuple("integer" if f in numbers else "text" for f in LOG_FIELDS)]
        unusual.append((LineLog(encode_line(log("n1", response_id="id\x00tail"))), log("n2")))
    for rows_in in unusual:
        run(store.apply_spend(batch(("key", "k1", Decimal("1")), logs=rows_in)))
        stored = {x.request_id: x for x in run(store.spend_logs(limit=1000))}
        assert [stored[r.request_id] for r in rows_in] == list(rows_in)
