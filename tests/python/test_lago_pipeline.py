"""The C++ pipeline delivers to Lago exactly once, over real HTTP to the strict fake Lago.

Batching and keep-alive, restarts, outages, lost replies, rate limits, configuration errors, both of
Lago's stores and the file sink (refused events: test_lago_refusals.py; crashes: test_lago_crash.py).
Each test checks what Lago stored (every transaction_id exactly once), not only the counters.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from llmbill._core import Pipeline
from tests.python.fakes.http_server import RecordedRequest
from tests.python.fakes.lago import INGESTION, FakeLago
from tests.python.lago_support import (
    FAST,
    KEY,
    batch_sizes,
    built_events,
    eventually,
    ingestion_requests,
    raw_by_id,
    stored_once,
    submit_call,
    submit_many,
)

MakePipeline = Callable[..., Pipeline]


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


def test_clean_restart_resends_nothing(tmp_path: Path, fake_lago: FakeLago) -> None:
    first = Pipeline(spool_dir=tmp_path / "spool", api_base=fake_lago.url, api_key=KEY, **FAST)
    ids = submit_many(first, 120)
    assert first.close(10) is True
    del first

    second = Pipeline(spool_dir=tmp_path / "spool", api_base=fake_lago.url, api_key=KEY, **FAST)
    try:
        assert second.stats()["recovered"] == 0  # every delivered event was acknowledged in the spool
        assert second.flush(2)
    finally:
        second.close(1)
    stored_once(fake_lago, ids)
    assert sum(batch_sizes(fake_lago)) == 120


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
    assert stats["duplicates"] == len(requests[0].json["events"]) > 0  # the batch Lago had stored
    assert stats["dead_lettered"] == 0 and pipeline.dead_letters() == []


def test_clickhouse_store_collapses_resends_because_the_timestamp_is_fixed(make_pipeline: MakePipeline) -> None:
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
        pipeline = make_pipeline(api_base=lago.url, api_key=KEY, flush_interval=0.3, backoff_base=0.01,
                                 backoff_cap=0.05)
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
        # Made here, not by make_pipeline, so that dropping it releases the spool for its successor
        # (a closed Pipeline keeps its spool locked while the object lives: see the test below).
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
