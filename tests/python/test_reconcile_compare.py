"""Reconciliation's comparison rules, without I/O: events built by the core's own builder on one
side, Lago's stored events on the other, exact money and tokens, per event and per billed id."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmbill import _core
from llmbill.lago.reader import StoredEvent
from llmbill.calls import call_timestamp_ms
from llmbill.lago.reconcile import Amounts, ExpectedEvent, UnbillableCall, compare

T0 = 1786000000000  # ms
START, END = T0, T0 + 3_600_000


def expected(call_id: str, customer: str = "cust-1", *, at: int = T0 + 1000, prompt: int = 100, completion: int = 20,
             cost: str = "0.00045", codes: tuple[str, ...] = ("tokens",)) -> list[ExpectedEvent]:
    events, missing = _core.build_lago_events(
        call_id=call_id, timestamp_ms=at, model="gpt-4o", usage=_core.Usage(prompt_tokens=prompt,
                                                                           completion_tokens=completion),
        cost=Decimal(cost), codes=list(codes), end_user_id=customer)
    assert missing == ""
    return [ExpectedEvent.from_json(call_id, e) for e in events]


def stored(e: ExpectedEvent, **changes: Any) -> StoredEvent:
    """What Lago would list for this event, optionally changed."""
    props = {**e.properties, **changes.pop("properties", {})}
    fields = {"transaction_id": e.transaction_id, "code": e.code, "subscription": e.billed_id,
              "timestamp_ms": e.timestamp_ms, "properties": props, **changes}
    return StoredEvent(**fields)


def run(want: list[ExpectedEvent], got: list[StoredEvent], **kw: Any) -> Any:
    return compare(want, got, start_ms=START, end_ms=END, codes=kw.pop("codes", ("tokens",)),
                   charge_by="end_user_id", **kw)


def test_identical_sides_are_clean_with_exact_totals() -> None:
    want = [e for i in range(3) for e in expected(f"c{i}", f"cust-{i % 2}", cost="0.000026")]
    report = run(want, [stored(e) for e in want])
    assert report.clean and report.differences == []
    assert report.proxy_total == report.lago_total == Amounts(3, 300, 60, Decimal("0.000078"), Decimal("0.000078"))
    assert [(a.billed_id, a.proxy.events) for a in report.accounts] == [("cust-0", 2), ("cust-1", 1)]
    assert report.to_json()["totals"]["lago"]["cost"] == "0.000078"


def test_missing_extra_and_altered_are_reported_per_billed_id() -> None:
    a, b, c = (expected(f"c{i}", "cust-1")[0] for i in range(3))
    stranger = StoredEvent("not-ours", "tokens", "cust-2", T0 + 5, {"input_tokens": 7, "response_cost": "0.1"})
    report = run([a, b, c], [stored(a), stored(b, properties={"response_cost": "0.00046", "input_tokens": 101}),
                              stranger])
    assert [(d.kind, d.transaction_id) for d in report.differences] == [
        ("altered", "c1"), ("missing", "c2"), ("extra", "not-ours")]
    altered = report.of_kind("altered")[0]
    assert altered.changes["response_cost"] == ("0.00045", "0.00046")
    assert altered.changes["input_tokens"] == ("100", "101")
    assert set(altered.changes) == {"response_cost", "input_tokens"}
    missing = report.of_kind("missing")[0]
    assert missing.resendable and json.loads(missing.event_json)["transaction_id"] == "c2"
    cust1, cust2 = report.accounts
    assert cust1.proxy == Amounts(3, 300, 60, Decimal("0.00135"), Decimal("0.00135"))
    assert cust1.lago == Amounts(2, 201, 40, Decimal("0.00091"), Decimal("0.00091"))
    assert cust2.lago == Amounts(1, 7, 0, Decimal("0.1"), Decimal("0.1")) and cust2.proxy == Amounts()
    assert not report.clean


def test_money_is_compared_exactly_not_as_floats() -> None:
    (e,) = expected("c1", cost="0.1")
    assert run([e], [stored(e, properties={"response_cost": "0.10"})]).clean  # the same number
    assert run([e], [stored(e, properties={"response_cost": 0.1})]).clean  # a JSON number, read by its text
    (diff,) = run([e], [stored(e, properties={"response_cost": "0.1000000000000000001"})]).of_kind("altered")
    assert diff.changes == {"response_cost": ("0.1", "0.1000000000000000001")}


@pytest.mark.parametrize("field, value", [("code", "tokenz"), ("subscription", "cust-9"), ("timestamp_ms", T0 + 1001)])
def test_event_fields_that_differ_are_altered(field: str, value: Any) -> None:
    (e,) = expected("c1")
    report = run([e], [stored(e, **{field: value})])
    (diff,) = report.of_kind("altered")
    assert {"code": "code", "subscription": "external_subscription_id", "timestamp_ms": "timestamp"}[field] in diff.changes


def test_several_codes_each_event_matched_by_its_own_transaction_id() -> None:
    want = expected("c1", codes=("input", "output"))
    assert [e.transaction_id for e in want] == ["c1:input", "c1:output"]
    report = run(want, [stored(want[0])], codes=("input", "output"))
    assert [(d.kind, d.transaction_id, d.code) for d in report.differences] == [("missing", "c1:output", "output")]
    assert report.proxy_total.events == 2 and report.lago_total.events == 1


def test_dead_lettered_and_late_events_are_reported_but_not_resendable() -> None:
    (old,) = expected("old", at=T0 + 10)
    (dead,) = expected("dead", at=T0 + 20)
    (fine,) = expected("fine", at=T0 + 30)
    (future,) = expected("future", at=T0 + 40)
    report = run([old, dead, fine, future], [], dead_letters={"dead": "422 timestamp invalid_format"},
                 accept_from_ms=T0 + 15, accept_to_ms=T0 + 35)
    by_id = {d.transaction_id: d for d in report.of_kind("missing")}
    assert [tid for tid, d in by_id.items() if d.resendable] == ["fine"]
    assert "acceptance window" in by_id["old"].note and "future" in by_id["future"].note
    assert "deadletters" in by_id["dead"].note


def test_window_boundaries_and_foreign_events() -> None:
    (inside,) = expected("in", at=START)
    (outside,) = expected("out", at=END)  # the end is excluded
    neighbour = StoredEvent("theirs", "tokens", "cust-1", END + 5, {"input_tokens": 1})
    other_product = StoredEvent("x", "storage_gb", "cust-1", T0 + 5, {"gb": 3})
    report = run([inside, outside], [stored(inside), stored(outside), neighbour, other_product])
    assert report.clean and report.proxy_total.events == 1


def test_same_transaction_id_under_another_subscription_is_extra() -> None:
    (e,) = expected("c1", "cust-1")
    report = run([e], [stored(e, subscription="cust-2"), stored(e)])
    assert [(d.kind, d.billed_id) for d in report.differences] == [("extra", "cust-2")]


def test_unbillable_calls_are_listed_not_differences_until_billed_anyway() -> None:
    call = UnbillableCall("anon", "no end_user_id on the call to charge", Amounts(1, 5, 1, Decimal("0.01")), T0)
    report = run([], [], unbillable=[call])
    assert report.clean and [u.call_id for u in report.unbillable] == ["anon"]
    replayed = StoredEvent("anon", "tokens", "team-1", T0, {"input_tokens": 5, "response_cost": "0.01"})
    report = run([], [replayed], unbillable=[call])
    assert report.clean and report.unbillable == [] and report.lago_total.cost == Decimal("0.01")


def test_call_timestamp_is_exact_integer_milliseconds() -> None:
    moment = datetime(2026, 8, 6, 7, 6, 40, 123999, tzinfo=timezone.utc)
    assert call_timestamp_ms(moment) == 1786000000123
    with pytest.raises(ValueError):
        call_timestamp_ms(datetime(2026, 8, 6))


def test_billed_amount_is_compared_exactly_like_the_cost() -> None:
    events, _ = _core.build_lago_events(
        call_id="m1", timestamp_ms=T0 + 1000, model="gpt-4o", usage=_core.Usage(prompt_tokens=100, completion_tokens=20),
        cost=Decimal("0.00045"), codes=["tokens"], end_user_id="cust-1", billed_amount=Decimal("0.3005175"))
    (e,) = [ExpectedEvent.from_json("m1", event) for event in events]
    assert run([e], [stored(e, properties={"billed_amount": "0.30051750"})]).clean
    (diff,) = run([e], [stored(e, properties={"billed_amount": "0.3005176"})]).of_kind("altered")
    assert diff.changes == {"billed_amount": ("0.3005175", "0.3005176")}
    assert diff.proxy is not None and diff.proxy.billed == Decimal("0.3005175")
    lost = {k: v for k, v in e.properties.items() if k != "billed_amount"}  # Lago's copy lacks it
    (diff,) = run([e], [StoredEvent(e.transaction_id, e.code, e.billed_id, e.timestamp_ms, lost)]).of_kind("altered")
    assert diff.changes == {"billed_amount": ("0.3005175", "(absent)")}
