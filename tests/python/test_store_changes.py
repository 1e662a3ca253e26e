"""What the store offers caches that hold part of it (issue 16), on SQLite and PostgreSQL: the change
log and PostgreSQL's NOTIFY, batched reads, window resets guarded by the stored time in one statement,
team members' own spend and its windows, and the migration of a schema-1 database."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmbill.proxy.store import Store, member_id, open_store
from llmbill.proxy.store import sql as sql_module
from llmbill.proxy.store.sql import CHANGES_KEPT, SqlStore
from tests.python.test_store import Run, batch, record, run, store, url  # noqa: F401 (fixtures)

UTC = timezone.utc
SCHEMA_NOW = sql_module.schema


def test_every_write_logs_what_it_changed(store: Store, run: Run[Any]) -> None:
    start = run(store.version())
    run(store.insert("key", record("key", "k1")))
    run(store.insert("key", record("key", "k2")))
    run(store.update("key", "k1", {"blocked": True}))
    run(store.delete("key", ["k2", "k1", "missing"]))
    run(store.insert_many("customer", [record("customer", f"c{i}") for i in range(3)]))
    run(store.apply_spend(batch(("key", "k9", Decimal(1)), ("customer", "c0", Decimal(1)))))  # spend: no change
    version, changed = run(store.changes(start))
    assert version == start + 5
    assert changed is not None and changed[:3] == [("key", "k1"), ("key", "k2"), ("key", "k1")]
    assert sorted(changed[3:5]) == [("key", "k1"), ("key", "k2")] and changed[5:] == [("customer", "*")]
    assert run(store.changes(version)) == (version, [])
    assert run(store.changes(start + 4)) == (version, [("customer", "*")])
    assert run(store.changes(version - CHANGES_KEPT - 1)) == (version, None)  # too far behind: forget all
    assert run(store.changes(version + 1)) == (version, None)  # a database that went back in time


def test_a_version_without_its_changes_means_forget_all(url: str, run: Run[Any]) -> None:
    """Another process that logs no changes (an older llmbill) moves the version alone."""
    s = open_store(url)
    run(s.open())
    try:
        assert isinstance(s, SqlStore)
        start = run(s.version())

        async def bump() -> None:
            async with s._transaction(True) as tx:
                await tx.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")

        run(bump())
        run(s.insert("team", record("team", "t1")))
        assert run(s.changes(start)) == (start + 2, None)
        assert run(s.changes(start + 1)) == (start + 2, [("team", "t1")])
    finally:
        run(s.close())


def test_listen_wakes_another_process_at_commit(store: Store, url: str, run: Run[Any]) -> None:
    woken = threading.Event()
    pushes = run(store.listen(woken.set))
    assert pushes is url.startswith("postgresql")
    other = open_store(url)
    run(other.open())
    try:
        run(other.insert("team", record("team", "t1")))

        async def wait() -> bool:
            for _ in range(100):
                if woken.is_set():
                    return True
                await asyncio.sleep(0.02)  # the notification arrives on this loop's connection
            return False

        assert run(wait()) is pushes
        assert run(store.listen(woken.set)) is pushes  # already listening: the same connection
    finally:
        run(other.close())


def test_batched_reads_and_counts(store: Store, run: Run[Any]) -> None:
    run(store.insert_many("customer", [record("customer", f"c{i}", budget_id="t" if i % 2 else None)
                                       for i in range(1200)]))
    run(store.apply_spend(batch(("customer", "c7", Decimal("0.5")))))
    wanted = [f"c{i}" for i in range(0, 1200, 1)] + ["nope", "c7"]
    got = run(store.get_many("customer", wanted))
    assert len(got) == 1200 and got["c7"] == {"user_id": "c7", "budget_id": "t", "spend": Decimal("0.5")}
    assert run(store.spends_of("customer", ["c7", "c8", "nope"])) == {"c7": Decimal("0.5"), "c8": Decimal(0)}
    assert run(store.count("customer")) == 1200 and run(store.count("customer", {"budget_id": "t"})) == 600
    assert run(store.count("customer", {"budget_id": None})) == 600
    assert run(store.get_many("key", [])) == {}


def test_window_resets_are_one_guarded_statement(store: Store, run: Run[Any]) -> None:
    now = datetime.now(UTC)
    past, future, later = now - timedelta(hours=1), now + timedelta(hours=1), now + timedelta(days=1)
    run(store.insert("customer", record("customer", "due", budget_duration="1h", budget_reset_at=past)))
    run(store.insert("customer", record("customer", "started", budget_duration="1h", budget_reset_at=future)))
    run(store.insert("customer", record("customer", "never", budget_duration="1h")))
    run(store.apply_spend(batch(*((("customer", c, Decimal(2))) for c in ("due", "started", "never")))))
    version = run(store.version())
    # Three processes noticed the same expiry: the first resets, the others change nothing.
    for _ in range(3):
        run(store.reset_windows("customer", {"due": later, "started": later, "never": later}, now))
        run(store.apply_spend(batch(("customer", "due", Decimal(1)))))
    rows = run(store.get_many("customer", ["due", "started", "never"]))
    assert rows["due"]["spend"] == Decimal(3) and rows["due"]["budget_reset_at"] == later  # one reset, 3 calls after
    assert rows["started"]["spend"] == Decimal(2) and rows["started"]["budget_reset_at"] == future
    assert rows["never"]["spend"] == Decimal(2) and "budget_reset_at" not in rows["never"]
    run(store.start_windows("customer", {"never": later, "started": later}))
    rows = run(store.get_many("customer", ["started", "never"]))
    assert rows["never"]["budget_reset_at"] == later and rows["started"]["budget_reset_at"] == future
    assert run(store.version()) == version  # spend and windows are not changes
    # The column is the record's reset time for every operation.
    assert run(store.update("customer", "never", {"alias": "n"}))["budget_reset_at"] == later
    assert run(store.update("customer", "never", {"budget_reset_at": None}))["budget_reset_at"] is None
    assert run(store.list("customer", {"budget_id": None}))[-1]["budget_reset_at"] is None
    with pytest.raises(ValueError):
        run(store.reset_windows("budget", {"b": later}, now))


def test_team_members_have_their_own_spend(store: Store, run: Run[Any]) -> None:
    one, two = member_id("t/1", "u"), member_id("t", "1/u")
    assert one != two  # ids holding the separator stay apart
    run(store.apply_spend(batch(("member", one, Decimal("0.25")))))
    run(store.apply_spend(batch(("member", one, Decimal("0.25")), ("member", two, Decimal(1)))))
    assert run(store.get("member", one)) == {"member_id": one, "spend": Decimal("0.5")}
    assert run(store.spends_of("member", [one, two])) == {one: Decimal("0.5"), two: Decimal(1)}


def test_member_windows_start_and_reset_like_the_others(store: Store, run: Run[Any]) -> None:
    """A member's spend record (created by its first call) runs in windows: started where none runs,
    reset once by the guarded statement, its reset time a column like a key's."""
    now = datetime.now(UTC)
    later, after = now + timedelta(days=1), now + timedelta(days=2)
    due, idle = member_id("t", "u"), member_id("t", "v")
    run(store.apply_spend(batch(("member", due, Decimal(2)), ("member", idle, Decimal(2)))))
    run(store.start_windows("member", {due: now - timedelta(seconds=1)}))
    run(store.start_windows("member", {due: later}))  # already started: kept
    for _ in range(2):  # two processes noticing the same expiry: one reset
        run(store.reset_windows("member", {due: later, idle: later}, now))
        run(store.apply_spend(batch(("member", due, Decimal(1)))))
    rows = run(store.get_many("member", [due, idle]))
    assert rows[due] == {"member_id": due, "spend": Decimal(2), "budget_reset_at": later}
    assert rows[idle] == {"member_id": idle, "spend": Decimal(2)}  # no window: never reset
    moved = run(store.update("member", due, {"budget_reset_at": after}))
    assert moved is not None and moved["budget_reset_at"] == after and moved["spend"] == Decimal(2)


