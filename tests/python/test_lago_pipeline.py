"""The C++ pipeline delivers to Lago exactly once, over real HTTP to the strict fake Lago.

Batching and keep-alive, outages, lost replies, partly refused batches, rate limits, configuration
errors, both of Lago's stores and the file sink. Each test checks what Lago stored (every
transaction_id exactly once), not only what the pipeline's counters say.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import llmbill
from llmbill._core import Pipeline
from tests.python.fakes.http_server import RecordedRequest
from tests.python.fakes.lago import INGESTION, FakeLago
from tests.python.lago_support import (
    CODE,
    FAST,
    KEY,
    batch_sizes,
    built_events,
    eventually,
    ingestion_requests,
    raw_by_id,
    stored_once,
    submit_call,
)

MakePipeline = Callable[..., Pipeline]


def submit_many(pipeline: Pipeline, n: int, prefix: str = "call") -> list[str]:
    ids: list[str] = []
    for i in range(n):
        ids += submit_call(pipeline, f"{prefix}-{i}", end_user_id=f"cust-{i % 5}")
    return ids


# -- batching and connections ----------------------------------------------------------------------


def test_250_calls_go_in_few_batches_of_at_most_100(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    ids = submit_many(pipeline, 250)
    assert pipeline.flush(10)

    stored_once(fake_lago, ids)
    sizes = batch_sizes(fake_lago)
    assert max(sizes) <= 100
    assert sum(sizes) == 250  # no fault: nothing was sent twice
    assert len(sizes) <= 25, f"{len(sizes)} requests for 250 events: not batching ({sizes})"
    assert all(r.path == "/api/v1/events/batch" for r in ingestion_requests(fake_lago))
    stats = pipeline.stats()
    assert (stats["delivered"], stats["duplicates"], stats["dead_lettered"], stats["pending"]) == (250, 0, 0, 0)
    assert stats["batches"] == len(sizes)


def test_many_batches_share_one_keep_alive_connection(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    ids: list[str] = []
    for round_ in range(20):
        ids += submit_many(pipeline, 5, prefix=f"r{round_}")
        assert pipeline.flush(5)

    stored_once(fake_lago, ids)
    requests = ingestion_requests(fake_lago)
    assert len(requests) >= 20
    assert fake_lago.connections_accepted <= 3
    assert len({r.connection for r in requests}) <= 3
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in requests)
    assert all(r.headers.get("content-type", "").startswith("application/json") for r in requests)


# -- Lago unreachable or failing ---------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["drop", "refuse", "503", "500"])
def test_outage_then_recovery_delivers_every_event_once(fake_lago: FakeLago, make_pipeline: MakePipeline,
                                                        outage: str) -> None:
    if outage in ("drop", "refuse"):
        fake_lago.set_down(outage)
    else:
        fake_lago.fail_next(6, status=int(outage))
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    ids = submit_many(pipeline, 150)

    eventually(lambda: pipeline.stats()["retried"] >= 150, what="a few failed attempts")
    if outage in ("drop", "refuse"):
        assert fake_lago.events == []
        assert pipeline.stats()["pending"] == 150
        assert "unreachable" in pipeline.stats()["last_error"]
        assert pipeline.stats()["oldest_pending_age_s"] > 0
        fake_lago.set_down(False)
    assert pipeline.flush(10)

    stored_once(fake_lago, ids)
    stats = pipeline.stats()
    assert (stats["delivered"], stats["dead_lettered"], stats["pending"]) == (150, 0, 0)
    assert pipeline.dead_letters() == []


@pytest.mark.parametrize("drop", [False, True], ids=["reply-500", "reply-lost"])
def test_stored_but_unanswered_batch_is_resent_and_deduplicated(fake_lago: FakeLago, make_pipeline: MakePipeline,
                                                                drop: bool) -> None:
    fake_lago.commit_then_fail_next(1, drop=drop)
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, flush_interval=0.3)
    ids = submit_many(pipeline, 40)
    assert pipeline.flush(10)

    stored_once(fake_lago, ids)
    requests = ingestion_requests(fake_lago)
    assert requests[0].fault is not None and len(requests) >= 2
    assert requests[1].status == 422  # Lago's answer to the resend: value_already_exist
    stats = pipeline.stats()
    assert stats["delivered"] == 40
    assert stats["duplicates"] > 0
    assert stats["dead_lettered"] == 0 and pipeline.dead_letters() == []


def test_clickhouse_store_collapses_resends_because_the_timestamp_is_fixed(tmp_path: Path,
                                                                          make_pipeline: MakePipeline) -> None:
    with FakeLago(api_key=KEY, store="clickhouse") as lago:
        lago.commit_then_fail_next(2)  # the same batch is stored three times over
        pipeline = make_pipeline(api_base=lago.url, api_key=KEY, flush_interval=0.3)
        ids = submit_many(pipeline, 30)
        assert pipeline.flush(10)

        stored_once(lago, ids)
        for tid, copies in raw_by_id(lago).items():
            assert len(copies) == 3, tid
            assert len({c["timestamp"] for c in copies}) == 1, f"{tid} was resent with a new timestamp"
            assert copies[0] == copies[1] == copies[2]
        stats = pipeline.stats()
        assert (stats["delivered"], stats["duplicates"], stats["dead_lettered"]) == (30, 0, 0)
        pipeline.close(1)


# -- events Lago refuses -----------------------------------------------------------------------------


def bad_event(kind: str) -> dict[str, Any]:
    event: dict[str, Any] = {"transaction_id": "bad-1", "external_subscription_id": "cust-1", "code": CODE,
                             "timestamp": "1786000000.5", "properties": {"input_tokens": 5}}
    if kind == "iso-timestamp":
        event["timestamp"] = "2026-08-06T07:06:40Z"
    elif kind == "unreadable-timestamp":
        event["timestamp"] = "not-a-time"
    elif kind == "nested-properties":
        event["properties"] = {"usage": {"input_tokens": 5}}
    return event


@pytest.mark.parametrize("kind, lago_error", [("iso-timestamp", "invalid_format"),
                                              ("nested-properties", "value_is_invalid")])
@pytest.mark.parametrize("legacy", [False, True], ids=["all-or-nothing", "legacy-partial"])
def test_refused_event_is_dead_lettered_and_the_rest_delivered_once(make_pipeline: MakePipeline, kind: str,
                                                                   lago_error: str, legacy: bool) -> None:
    with FakeLago(api_key=KEY, legacy_partial_batches=legacy) as lago:
        pipeline = make_pipeline(api_base=lago.url, api_key=KEY, flush_interval=0.5)  # one batch
        ids = submit_many(pipeline, 2, prefix="before")
        pipeline.submit_event(json.dumps(bad_event(kind)))
        ids += submit_many(pipeline, 3, prefix="after")
        assert pipeline.flush(10)

        first = ingestion_requests(lago)[0]
        assert len(first.json["events"]) == 6 and first.status == 422
        assert first.json["events"][2]["transaction_id"] == "bad-1"
        resend = ingestion_requests(lago)[1]  # the good events only, as a new batch
        assert [e["transaction_id"] for e in resend.json["events"]] == ids
        assert resend.status == (422 if legacy else 200)  # legacy Lago kept them: value_already_exist
        stored_once(lago, ids)
        assert "bad-1" not in lago.count_by_transaction_id()

        letters = pipeline.dead_letters()
        assert [d["id"] for d in letters] == ["bad-1"]
        assert lago_error in letters[0]["reason"]
        assert json.loads(letters[0]["event"]) == bad_event(kind)  # kept exactly as sent
        stats = pipeline.stats()
        assert (stats["delivered"], stats["dead_lettered"], stats["pending"]) == (5, 1, 0)
        assert stats["duplicates"] == (5 if legacy else 0)
        pipeline.close(1)


def test_event_with_an_unreadable_timestamp_is_dead_lettered_by_lago(fake_lago: FakeLago,
                                                                    make_pipeline: MakePipeline) -> None:
    # submit_event() replays events (dead letters, reconciliation): Lago is the judge of their fields.
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    ids = submit_many(pipeline, 2)
    pipeline.submit_event(json.dumps(bad_event("unreadable-timestamp")))
    assert pipeline.flush(10)
    stored_once(fake_lago, ids)
    (letter,) = pipeline.dead_letters()
    assert letter["id"] == "bad-1" and "invalid_format" in letter["reason"]


def test_an_unreadable_timestamp_in_the_spool_never_blocks_recovery(tmp_path: Path, fake_lago: FakeLago,
                                                                    make_pipeline: MakePipeline) -> None:
    fake_lago.set_down("refuse")
    first = Pipeline(spool_dir=tmp_path / "spool", api_base=fake_lago.url, api_key=KEY, **FAST)
    try:
        ids = submit_many(first, 3)
        with contextlib.suppress(llmbill.Error, ValueError):  # refusing the event would be fine
            first.submit_event(json.dumps(bad_event("unreadable-timestamp")))
    finally:
        first.close(0.05)
    del first
    fake_lago.set_down(False)

    second = make_pipeline(api_base=fake_lago.url, api_key=KEY)  # must open: the spool holds billing data
    assert second.flush(10)
    stored_once(fake_lago, ids)
    assert [d["id"] for d in second.dead_letters()] in ([], ["bad-1"])


def test_full_spool_refuses_new_calls_loudly_and_delivers_the_rest(fake_lago: FakeLago,
                                                                   make_pipeline: MakePipeline) -> None:
    fake_lago.set_down("refuse")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, max_spool_bytes=4000)
    accepted: list[str] = []
    with pytest.raises(llmbill.SpoolFullError):
        for i in range(100):
            accepted += submit_call(pipeline, f"full-{i}")
    assert 0 < len(accepted) < 100
    refused = f"full-{len(accepted)}"
    assert pipeline.stats()["enqueued"] == len(accepted)

    fake_lago.set_down(False)
    assert pipeline.flush(10)
    stored_once(fake_lago, accepted)
    assert refused not in fake_lago.count_by_transaction_id()
    assert submit_call(pipeline, "after-full") == ["after-full"]  # delivered events free the space
    assert pipeline.flush(5)
    assert fake_lago.count_by_transaction_id()["after-full"] == 1


# -- rate limits ---------------------------------------------------------------------------------------


class TimedLago(FakeLago):
    """The fake Lago, noting when each ingestion request arrived (monotonic seconds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []

    def _serve(self, request: RecordedRequest) -> Any:
        if request.method == "POST" and request.path in INGESTION:
            self.arrivals.append(time.monotonic())
        return super()._serve(request)


@pytest.mark.parametrize("header", ["x-ratelimit-reset", "retry-after"])
def test_429_waits_for_the_reset_before_retrying(make_pipeline: MakePipeline, header: str) -> None:
    with TimedLago(api_key=KEY) as lago:
        if header == "x-ratelimit-reset":
            lago.rate_limit_next(1, reset_seconds=1, retry_after=False)
        else:
            lago.respond_next(1, 429, headers={"Retry-After": "1"})
        pipeline = make_pipeline(api_base=lago.url, api_key=KEY, backoff_base=0.01, backoff_cap=0.05)
        ids = submit_many(pipeline, 10)
        assert pipeline.flush(10)

        stored_once(lago, ids)
        assert [r.status for r in ingestion_requests(lago)] == [429, 200]
        waited = lago.arrivals[1] - lago.arrivals[0]
        assert 1.0 <= waited < 2.5, f"retried after {waited:.3f}s, the reset was 1 s"
        assert "429" in pipeline.stats()["last_error"]
        pipeline.close(1)


# -- configuration errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault, status", [("wrong-key", 401), ("read-only-key", 403), ("wrong-base", 404)])
def test_config_error_keeps_events_until_fixed(tmp_path: Path, make_pipeline: MakePipeline, fault: str,
                                               status: int) -> None:
    with FakeLago(api_key=KEY, read_only_key="read-only") as lago:
        base, key = lago.url, KEY
        if fault == "wrong-key":
            key = "not-the-key"
        elif fault == "read-only-key":
            key = "read-only"
        else:
            base = lago.url + "/lago"
        # Made here, not by make_pipeline, so that dropping it releases the spool for its successor.
        broken = Pipeline(spool_dir=tmp_path / "spool", api_base=base, api_key=key, **FAST)
        try:
            ids = submit_many(broken, 30)
            eventually(lambda: broken.stats()["config_errors"] >= 2, what="two refused attempts")
            stats = broken.stats()
            assert stats["pending"] == 30
            assert (stats["delivered"], stats["dead_lettered"]) == (0, 0)
            assert str(status) in stats["last_error"]
            assert "LAGO_API_KEY" in stats["last_error"] or "LAGO_API_BASE" in stats["last_error"]
            assert broken.dead_letters() == []
            assert lago.events == []
            assert {r.status for r in lago.requests} == {status}
        finally:
            settled = broken.close(0.05)
        assert settled is False  # nothing settled; the events stay in the spool
        del broken

        fixed = make_pipeline(api_base=lago.url + "/api/v1/", api_key=KEY)
        assert fixed.stats()["recovered"] == 30
        assert fixed.flush(10)
        stored_once(lago, ids)
        assert fixed.stats()["delivered"] == 30
        fixed.close(1)


def test_a_closed_pipeline_lets_the_next_one_open_its_spool(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    # The natural way to fix a wrong key: close the old pipeline, open a new one on the same spool.
    # `pipeline = Pipeline(...)` builds the new one while the old object is still referenced.
    pipeline = make_pipeline(api_base=fake_lago.url, api_key="not-the-key")
    ids = submit_many(pipeline, 5)
    eventually(lambda: pipeline.stats()["config_errors"] >= 1, what="a 401")
    assert pipeline.close(0.05) is False

    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY)
    assert pipeline.stats()["recovered"] == 5
    assert pipeline.flush(10)
    stored_once(fake_lago, ids)


# -- the file sink -----------------------------------------------------------------------------------


def test_file_sink_writes_one_json_line_per_event(tmp_path: Path, make_pipeline: MakePipeline) -> None:
    sink = tmp_path / "out" / "events.jsonl"
    pipeline = make_pipeline(api_base="", sink_file=sink)
    calls = [(f"file-{i}", 1786000000000 + i * 1001, f"cust-{i}") for i in range(12)]
    for call_id, ts, customer in calls:
        submit_call(pipeline, call_id, timestamp_ms=ts, end_user_id=customer)
    assert pipeline.flush(5)
    assert pipeline.describe().startswith("file ")

    lines = sink.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [e for c in calls for e in built_events(*c)]
    assert pipeline.stats()["delivered"] == 12
