"""Dead letters across spool slots, with real pipelines and the strict fake Lago: listing every slot,
dropping with an audit trail, bringing a letter in line with fixed settings, and replaying so that
Lago stores the event once — and a letter refused again is never lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import llmbill
from llmbill.lago import slots
from llmbill.lago.deadletters import AUDIT_FILE, DeadLetterBook, Letter, ReplayRefused, rebase, replay
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import FAST, KEY, eventually

CODE = "llm_usage"


def settings(tmp_path: Path, lago: FakeLago | None = None, **env: str) -> llmbill.LagoSettings:
    base = {"LAGO_API_BASE": lago.url if lago else "", "LAGO_API_KEY": KEY, "LAGO_API_EVENT_CODE": CODE,
            "LLMBILL_SPOOL_DIR": str(tmp_path / "spool"), "LLMBILL_FSYNC": "never"}
    return llmbill.LagoSettings.from_env({**base, **env})


def event(txn: str, code: str = CODE, sub: str | None = "cust-1", **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"transaction_id": txn, "code": code, "timestamp": "1786000000.5",
                           "properties": {"input_tokens": 5, "response_cost": "0.01", **props}}
    if sub is not None:
        out["external_subscription_id"] = sub
        out["external_customer_id"] = sub
    return out


def letter(ev: Any, ident: str = "x", at: float = 1786000000.0) -> Letter:
    text = ev if isinstance(ev, str) else json.dumps(ev, separators=(",", ":"))
    return Letter(ident, "slot-0", Path("/nonexistent"), text, "a reason", "", at)


def refuse_in_slot(base: Path, slot: int, lago: FakeLago, txn: str) -> None:
    """Makes Lago refuse an event for good in that slot (an ISO timestamp is invalid_format)."""
    pipeline = llmbill.Pipeline(spool_dir=base / f"slot-{slot}", api_base=lago.url, api_key=KEY, **FAST)
    try:
        pipeline.submit_event(json.dumps({**event(txn), "timestamp": "2026-08-06T07:06:40Z"}))
        assert pipeline.flush(5)
        assert [d["id"] for d in pipeline.dead_letters()] == [txn]
    finally:
        pipeline.close(1)


def test_book_lists_every_slot_and_drop_is_audited(tmp_path: Path, fake_lago: FakeLago) -> None:
    base = tmp_path / "spool"
    refuse_in_slot(base, 0, fake_lago, "a")
    refuse_in_slot(base, 3, fake_lago, "b")
    book = DeadLetterBook(base)
    letters = book.letters()
    assert [(x.id, x.slot) for x in letters] == [("a", "slot-0"), ("b", "slot-3")]
    assert "invalid_format" in letters[0].reason and "invalid_format" in letters[0].reply
    assert letters[0].to_json()["event"]["transaction_id"] == "a"
    count, oldest = book.count_and_oldest()
    assert count == 2 and oldest is not None and 0 <= oldest < 60
    assert book.ids() == {"a": letters[0].reason, "b": letters[1].reason}

    assert [x.id for x in book.drop("a")] == ["a"] and book.drop("a") == []
    assert [x.id for x in book.letters()] == ["b"]
    (audit,) = [json.loads(line) for line in (base / AUDIT_FILE).read_text().splitlines()]
    assert audit["action"] == "drop" and audit["id"] == "a" and json.loads(audit["event"])["transaction_id"] == "a"
    assert "@" in audit["by"]
    assert DeadLetterBook(tmp_path / "nothing").letters() == []


def test_rebase_keeps_an_unchanged_event_byte_for_byte(tmp_path: Path) -> None:
    raw = '{"transaction_id":"c1","code":"llm_usage","external_subscription_id":"cust-1","timestamp":"1.5"}'
    assert rebase(letter(raw), settings(tmp_path)) == [raw]


def test_rebase_moves_a_replaced_code_onto_the_configured_codes(tmp_path: Path) -> None:
    one = rebase(letter(event("c1", code="typo")), settings(tmp_path))
    assert [(e["transaction_id"], e["code"]) for e in map(json.loads, one)] == [("c1", CODE)]
    two = rebase(letter(event("c1:typo", code="typo")), settings(tmp_path, LAGO_API_EVENT_CODE="in,out"))
    assert [(e["transaction_id"], e["code"]) for e in map(json.loads, two)] == [("c1:in", "in"), ("c1:out", "out")]
    assert all(e["timestamp"] == "1786000000.5" and e["properties"]["response_cost"] == "0.01"
               for e in map(json.loads, one + two))


def test_rebase_takes_the_charge_id_from_the_call_or_refuses(tmp_path: Path) -> None:
    orphan = event("c1", sub=None, team_id="team-7")
    (fixed,) = map(json.loads, rebase(letter(orphan), settings(tmp_path, LAGO_API_CHARGE_BY="team_id")))
    assert fixed["external_subscription_id"] == fixed["external_customer_id"] == "team-7"
    with pytest.raises(ReplayRefused, match="no end_user_id to charge"):
        rebase(letter(orphan), settings(tmp_path))
    with pytest.raises(ReplayRefused, match="does not hold a Lago event"):
        rebase(letter("not json"), settings(tmp_path))


def test_replay_delivers_once_refuses_held_codes_and_never_loses_a_letter_refused_again(
        tmp_path: Path, fake_lago: FakeLago) -> None:
    base = tmp_path / "spool"
    refuse_in_slot(base, 0, fake_lago, "bad")  # still invalid when replayed
    store = llmbill._core.DeadLetterStore(base / "slot-0" / slots.DEAD_LETTER_FILE)
    for ident, ev in (("good", event("good")), ("typo", event("typo", code="typo"))):
        pipeline = llmbill.Pipeline(spool_dir=base / "slot-1", api_base=fake_lago.url, api_key=KEY, **FAST)
        pipeline.hold_codes({"typo": "not a metric"} if ident == "typo" else {"llm_usage": "not yet a metric"})
        assert pipeline.submit_event(json.dumps(ev)) is False  # held: dead-lettered, not sent
        pipeline.close(1)
    assert {x.id for x in DeadLetterBook(base).letters()} == {"bad", "good", "typo"}
    assert fake_lago.events == []

    book = DeadLetterBook(base)
    cfg = settings(tmp_path, fake_lago)
    pipeline, slot_dir = slots.open_free_slot(cfg, base, tmp_path / "sink.jsonl")
    try:
        outcomes = replay(book, book.letters(), pipeline, cfg, unknown_codes=frozenset({"typo"}))
        assert pipeline.flush(5)
    finally:
        pipeline.close(1)
    by_id = {o.letter.id: o for o in outcomes}
    assert by_id["good"].sent == ["good"] and by_id["bad"].sent == ["bad"]
    assert by_id["typo"].refused == ""  # rebased onto llm_usage, a code Lago knows
    assert by_id["typo"].sent == ["typo"]
    assert fake_lago.count_by_transaction_id() == {"good": 1, "typo": 1}
    remaining = DeadLetterBook(base).letters()
    assert [x.id for x in remaining] == ["bad"]  # refused again: a new letter, not lost
    assert remaining[0].slot == slot_dir.name
    assert store.count() == (1 if slot_dir.name == "slot-0" else 0)
    audit = [json.loads(line)["action"] for line in (base / AUDIT_FILE).read_text().splitlines()]
    assert audit.count("replay") == 3

    book2 = DeadLetterBook(base)
    pipeline, _ = slots.open_free_slot(cfg, base, tmp_path / "sink.jsonl")
    try:
        (held,) = replay(book2, book2.letters(), pipeline, settings(tmp_path, fake_lago, LAGO_API_EVENT_CODE="typo"),
                         unknown_codes=frozenset({"typo"}))
    finally:
        pipeline.close(1)
    assert "still not a billable metric" in held.refused and held.sent == []
    eventually(lambda: [x.id for x in DeadLetterBook(base).letters()] == ["bad"], what="the refused letter kept")


def test_the_audit_file_is_for_the_owner_only_and_an_older_wider_one_is_narrowed(tmp_path: Path) -> None:
    base = tmp_path / "spool"
    book = DeadLetterBook(base)
    book.audit("drop", letter(event("a")))
    assert (base / AUDIT_FILE).stat().st_mode & 0o777 == 0o600  # the events name customers and amounts
    (base / AUDIT_FILE).chmod(0o644)  # as an older version left it
    book.audit("drop", letter(event("b"), "b"))
    assert (base / AUDIT_FILE).stat().st_mode & 0o777 == 0o600
    assert [json.loads(line)["id"] for line in (base / AUDIT_FILE).read_text().splitlines()] == ["x", "b"]