def _schema_1(d: sql_module.Dialect) -> list[str]:
    """What schema() created at version 1: no reset_at column, no members, no change log (version 4),
    no UI sessions (3), no response ids on spend logs (2)."""
    statements = SCHEMA_NOW(d)
    return [s.replace(f", reset_at {d.time_type}", "").replace(f", {sql_module.q('response_id')} TEXT NOT NULL", "")
            for s in statements
            if "changes" not in s and "members" not in s and "ui_sessions" not in s and "spend_logs_response_id" not in s]


def test_a_schema_1_database_is_migrated(url: str, run: Run[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    with monkeypatch.context() as m:
        m.setattr(sql_module, "SCHEMA_VERSION", 1)
        m.setattr(sql_module, "schema", _schema_1)
        old = open_store(url)
        run(old.open())
        assert isinstance(old, SqlStore)
        d = old.dialect
        ph = d.placeholder

        async def seed() -> None:
            rows = [("k1", "t", "u", {"token_hash": "k1", "team_id": "t", "user_id": "u", "budget_duration": "1d",
                                      "budget_reset_at": at}, "0.5"),
                    ("k2", "t", "u", {"token_hash": "k2", "team_id": "t", "user_id": "u"}, "0.25"),
                    ("k3", "t", None, {"token_hash": "k3", "team_id": "t"}, "7")]
            async with old._transaction(True) as tx:
                for ident, team, user, data, spend in rows:
                    await tx.execute(f"INSERT INTO keys (token_hash, team_id, user_id, data, spend, created_at) "
                                     f"VALUES ({ph(1)}, {ph(2)}, {ph(3)}, {ph(4)}, {ph(5)}, {ph(6)})",
                                     (ident, team, user, sql_module.dumps(data), d.money_in(Decimal(spend)),
                                      d.time_in(at)))

        run(seed())
        run(old.close())
    new = open_store(url)
    run(new.open())
    try:
        key = run(new.get("key", "k1"))
        assert key is not None and key["budget_reset_at"] == at and key["spend"] == Decimal("0.5")
        run(new.reset_windows("key", {"k1": at + timedelta(days=1)}, at))  # the column drives the reset
        assert run(new.get("key", "k1"))["budget_reset_at"] == at + timedelta(days=1)
        assert run(new.get("member", member_id("t", "u")))["spend"] == Decimal("0.75")  # its keys' spend
        assert run(new.get("member", member_id("t", ""))) is None
        run(new.start_windows("member", {member_id("t", "u"): at}))  # the table v4 created has its column
        run(new.reset_windows("member", {member_id("t", "u"): at + timedelta(days=1)}, at))
        assert run(new.get("member", member_id("t", "u"))) == {"member_id": member_id("t", "u"), "spend": Decimal(0),
                                                               "budget_reset_at": at + timedelta(days=1)}
        version = run(new.version())
        run(new.insert("team", record("team", "t")))
        assert run(new.changes(version)) == (version + 1, [("team", "t")])
    finally:
        run(new.close())
