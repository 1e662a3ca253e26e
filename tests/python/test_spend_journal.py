"""The spend journal (proxy/spend_journal.py) and SpendTracker.recover: the rows a killed process
journaled are applied at the next start exactly once — those its last flush had already committed
(the journal not yet released) are recognised by request_id and skipped."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmbill.proxy.cache import EntityCache
from llmbill.proxy.spend import SpendTracker, calls_batch
from llmbill.proxy import spend_journal
from llmbill.proxy.spend_journal import SpendJournal, decode, encode
from llmbill.proxy.store import SpendLog, Store, open_store

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
        assert list(journal.dir.iterdir()) == []
        journal.append(row(2))  # settled after the flush: still journaled
        journal.close()  # cut to its rows
        assert [decode(line) for f in journal.dir.iterdir() for line in f.read_bytes().splitlines()] == [row(2)]
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


def test_a_killed_writers_file_is_recovered_whole_without_a_warning(tmp_path: Path, caplog: Any) -> None:
    """The file is grown ahead of its rows and mapped: a process killed while writing leaves its rows
    followed by zeros (the rows are in the page cache as append returns), which recovery drops."""
    dead = SpendJournal(tmp_path / "journal")
    rows = [row(i) for i in range(5)]
    for r in rows:
        dead.append(r)
    (file,) = list(dead.dir.iterdir())
    on_disk = file.read_bytes()  # what a kill -9 now would leave, read through another descriptor
    assert len(on_disk) == spend_journal.GROW and on_disk.rstrip(b"\0") == b"".join(encode(r) for r in rows)
    with caplog.at_level(logging.WARNING, logger="llmbill.proxy"):
        assert SpendJournal(dead.dir).recovered() == (rows, 1)
    assert caplog.text == ""


def test_rows_past_the_grown_size_grow_the_file_and_close_cuts_it_to_its_rows(tmp_path: Path,
                                                                              monkeypatch: Any) -> None:
    monkeypatch.setattr(spend_journal, "GROW", 1000)  # a few rows a step
    journal = SpendJournal(tmp_path / "journal")
    big = replace(row(0), metadata={"tags": ["x" * 3000]})  # one row larger than a step
    rows = [row(i) for i in range(1, 9)] + [big, row(9)]
    for r in rows:
        journal.append(r)
    assert journal.mark() == 1
    (file,) = list(journal.dir.iterdir())
    assert file.read_bytes() == b"".join(encode(r) for r in rows)  # exactly its lines: no zeros
    assert SpendJournal(journal.dir).recovered() == (rows, 1)


def test_a_full_disk_is_an_oserror_of_append_not_a_crash(tmp_path: Path, monkeypatch: Any) -> None:
    journal = SpendJournal(tmp_path / "journal")
    journal.append(row(1))

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spend_journal.os, "posix_fallocate", full)
    big = replace(row(2), metadata={"tags": ["x" * (spend_journal.GROW + 1)]})  # needs the file grown
    try:
        journal.append(big)
    except OSError as exc:
        assert exc.errno == 28  # settle logs it; the row stays in memory for the next flush
    else:
        raise AssertionError("a row the disk cannot take must raise")
    monkeypatch.undo()
    journal.append(row(3))  # the mapping still takes rows that fit
    journal.close()
    assert SpendJournal(journal.dir).recovered() == ([row(1), row(3)], 1)
