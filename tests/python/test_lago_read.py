"""Reading Lago back, against the strict fake: the fake's new powers to lose and alter stored events
and to answer GET /billable_metrics/{code}, and llmbill's reader of GET /events (paging, exact
timestamps, codes, errors)."""

from __future__ import annotations

import http.client
import json
from decimal import Decimal
from typing import Any

import pytest

from llmbill.lago.reader import LagoReader, LagoReadError, iso_to_ms, ms_to_iso
from tests.python.fakes.lago import FakeLago

KEY = "lago-read-key"


def event(txn: str, ts: str = "1786000000.5", sub: str = "sub_1", **props: Any) -> dict[str, Any]:
    return {"transaction_id": txn, "external_subscription_id": sub, "code": "tokens", "timestamp": ts,
            "properties": props or {"input_tokens": 10, "response_cost": "0.00045"}}


def call(lago: FakeLago, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", lago.port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"null")
    finally:
        conn.close()


@pytest.fixture
def lago() -> Any:
    with FakeLago(KEY) as fake:
        yield fake


def test_fake_can_lose_events_and_then_store_a_resend_again(lago: FakeLago) -> None:
    assert call(lago, "POST", "/api/v1/events/batch", {"events": [event("a"), event("b"), event("c")]})[0] == 200
    assert lago.drop_events(["a", "c", "nope"]) == 2
    assert lago.transaction_ids() == ["b"]
    assert call(lago, "POST", "/api/v1/events", {"event": event("a")})[0] == 200  # no longer a duplicate
    assert call(lago, "POST", "/api/v1/events", {"event": event("b")})[0] == 422  # still one
    assert call(lago, "POST", "/_fake/drop_events", {"transaction_ids": ["b"]}) == (200, {"dropped": 1})
    assert call(lago, "POST", "/_fake/drop_events", {"transaction_ids": "b"})[0] == 400
    assert lago.transaction_ids() == ["a"]


def test_fake_can_alter_a_stored_event(lago: FakeLago) -> None:
    call(lago, "POST", "/api/v1/events", {"event": event("a")})
    changed = lago.alter_event("a", properties={"response_cost": "0.5", "input_tokens": None}, timestamp="1786000001")
    assert changed["properties"] == {"response_cost": "0.5"} and changed["timestamp"] == Decimal("1786000001")
    status, body = call(lago, "POST", "/_fake/alter_event", {"transaction_id": "a", "code": "other",
                                                             "external_subscription_id": "sub_2"})
    assert status == 200 and (body["event"]["code"], body["event"]["external_subscription_id"]) == ("other", "sub_2")
    listed = call(lago, "GET", "/api/v1/events?code=other")[1]["events"]
    assert [(e["transaction_id"], e["timestamp"], e["properties"]) for e in listed] == [
        ("a", "2026-08-06T07:06:41.000Z", {"response_cost": "0.5"})]
    assert call(lago, "POST", "/_fake/alter_event", {"transaction_id": "zz", "code": "x"})[0] == 404
    assert call(lago, "POST", "/_fake/alter_event", {"transaction_id": "a", "colour": "red"})[0] == 400
    with pytest.raises(KeyError):
        lago.alter_event("zz", code="x")


def test_fake_shows_a_billable_metric_by_code(lago: FakeLago) -> None:
    lago.add_metric("tokens")
    status, body = call(lago, "GET", "/api/v1/billable_metrics/tokens")
    assert status == 200 and body["billable_metric"]["code"] == "tokens"
    assert call(lago, "GET", "/api/v1/billable_metrics/nope") == (
        404, {"status": 404, "error": "Not Found", "code": "billable_metric_not_found"})


def test_reader_pages_through_every_event_of_the_window_exactly(lago: FakeLago) -> None:
    events = [event(f"t{i:03d}", ts=f"1786000{i:03d}.{i:03d}") for i in range(230)]
    for start in range(0, 230, 100):
        assert call(lago, "POST", "/api/v1/events/batch", {"events": events[start:start + 100]})[0] == 200
    reader = LagoReader(lago.url + "/api/v1/", KEY)
    found, warnings = reader.events(1786000010_000, 1786000219_999)
    assert warnings == []
    assert sorted(e.transaction_id for e in found) == [f"t{i:03d}" for i in range(10, 220)]
    by_id = {e.transaction_id: e for e in found}
    assert by_id["t123"].timestamp_ms == 1786000123_123 and by_id["t123"].subscription == "sub_1"
    assert by_id["t123"].properties == {"input_tokens": 10, "response_cost": "0.00045"}
    pages = [r for r in lago.requests if r.path == "/api/v1/events" and r.method == "GET"]
    assert len(pages) == 3 and pages[0].query["per_page"] == "100"


def test_reader_finds_one_event_by_its_transaction_id(lago: FakeLago) -> None:
    call(lago, "POST", "/api/v1/events", {"event": event("far", ts="1900000000.25")})
    found = LagoReader(lago.url, KEY).event("far")
    assert found is not None and (found.transaction_id, found.timestamp_ms) == ("far", 1900000000250)
    assert LagoReader(lago.url, KEY).event("nope") is None


def test_reader_knows_which_codes_lago_bills(lago: FakeLago) -> None:
    lago.add_metric("tokens")
    assert LagoReader(lago.url, KEY).unknown_codes(["tokens", "tokenz"]) == ["tokenz"]


def test_reader_errors_name_the_cause(lago: FakeLago) -> None:
    with pytest.raises(LagoReadError, match="refused the API key"):
        LagoReader(lago.url, "wrong").events(0, 1000)
    lago.stop()
    with pytest.raises(LagoReadError, match="unreachable"):
        LagoReader(lago.url, KEY, timeout=2).unknown_codes(["tokens"])
    with pytest.raises(LagoReadError, match="LAGO_API_BASE"):
        LagoReader("", KEY)


def test_iso_timestamps_round_trip_to_the_millisecond() -> None:
    assert iso_to_ms("2026-08-06T07:06:40.123Z") == 1786000000123
    assert ms_to_iso(1786000000123) == "2026-08-06T07:06:40.123Z"
    with pytest.raises(LagoReadError):
        iso_to_ms("yesterday")
