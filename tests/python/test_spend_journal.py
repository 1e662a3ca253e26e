"""The spend journal (proxy/spend_journal.py) and SpendTracker.recover: the rows a killed process
journaled are applied at the next start exactly once — those its last flush had already committed
(the journal not yet released) are recognised by request_id and skipped."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from llmbill.proxy import spend_journal
from llmbill.proxy.cache import EntityCache
from llmbill.proxy.spend import SpendTracker, calls_batch
from llmbill.proxy.spend_journal import SpendJournal, decode, encode
from llmbill.proxy.store import SpendLog, Store, open_store
from llmbill.proxy.store.log_line import LineLog, encode_line

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)


def row(i: int, spend: str = "0.000134") -> SpendLog:
    return SpendLog(request_id=f"call-{i}", call_type="chat_completion", model="custom-model", api_key="hash-1",
                    user="u-1", team_id="t-1", end_user=f"cust-{i % 2}", spend=Decimal(spend), prompt_tokens=10,
                    completion_tokens=5, cached_tokens=1, reasoning_tokens=2, start_time=T0, end_time=T0,
                    status="success", metadata={"key_alias": "a", "tags": ["x"]}, response_id=f"chatcmpl-{i}")


async def tracker_on(tmp_path: Path) -> tuple[Store, SpendTracker]:
    """A new process's tracker on the database (key, user and team created on first use)."""
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    if await store.get("key", "hash-1") is None:
        await store.insert("key", {"token_hash": "hash-1"})
        await store.insert("user", {"user_id": "u-1"})
        await store.insert("team", {"team_id": "t-1"})
    cache = EntityCache(store)
    await cache.load()
    return store, SpendTracker(store, cache)


def test_a_row_survives_the_journal_unchanged() -> None:
    original = row(7, "0.0000000000000000001")
    assert decode(encode(original)) == original


def test_lines_of_the_core_and_of_an_earlier_release_are_recovered(tmp_path: Path) -> None:
    """The journal holds each row as its line (store/log_line.py): the core's, appended as they are,
    come back as rows held as their lines (the flush binds them without reading them); a line an
    earlier release wrote (a JSON object) is read too, so a journal left by an upgrade is applied."""
    journal_dir = tmp_path / "spend-journal"
    dead = SpendJournal(journal_dir)
    dead.append_line(encode_line(row(1)))
    dead.close()
    legacy = orjson.dumps(row(2), default=lambda v: format(v, "f"), option=orjson.OPT_APPEND_NEWLINE)
    with open(journal_dir / f"{2:020d}.jsonl", "wb") as f:
        f.write(legacy)
    rows, mark = SpendJournal(journal_dir).recovered()
    assert rows == [row(1), row(2)] and mark == 2
    assert isinstance(rows[0], LineLog) and rows[0].line == encode_line(row(1))


