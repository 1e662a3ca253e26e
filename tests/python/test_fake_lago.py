"""The fake Lago enforces Lago's events contract (docs/lago-api.md) — tested through real HTTP.

Every other test that talks to "Lago" trusts this fake, so this file pins what it accepts and
rejects, its two stores, its faults and its billing arithmetic.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.lago_billing import billing_period
from tests.python.fakes.lago_store import parse_iso8601

KEY = "lago-test-key"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """One keep-alive HTTP/1.1 connection to the fake, JSON in and out."""

    def __init__(self, port: int, key: str | None = KEY) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.key = key

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str | None] | None = None) -> Response:
        sent: dict[str, str | None] = {"Content-Type": "application/json"}
        if self.key is not None:
            sent["Authorization"] = f"Bearer {self.key}"
        sent.update(headers or {})
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        self.conn.request(method, path, body=data, headers={k: v for k, v in sent.items() if v is not None})
        with self.conn.getresponse() as response:
            payload = response.read()
            return Response(response.status, json.loads(payload) if payload else None,
                            {name.lower(): value for name, value in response.getheaders()})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.call("POST", path, body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.call("GET", path, **kwargs)

    def close(self) -> None:
        self.conn.close()


def event(txn: str, *, sub: str | None = "sub_1", code: str = "llm_usage", ts: Any = "1786000000.5",
          **properties: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"transaction_id": txn, "code": code, "timestamp": ts,
                            "properties": properties or {"input_tokens": 10}}
    if sub is not None:
        body["external_subscription_id"] = sub
    return body


def validation(details: dict[str, Any]) -> dict[str, Any]:
    return {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors", "error_details": details}


@pytest.fixture
def lago() -> Iterator[FakeLago]:
    with FakeLago(KEY) as fake:
        yield fake


@pytest.fixture
def client(lago: FakeLago) -> Iterator[Client]:
    c = Client(lago.port)
    yield c
    c.close()


# -- transport: auth, routes, bodies --------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Token {KEY}", f"bearer {KEY}", KEY])
def test_anything_but_bearer_and_the_key_is_401(lago: FakeLago, client: Client, authorization: str | None) -> None:
    reply = client.post("/api/v1/events", {"event": event("t1")}, headers={"Authorization": authorization})
    assert (reply.status, reply.body) == (401, {"status": 401, "error": "Unauthorized"})
    assert lago.events == []


def test_read_only_key_cannot_write_events_but_can_read() -> None:
    with FakeLago(KEY, read_only_key="ro") as lago:
        client = Client(lago.port, key="ro")
        try:
            reply = client.post("/api/v1/events", {"event": event("t1")})
            assert (reply.status, reply.body) == (
                403, {"status": 403, "error": "Forbidden", "code": "write_action_not_allowed_for_event"})
            assert client.get("/api/v1/events").status == 200
        finally:
            client.close()


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/nothing"), ("POST", "/api/v1/event"), ("POST", "/api/v1/events/"),
    ("POST", "//api/v1/events"), ("POST", "/v1/events"), ("DELETE", "/api/v1/events"),
])
def test_unknown_route_is_404_resource_not_found(client: Client, method: str, path: str) -> None:
    reply = client.call(method, path, {"event": event("t1")}, headers={"Authorization": None})
    assert (reply.status, reply.body) == (404, {"status": 404, "error": "Not Found", "code": "resource_not_found"})


def test_success_is_200_and_echoes_the_event(lago: FakeLago, client: Client) -> None:
    reply = client.post("/api/v1/events", {"event": event("t1", ts="1786000000.123", input_tokens=7)})
    assert reply.status == 200
    echoed = reply.body["event"]
    assert echoed["transaction_id"] == "t1" and echoed["external_subscription_id"] == "sub_1"
    assert echoed["timestamp"] == "2026-08-06T07:06:40.123Z"
    assert echoed["properties"] == {"input_tokens": 7}
    assert lago.events[0]["timestamp"] == Decimal("1786000000.123")  # exact, no float


def test_missing_event_is_400(client: Client) -> None:
    for body in ({}, {"event": {}}, {"events": [event("t1")]}):
        reply = client.post("/api/v1/events", body)
        assert (reply.status, reply.body) == (
            400, {"status": 400, "error": "BadRequest: param is missing or the value is empty: event"})


def test_unparseable_json_is_400(lago: FakeLago, client: Client) -> None:
    for raw in (b'{"event": {', b'{"events": [NaN]}'):
        assert client.post("/api/v1/events/batch", raw=raw).status == 400
    assert lago.events == []


def test_without_json_content_type_rails_sees_no_params(client: Client) -> None:
    # libcurl posts as form-urlencoded unless told otherwise: real Lago then sees no parameters.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/api/v1/events", {"event": event("t1")}, headers=form).status == 400
    reply = client.post("/api/v1/events/batch", {"events": [event("t1")]}, headers={"Content-Type": None})
    assert (reply.status, reply.body) == (422, validation({"events": ["no_events"]}))


# -- batches ------------------------------------------------------------------------------------------


def test_batch_of_101_is_too_many_events_and_100_is_fine(lago: FakeLago, client: Client) -> None:
    reply = client.post("/api/v1/events/batch", {"events": [event(f"t{i}") for i in range(101)]})
    assert (reply.status, reply.body) == (422, validation({"events": ["too_many_events"]}))
    assert lago.events == []
    assert client.post("/api/v1/events/batch", {"events": [event(f"t{i}") for i in range(100)]}).status == 200
    assert len(lago.events) == 100


def test_batch_maximum_is_settable(lago: FakeLago, client: Client) -> None:
    lago.max_batch = 3
    reply = client.post("/api/v1/events/batch", {"events": [event(f"t{i}") for i in range(4)]})
    assert reply.body["error_details"] == {"events": ["too_many_events"]}


@pytest.mark.parametrize("body", [{"events": []}, {}, {"events": None}, {"events": "t1"}, {"events": {"0": {}}}])
def test_empty_or_missing_batch_is_no_events(client: Client, body: dict[str, Any]) -> None:
    reply = client.post("/api/v1/events/batch", body)
    assert (reply.status, reply.body) == (422, validation({"events": ["no_events"]}))


def test_iso_timestamp_is_invalid_format_keyed_by_index(lago: FakeLago, client: Client) -> None:
    events = [event("t0"), event("t1", ts="2026-08-06T07:06:40Z"), event("t2"), event("t3", ts=True)]
    reply = client.post("/api/v1/events/batch", {"events": events})
    assert (reply.status, reply.body) == (422, validation({
        "1": {"timestamp": ["invalid_format"]}, "3": {"timestamp": ["invalid_format"]}}))
    assert lago.events == []  # all or nothing


@pytest.mark.parametrize("stamp, seconds", [
    (1786000000, "1786000000"), (1786000000.25, "1786000000.25"), ("1786000000.123456", "1786000000.123456"),
    ("1786000000", "1786000000"),
])
def test_timestamp_is_a_number_or_numeric_string_with_fraction(lago: FakeLago, client: Client, stamp: Any,
                                                               seconds: str) -> None:
    assert client.post("/api/v1/events", {"event": event("t1", ts=stamp)}).status == 200
    assert lago.events[0]["timestamp"] == Decimal(seconds)


def test_milliseconds_sent_as_seconds_are_silently_accepted(lago: FakeLago, client: Client) -> None:
    # As real Lago: the event lands in the year 58566 and is never billed. Senders must not do this.
    reply = client.post("/api/v1/events", {"event": event("t1", ts=1786000000123)})
    assert reply.status == 200 and reply.body["event"]["timestamp"].startswith("58566-")


def test_absent_timestamp_is_time_of_receipt(lago: FakeLago, client: Client) -> None:
    lago.now = 1790000000
    body = event("t1")
    del body["timestamp"]
    assert client.post("/api/v1/events", {"event": body}).status == 200
    assert lago.events[0]["timestamp"] == Decimal(1790000000)


def test_missing_transaction_id_or_code_is_value_is_mandatory(lago: FakeLago, client: Client) -> None:
    single = event("t1")
    del single["transaction_id"]
    reply = client.post("/api/v1/events", {"event": single})
    assert (reply.status, reply.body) == (422, validation({"transaction_id": ["value_is_mandatory"]}))

    blank_code = event("t2", code="  ")
    reply = client.post("/api/v1/events/batch", {"events": [event("t0"), single, blank_code, 7]})
    assert (reply.status, reply.body) == (422, validation({
        "1": {"transaction_id": ["value_is_mandatory"]},
        "2": {"code": ["value_is_mandatory"]},
        "3": {"transaction_id": ["value_is_mandatory"], "code": ["value_is_mandatory"]},
    }))
    assert lago.events == []


@pytest.mark.parametrize("field, value", [
    ("transaction_id", 12345), ("properties", {"nested": {"a": 1}}), ("properties", {"flag": True}),
    ("properties", {"n": None}), ("properties", ["a"]), ("precise_total_amount_cents", 12.5),
    ("external_subscription_id", 42),
])
def test_malformed_fields_are_rejected(lago: FakeLago, client: Client, field: str, value: Any) -> None:
    body = event("t1")
    body[field] = value
    reply = client.post("/api/v1/events", {"event": body})
    assert (reply.status, reply.body) == (422, validation({field: ["value_is_invalid"]}))


def test_unknown_keys_are_dropped_but_kept_in_the_raw_log(lago: FakeLago, client: Client) -> None:
    body = {**event("t1"), "external_customer_id": "cust_1", "precise_total_amount_cents": "12.50", "extra": 1}
    reply = client.post("/api/v1/events", {"event": body})
    assert reply.status == 200
    assert "external_customer_id" not in reply.body["event"] and "extra" not in lago.events[0]
    assert reply.body["event"]["precise_total_amount_cents"] == "12.5"
    assert lago.raw_events == [body]


# -- deduplication: the two stores ------------------------------------------------------------------


def test_resend_is_value_already_exist_and_stored_once(lago: FakeLago, client: Client) -> None:
    assert client.post("/api/v1/events", {"event": event("t1")}).status == 200
    reply = client.post("/api/v1/events", {"event": event("t1", ts="1786000099")})
    assert (reply.status, reply.body) == (422, validation({"transaction_id": ["value_already_exist"]}))
    reply = client.post("/api/v1/events/batch", {"events": [event("t2"), event("t1")]})
    assert (reply.status, reply.body) == (422, validation({"1": {"transaction_id": ["value_already_exist"]}}))
    assert lago.count_by_transaction_id() == {"t1": 1}


def test_transaction_id_is_unique_per_subscription_not_per_code(lago: FakeLago, client: Client) -> None:
    assert client.post("/api/v1/events", {"event": event("t1", code="input_tokens")}).status == 200
    assert client.post("/api/v1/events", {"event": event("t1", code="output_tokens")}).status == 422
    assert client.post("/api/v1/events", {"event": event("t1", sub="sub_2")}).status == 200
    assert lago.transaction_ids() == ["t1", "t1"]


def test_event_without_subscription_is_never_deduplicated(lago: FakeLago, client: Client) -> None:
    # Postgres' unique index treats NULL subscriptions as distinct: such a resend is stored again
    # (and neither copy is ever billed). One more reason to always send external_subscription_id.
    for _ in range(2):
        assert client.post("/api/v1/events", {"event": event("t1", sub=None)}).status == 200
    assert lago.count_by_transaction_id() == {"t1": 2}


def test_duplicate_within_one_batch_flags_later_copies(lago: FakeLago, client: Client) -> None:
    events = [event("a"), event("b"), event("a"), event("c"), event("a")]
    reply = client.post("/api/v1/events/batch", {"events": events})
    assert (reply.status, reply.body) == (422, validation({
        "2": {"transaction_id": ["value_already_exist"]}, "4": {"transaction_id": ["value_already_exist"]}}))
    assert lago.events == []


def test_batches_are_all_or_nothing(lago: FakeLago, client: Client) -> None:
    assert client.post("/api/v1/events", {"event": event("old")}).status == 200
    events = [event("new1"), event("old"), event("new2")]
    assert client.post("/api/v1/events/batch", {"events": events}).status == 422
    assert lago.transaction_ids() == ["old"]
    # The sender's move: drop what is already delivered, resend the rest.
    assert client.post("/api/v1/events/batch", {"events": [events[0], events[2]]}).status == 200
    assert lago.transaction_ids() == ["old", "new1", "new2"]


def test_legacy_partial_batches_keep_their_good_events(lago: FakeLago, client: Client) -> None:
    lago.legacy_partial_batches = True
    assert client.post("/api/v1/events", {"event": event("old")}).status == 200
    events = [event("new1"), event("old"), event("bad", ts="yesterday"), event("new2")]
    reply = client.post("/api/v1/events/batch", {"events": events})
    assert (reply.status, reply.body) == (422, validation({
        "1": {"transaction_id": ["value_already_exist"]}, "2": {"timestamp": ["invalid_format"]}}))
    assert lago.transaction_ids() == ["old", "new1", "new2"]
    # A sender that resends the whole batch now learns those two were delivered.
    reply = client.post("/api/v1/events/batch", {"events": [events[0], events[3]]})
    assert set(reply.body["error_details"]) == {"0", "1"}


def test_clickhouse_collapses_identical_rows_but_not_a_new_timestamp() -> None:
    with FakeLago(KEY, store="clickhouse") as lago:
        client = Client(lago.port)
        try:
            for _ in range(3):
                assert client.post("/api/v1/events", {"event": event("t1", ts="1786000000.5")}).status == 200
            assert client.post("/api/v1/events/batch", {"events": [event("t1", ts="1786000000.5")] * 2}).status == 200
            assert lago.count_by_transaction_id() == {"t1": 1}
            # The same event resent with a fresh timestamp: stored (and billed) twice.
            assert client.post("/api/v1/events", {"event": event("t1", ts="1786000007")}).status == 200
            assert lago.count_by_transaction_id() == {"t1": 2}
            # The key includes the code: same id, other code, another row.
            assert client.post("/api/v1/events", {"event": event("t1", code="other")}).status == 200
            assert len(lago.events) == 3
            # Invalid events are still refused before the store.
            assert client.post("/api/v1/events", {"event": event("t2", ts="2026-08-06")}).status == 422
        finally:
            client.close()


def test_clickhouse_keeps_the_latest_version_of_a_collapsed_row(lago: FakeLago, client: Client) -> None:
    lago.store = "clickhouse"
    client.post("/api/v1/events", {"event": event("t1", input_tokens=1)})
    client.post("/api/v1/events", {"event": event("t1", input_tokens=2)})
    assert [e["properties"] for e in lago.events] == [{"input_tokens": 2}]


# -- faults -------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_lago_cloud_headers(lago: FakeLago, client: Client) -> None:
    lago.rate_limit_next(1, reset_seconds=2)
    reply = client.post("/api/v1/events", {"event": event("t1")})
    assert reply.status == 429
    assert reply.headers["x-ratelimit-limit"] == "500"
    assert reply.headers["x-ratelimit-remaining"] == "0"
    assert reply.headers["x-ratelimit-reset"] == "2"
    assert reply.headers["retry-after"] == "2"
    assert lago.events == []
    assert client.post("/api/v1/events", {"event": event("t1")}).status == 200


def test_fail_next_fails_n_ingestion_requests_then_recovers(lago: FakeLago, client: Client) -> None:
    lago.fail_next(2, status=503)
    statuses = [client.post("/api/v1/events", {"event": event("t1")}).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert lago.transaction_ids() == ["t1"]
    assert [r.fault for r in lago.requests] == ["respond 503", "respond 503", None]


def test_faults_spare_billing_setup_and_queue_in_order(lago: FakeLago, client: Client) -> None:
    lago.respond_next(1, 401)
    lago.fail_next(1)
    assert client.post("/api/v1/customers", {"customer": {"external_id": "c1"}}).status == 200
    first = client.post("/api/v1/events", {"event": event("t1")})
    assert (first.status, first.body) == (401, {"status": 401, "error": "Unauthorized"})
    assert client.post("/api/v1/events", {"event": event("t1")}).status == 500
    assert lago.pending_faults() == []


def test_commit_then_fail_stores_then_answers_500(lago: FakeLago, client: Client) -> None:
    lago.commit_then_fail_next(1)
    assert client.post("/api/v1/events/batch", {"events": [event("t1"), event("t2")]}).status == 500
    assert lago.transaction_ids() == ["t1", "t2"]
    # The sender's retry learns they were delivered, and nothing is stored twice.
    reply = client.post("/api/v1/events/batch", {"events": [event("t1"), event("t2")]})
    assert set(reply.body["error_details"]) == {"0", "1"}
    assert lago.count_by_transaction_id() == {"t1": 1, "t2": 1}


def test_commit_then_drop_closes_without_a_reply(lago: FakeLago, client: Client) -> None:
    lago.commit_then_fail_next(1, drop=True)
    with pytest.raises(http.client.RemoteDisconnected):
        client.post("/api/v1/events", {"event": event("t1")})
    assert lago.transaction_ids() == ["t1"]
    assert lago.requests[-1].status is None
    assert client.post("/api/v1/events", {"event": event("t1")}).status == 422  # reconnects


def test_drop_next_stores_nothing(lago: FakeLago, client: Client) -> None:
    lago.drop_next(1)
    with pytest.raises(http.client.RemoteDisconnected):
        client.post("/api/v1/events", {"event": event("t1")})
    assert lago.events == []


def test_down_drops_every_request_until_up(lago: FakeLago, client: Client) -> None:
    lago.set_down(True)
    with pytest.raises(http.client.RemoteDisconnected):
        client.get("/api/v1/events")
    lago.set_down(False)
    assert client.get("/api/v1/events").status == 200


def test_refuse_closes_the_port_and_reopens_it(lago: FakeLago, client: Client) -> None:
    port = lago.port
    assert client.get("/api/v1/events").status == 200
    lago.set_down("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    lago.set_down(False)
    assert lago.port == port
    with pytest.raises(OSError):  # the old connection died with the listener: a sender reconnects
        client.post("/api/v1/events", {"event": event("t1")})
    client.close()
    assert client.post("/api/v1/events", {"event": event("t1")}).status == 200


def test_delay_slows_every_reply(lago: FakeLago, client: Client) -> None:
    lago.delay_seconds = 0.3
    started = time.monotonic()
    assert client.get("/api/v1/events").status == 200
    assert time.monotonic() - started >= 0.3


# -- inspection ---------------------------------------------------------------------------------------


def test_keep_alive_connection_reuse_is_counted(lago: FakeLago, client: Client) -> None:
    for i in range(5):
        assert client.post("/api/v1/events", {"event": event(f"t{i}")}).status == 200
    assert client.post("/api/v1/events", {"event": event("t0")}).status == 422  # errors keep it open too
    assert lago.connections_accepted == 1
    assert {r.connection for r in lago.requests} == {1}
    assert all("connection" not in r.headers for r in lago.requests)  # HTTP/1.1 default: keep-alive
    assert lago.requests[0].headers["authorization"] == f"Bearer {KEY}"

    for i in range(3):  # a sender that reconnects every time shows up at once
        one_shot = Client(lago.port)
        try:
            one_shot.post("/api/v1/events", {"event": event(f"x{i}")}, headers={"Connection": "close"})
        finally:
            one_shot.close()
    assert lago.connections_accepted == 4
    assert lago.requests[-1].headers["connection"] == "close"


def test_expect_100_continue_is_answered_at_once(lago: FakeLago) -> None:
    # libcurl asks before sending a body over 1 KiB and waits up to a second for the go-ahead.
    body = json.dumps({"events": [event(f"t{i}", model="m" * 100) for i in range(20)]}).encode()
    head = (f"POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", lago.port), timeout=0.5) as sock:
        sock.sendall(head.encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        with sock.makefile("rb") as reply:
            assert reply.readline().startswith(b"HTTP/1.1 200")
    assert len(lago.wait_for(20, timeout=2)) == 20


def test_stop_does_not_wait_for_idle_keep_alive_clients() -> None:
    lago = FakeLago(KEY).start()
    client = Client(lago.port)
    try:
        assert client.get("/api/v1/events").status == 200
        started = time.monotonic()
        lago.stop()
        assert time.monotonic() - started < 2
    finally:
        client.close()


def test_wait_for_blocks_until_events_arrive(lago: FakeLago) -> None:
    def send() -> None:
        time.sleep(0.1)
        late = Client(lago.port)
        try:
            late.post("/api/v1/events/batch", {"events": [event("t1"), event("t2")]})
        finally:
            late.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert [e["transaction_id"] for e in lago.wait_for(2, timeout=5)] == ["t1", "t2"]
    finally:
        sender.join()
    with pytest.raises(TimeoutError):
        lago.wait_for(3, timeout=0.05)


def test_reset_forgets_everything_but_settings(lago: FakeLago, client: Client) -> None:
    lago.store = "clickhouse"
    client.post("/api/v1/events", {"event": event("t1")})
    lago.fail_next(3)
    lago.reset()
    assert (lago.events, lago.requests, lago.raw_events, lago.connections_accepted) == ([], [], [], 0)
    assert lago.pending_faults() == [] and lago.store == "clickhouse"


# -- billing end to end ---------------------------------------------------------------------------------


def setup_billing(client: Client, subscription_at: str = "2026-08-10T00:00:00Z") -> None:
    metric_ids = {}
    for code, aggregation, field in (("input_tokens", "sum_agg", "input_tokens"),
                                     ("output_tokens", "sum_agg", "output_tokens"),
                                     ("api_calls", "count_agg", None)):
        body = {"name": code, "code": code, "aggregation_type": aggregation}
        if field:
            body["field_name"] = field
        reply = client.post("/api/v1/billable_metrics", {"billable_metric": body})
        assert reply.status == 200, reply.body
        metric_ids[code] = reply.body["billable_metric"]["lago_id"]
    plan = {"name": "LLM", "code": "llm", "interval": "monthly", "amount_cents": 0, "amount_currency": "USD",
            "charges": [
                {"billable_metric_id": metric_ids["input_tokens"], "charge_model": "standard",
                 "properties": {"amount": "0.00001"}},
                {"billable_metric_id": metric_ids["output_tokens"], "charge_model": "package",
                 "properties": {"amount": "15", "package_size": 1_000_000, "free_units": 100_000}},
                {"billable_metric_id": metric_ids["api_calls"], "charge_model": "standard",
                 "properties": {"amount": "0.25"}},
            ]}
    assert client.post("/api/v1/plans", {"plan": plan}).status == 200
    customer = {"external_id": "cust_1", "name": "Acme", "currency": "USD"}
    assert client.post("/api/v1/customers", {"customer": customer}).status == 200
    subscription = {"external_customer_id": "cust_1", "plan_code": "llm", "external_id": "sub_1",
                    "subscription_at": subscription_at}
    first = client.post("/api/v1/subscriptions", {"subscription": subscription})
    again = client.post("/api/v1/subscriptions", {"subscription": subscription})
    assert first.status == again.status == 200
    assert first.body["subscription"]["lago_id"] == again.body["subscription"]["lago_id"]  # idempotent


def test_billing_flow_gives_exact_units_and_cents(lago: FakeLago, client: Client) -> None:
    lago.now = 1786795200  # 2026-08-15T12:00:00Z
    setup_billing(client)
    aug11, aug12, aug05 = "1786449600", "1786536000.25", "1785931200"
    events = [
        event("c1:input_tokens", code="input_tokens", ts=aug11, input_tokens=500),
        event("c1:output_tokens", code="output_tokens", ts=aug11, output_tokens=300_000),
        event("c1:api_calls", code="api_calls", ts=aug11, model="gpt"),
        event("c2:input_tokens", code="input_tokens", ts=aug12, input_tokens="1000000"),
        event("c2:output_tokens", code="output_tokens", ts=aug12, output_tokens=900_000),
        event("c2:api_calls", code="api_calls", ts=aug12, model="gpt"),
        # never billed: before the subscription, an unknown code, another subscription, none at all
        event("c0:input_tokens", code="input_tokens", ts=aug05, input_tokens=999),
        event("c3:mystery", code="mystery", ts=aug12, input_tokens=999),
        event("c4:input_tokens", code="input_tokens", ts=aug12, sub="sub_other", input_tokens=999),
        {**event("c5:input_tokens", code="input_tokens", ts=aug12, sub=None, input_tokens=999),
         "external_customer_id": "cust_1"},
    ]
    assert client.post("/api/v1/events/batch", {"events": events}).status == 200

    reply = client.get("/api/v1/customers/cust_1/current_usage?external_subscription_id=sub_1")
    assert reply.status == 200, reply.body
    usage = reply.body["customer_usage"]
    assert (usage["from_datetime"], usage["to_datetime"]) == ("2026-08-10T00:00:00Z", "2026-08-31T23:59:59Z")
    charges = {c["billable_metric"]["code"]: c for c in usage["charges_usage"]}
    # 1,000,500 tokens at $0.00001 = $10.005, rounded half up to 1001 cents
    assert (charges["input_tokens"]["units"], charges["input_tokens"]["amount_cents"]) == ("1000500.0", 1001)
    # 1,200,000 - 100,000 free = 1,100,000: two started packages of 1M at $15
    assert (charges["output_tokens"]["units"], charges["output_tokens"]["amount_cents"]) == ("1200000.0", 3000)
    assert (charges["api_calls"]["units"], charges["api_calls"]["amount_cents"]) == ("2.0", 50)
    assert charges["input_tokens"]["events_count"] == 2
    assert usage["amount_cents"] == usage["total_amount_cents"] == 4051
    assert usage["currency"] == "USD"


def test_other_aggregations(lago: FakeLago, client: Client) -> None:
    lago.now = 1786795200
    ids = {}
    for code, aggregation in (("peak", "max_agg"), ("users", "unique_count_agg"), ("seats", "latest_agg")):
        reply = client.post("/api/v1/billable_metrics", {"billable_metric": {
            "name": code, "code": code, "aggregation_type": aggregation, "field_name": "v"}})
        ids[code] = reply.body["billable_metric"]["lago_id"]
    plan = {"name": "p", "code": "p", "interval": "monthly", "amount_cents": 100, "amount_currency": "EUR",
            "charges": [{"billable_metric_id": i, "charge_model": "standard", "properties": {"amount": "1"}}
                        for i in ids.values()]}
    assert client.post("/api/v1/plans", {"plan": plan}).status == 200
    assert client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "c", "plan_code": "p", "external_id": "s", "subscription_at": "2026-08-01"}}).status == 200
    values = ["3", 7.5, "2", "alice"]
    events = [event(f"{code}{n}", code=code, sub="s", ts=1786449600 + n, v=v)
              for code in ids for n, v in enumerate(values)]
    assert client.post("/api/v1/events/batch", {"events": events}).status == 200
    usage = client.get("/api/v1/customers/c/current_usage?external_subscription_id=s").body["customer_usage"]
    units = {c["billable_metric"]["code"]: c["units"] for c in usage["charges_usage"]}
    # latest_agg: the last event carries no number, so the latest numeric value ("2") counts
    assert units == {"peak": "7.5", "users": "4.0", "seats": "2.0"}


def _at(text: str) -> Decimal:
    moment = parse_iso8601(text)
    assert moment is not None
    return moment


@pytest.mark.parametrize("interval, billing_time, started, now, period", [
    ("monthly", "calendar", "2026-08-10T09:30:00Z", "2026-08-15", ("2026-08-10T09:30:00Z", "2026-09-01")),
    ("monthly", "calendar", "2026-01-01", "2026-08-15", ("2026-08-01", "2026-09-01")),
    ("monthly", "anniversary", "2026-01-31", "2026-03-05", ("2026-02-28", "2026-03-31")),
    ("weekly", "calendar", "2026-01-01", "2026-08-12", ("2026-08-10", "2026-08-17")),
    ("quarterly", "calendar", "2026-01-01", "2026-08-15", ("2026-07-01", "2026-10-01")),
    ("yearly", "anniversary", "2024-02-29", "2026-03-01", ("2026-02-28", "2027-02-28")),
])
def test_billing_periods(interval: str, billing_time: str, started: str, now: str, period: tuple[str, str]) -> None:
    assert billing_period(interval, billing_time, _at(started), _at(now)) == (_at(period[0]), _at(period[1]))


def test_current_usage_errors(lago: FakeLago, client: Client) -> None:
    lago.now = 1786795200
    reply = client.get("/api/v1/customers/nobody/current_usage?external_subscription_id=sub_1")
    assert (reply.status, reply.body) == (404, {"status": 404, "error": "Not Found", "code": "customer_not_found"})
    setup_billing(client, subscription_at="2026-09-01T00:00:00Z")  # starts after "now": pending
    for path in ("/api/v1/customers/cust_1/current_usage?external_subscription_id=sub_1",
                 "/api/v1/customers/cust_1/current_usage?external_subscription_id=sub_x",
                 "/api/v1/customers/cust_1/current_usage"):
        reply = client.get(path)
        assert (reply.status, reply.body) == (
            405, {"status": 405, "error": "Method Not Allowed", "code": "no_active_subscription"})


def test_billing_objects_are_validated(client: Client) -> None:
    reply = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "m", "code": "m", "aggregation_type": "sum_agg"}})
    assert reply.body == validation({"field_name": ["value_is_mandatory"]})
    reply = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "m", "code": "m", "aggregation_type": "weighted_sum_agg", "field_name": "x"}})
    assert reply.status == 501  # real in Lago, not in the fake: loud, not wrong
    metric = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "m", "code": "m", "aggregation_type": "count_agg"}}).body["billable_metric"]
    assert client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "m", "code": "m", "aggregation_type": "count_agg"}}).body == validation({"code": ["value_already_exist"]})
    plan = {"name": "p", "code": "p", "interval": "monthly", "amount_cents": 0, "amount_currency": "USD",
            "charges": [{"billable_metric_id": metric["lago_id"], "charge_model": "package",
                         "properties": {"amount": 15, "package_size": 0, "free_units": 0}}]}
    assert client.post("/api/v1/plans", {"plan": plan}).body == validation(
        {"amount": ["invalid_amount"], "package_size": ["invalid_package_size"]})
    plan["charges"][0]["billable_metric_id"] = "no-such-id"
    assert client.post("/api/v1/plans", {"plan": plan}).body["code"] == "billable_metric_not_found"
    assert client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "c", "plan_code": "nope"}}).body["code"] == "plan_not_found"
    assert client.post("/api/v1/customers", {"customer": {"name": "no id"}}).body == validation(
        {"external_id": ["value_is_mandatory"]})
    assert client.post("/api/v1/plans", {}).status == 400


# -- events listing --------------------------------------------------------------------------------------


def test_events_paging_filters_and_meta(lago: FakeLago, client: Client) -> None:
    events = [event(f"t{i:02d}", ts=1786000000 + i) for i in range(25)]
    events += [event("other", code="other"), event("sub2", sub="sub_2")]
    for chunk in (events[:20], events[20:]):
        assert client.post("/api/v1/events/batch", {"events": chunk}).status == 200

    query = "/api/v1/events?external_subscription_id=sub_1&code=llm_usage&per_page=10"
    first = client.get(query).body
    assert first["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None, "total_pages": 3, "total_count": 25}
    assert [e["transaction_id"] for e in first["events"]][:2] == ["t24", "t23"]  # newest first
    last = client.get(query + "&page=3").body
    assert last["meta"] == {"current_page": 3, "next_page": None, "prev_page": 2, "total_pages": 3, "total_count": 25}
    assert [e["transaction_id"] for e in last["events"]] == ["t04", "t03", "t02", "t01", "t00"]

    ranged = client.get("/api/v1/events?code=llm_usage&timestamp_from=2026-08-06T07:06:45Z"
                        "&timestamp_to=2026-08-06T07:06:47Z").body
    assert [e["transaction_id"] for e in ranged["events"]] == ["t07", "t06", "t05"]
    empty = client.get("/api/v1/events?code=none").body
    assert empty == {"events": [], "meta": {"current_page": 0, "next_page": None, "prev_page": None,
                                            "total_pages": 0, "total_count": 0}}
    assert client.get("/api/v1/events?timestamp_from=yesterday").body == validation(
        {"timestamp_from": ["invalid_date"]})
    assert client.get("/api/v1/events/t07").body["event"]["transaction_id"] == "t07"
    assert client.get("/api/v1/events/nope").body["code"] == "event_not_found"


# -- as a separate process ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["-m", "tests.python.fakes.lago"], ["tests/python/fakes/lago.py"]])
def test_subprocess_mode_with_fake_control(command: list[str]) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    process = subprocess.Popen([sys.executable, *command, "--port", "0", "--api-key", KEY],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        client = Client(port)
        try:
            assert client.post("/api/v1/events", {"event": {**event("t1"), "external_customer_id": "c"}}).status == 200
            mode = client.post("/_fake/mode", {"fail_next": {"n": 1, "status": 502}, "delay_seconds": 0})
            assert mode.body["pending_faults"] == ["respond 502"]
            assert client.post("/api/v1/events", {"event": event("t2")}).status == 502
            assert client.post("/api/v1/events", {"event": event("t2")}).status == 200
            assert client.get("/_fake/wait?count=2&timeout=1").status == 200
            assert client.get("/_fake/wait?count=3&timeout=0.05").status == 408
            stored = client.get("/_fake/events").body["events"]
            assert [(e["transaction_id"], e["timestamp_seconds"]) for e in stored] == [
                ("t1", "1786000000.5"), ("t2", "1786000000.5")]
            assert client.get("/_fake/raw_events").body["raw_events"][0]["external_customer_id"] == "c"
            requests = client.get("/_fake/requests").body["requests"]
            assert [r["status"] for r in requests] == [200, 502, 200]
            assert client.get("/_fake/stats").body["connections_accepted"] == 1
            assert client.post("/_fake/mode", {"no_such_mode": 1}).status == 400
            assert client.post("/_fake/mode", {"now": "next tuesday"}).status == 400
            assert client.post("/_fake/mode", {"store": "clickhouse"}).body["store"] == "clickhouse"
            assert client.post("/_fake/reset").status == 200
            assert client.get("/_fake/events").body["events"] == []
        finally:
            client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        process.stdout.close()


def test_control_api_can_refuse_for_a_while() -> None:
    with FakeLago(KEY) as lago:
        client = Client(lago.port)
        try:
            reply = client.post("/_fake/mode", {"down": "refuse", "seconds": 0.5})
            assert (reply.status, reply.body["down"]) == (200, "refuse")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", lago.port), timeout=2).close()
            deadline = time.monotonic() + 5
            while lago.down and time.monotonic() < deadline:
                time.sleep(0.05)
            client.close()  # its connection was closed with the listener
            assert client.post("/api/v1/events", {"event": event("t1")}).status == 200
        finally:
            client.close()