def test_recovery_applies_the_unflushed_calls_once_and_skips_those_already_flushed(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal_dir = tmp_path / "slot-0" / "spend-journal"
        dead = SpendJournal(journal_dir)  # the killed process: 10 calls, the first 4 flushed, journal kept
        rows = [row(i) for i in range(10)]
        for r in rows:
            dead.append(r)
        store, _ = await tracker_on(tmp_path)
        await store.apply_spend(calls_batch(rows[:4]))

        second, tracker = await tracker_on(tmp_path)
        assert await tracker.recover(SpendJournal(journal_dir)) == 6
        await second.close()
        total = sum((r.spend for r in rows), Decimal(0))
        for kind, ident in (("key", "hash-1"), ("user", "u-1"), ("team", "t-1")):
            assert (await store.get(kind, ident) or {})["spend"] == total
        assert (await store.get("customer", "cust-0") or {})["spend"] == 5 * Decimal("0.000134")
        assert len(await store.spend_logs()) == 10
        assert list(journal_dir.iterdir()) == []  # the cursor passed them

        # A second start finds nothing left to apply.
        third, again = await tracker_on(tmp_path)
        assert await again.recover(SpendJournal(journal_dir)) == 0
        await third.close()
        assert (await store.get("key", "hash-1") or {})["spend"] == total
        await store.close()

    asyncio.run(scenario())


def test_a_flush_releases_what_it_wrote_and_keeps_what_came_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, tracker = await tracker_on(tmp_path)
        journal = SpendJournal(tmp_path / "journal")
        await tracker.recover(journal)
        journal.append(row(1))
        tracker.logs.append(row(1))  # as settle does (the ledger's increments are not needed here)
        assert await tracker.flush()
        # row 1's file is gone; the next one was made by the flush's worker thread, empty until used
        assert [f.stat().st_size for f in journal.dir.iterdir()] == [0]
        journal.append(row(2))  # settled after the flush: still journaled
        assert [decode(line) for f in journal.dir.iterdir() for line in f.read_bytes().splitlines()] == [row(2)]
        journal.close()
        await store.close()

    asyncio.run(scenario())


def test_under_steady_traffic_the_loop_makes_no_file_and_an_idle_journal_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating and unlinking files waits on the filesystem's journal: tidy() does both in the flush's
    worker thread, so once traffic is steady mark() and the appends only write and close."""
    async def scenario() -> None:
        store, tracker = await tracker_on(tmp_path)
        journal = SpendJournal(tmp_path / "journal")
        await tracker.recover(journal)
        assert await tracker.flush()
        assert list(journal.dir.iterdir()) == []  # idle: nothing made
        for i in (1, 2):  # the first file after idle is opened by its append; the next ones are made ahead
            journal.append(row(i))
            tracker.logs.append(row(i))
            assert await tracker.flush()
            assert [f.stat().st_size for f in journal.dir.iterdir()] == [0] * i

        def no_open(*args: object, **kwargs: object) -> int:
            raise AssertionError("a file opened on the loop")
        with monkeypatch.context() as m:
            m.setattr(spend_journal.os, "open", no_open)
            journal.append(row(3))
            journal.mark()
            journal.append(row(4))
        tracker.logs.extend([row(3), row(4)])
        assert await tracker.flush()
        assert sorted(r.request_id for r in await store.spend_logs()) == [f"call-{i}" for i in range(1, 5)]
        for _ in range(3):  # idle again: the file made ahead is switched to, then released; none made
            assert await tracker.flush()
        assert list(journal.dir.iterdir()) == []
        journal.close()
        await store.close()

    asyncio.run(scenario())


def test_a_next_file_that_cannot_be_made_ahead_is_opened_by_its_append(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        store, tracker = await tracker_on(tmp_path)
        journal = SpendJournal(tmp_path / "journal")
        await tracker.recover(journal)
        journal.append(row(1))
        tracker.logs.append(row(1))

        def full(*args: object, **kwargs: object) -> int:
            raise OSError(28, "No space left on device")
        with monkeypatch.context() as m:
            m.setattr(spend_journal.os, "open", full)
            assert await tracker.flush()  # the batch is stored; only the file ahead is missing
        assert "cannot make the next file ahead" in caplog.text
        journal.append(row(2))
        assert [decode(line) for f in journal.dir.iterdir() for line in f.read_bytes().splitlines()] == [row(2)]
        journal.close()
        await store.close()

    asyncio.run(scenario())


def test_a_torn_last_line_is_skipped_and_the_rest_recovered(tmp_path: Path) -> None:
    async def scenario() -> None:
        dead = SpendJournal(tmp_path / "journal")
        dead.append(row(1))
        dead.close()
        (file,) = list(dead.dir.iterdir())
        with file.open("ab") as f:
            f.write(encode(row(2))[:-9])  # power lost mid-line
        store, tracker = await tracker_on(tmp_path)
        assert await tracker.recover(SpendJournal(dead.dir)) == 1
        assert [r.request_id for r in await store.spend_logs()] == ["call-1"]
        await store.close()

    asyncio.run(scenario())
