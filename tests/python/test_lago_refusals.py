"""Events Lago refuses, through the real pipeline and the strict fake Lago: a refused event is
dead-lettered with Lago's reason and its batch-mates are delivered exactly once, on current
(all-or-nothing) and legacy (partial) Lago alike; a too-large batch is split; a full spool refuses
new calls loudly and loses nothing it took.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest

import llmbill
from llmbill._core import Pipeline
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import (
    CODE,
    FAST,
    KEY,
    batch_sizes,
    ingestion_requests,
    stored_once,
    submit_call,
    submit_many,
)

MakePipeline = Callable[..., Pipeline]


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
    # Past the spool's bound, events are held in memory (max_unspooled) and only then refused.
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, max_spool_bytes=4000, max_unspooled=3)
    accepted: list[str] = []
    with pytest.raises(llmbill.SpoolFullError):
        for i in range(100):
            accepted += submit_call(pipeline, f"full-{i}")
    assert 0 < len(accepted) < 100
    refused = f"full-{len(accepted)}"
    assert pipeline.stats()["enqueued"] == len(accepted)
    assert not pipeline.can_accept() and pipeline.stats()["unspooled"] == 3

    fake_lago.set_down(False)
    assert pipeline.flush(10)
    stored_once(fake_lago, accepted)
    assert refused not in fake_lago.count_by_transaction_id()
    assert submit_call(pipeline, "after-full") == ["after-full"]  # delivered events free the space
    assert pipeline.flush(5)
    assert fake_lago.count_by_transaction_id()["after-full"] == 1


def test_a_batch_over_lagos_limit_is_split_and_delivered(make_pipeline: MakePipeline) -> None:
    # Self-hosted Lago may run with a smaller LAGO_EVENTS_BATCH_MAX_LENGTH than llmbill's 100.
    with FakeLago(api_key=KEY, max_batch=20) as lago:
        pipeline = make_pipeline(api_base=lago.url, api_key=KEY, flush_interval=0.3)
        ids = submit_many(pipeline, 100)
        assert pipeline.flush(10)
        stored_once(lago, ids)
        sizes = batch_sizes(lago)
        assert sizes[0] == 100 and ingestion_requests(lago)[0].status == 422
        assert all(size <= 20 for size in sizes[-4:])
        stats = pipeline.stats()
        assert (stats["delivered"], stats["dead_lettered"], stats["duplicates"]) == (100, 0, 0)
        pipeline.close(1)


def test_400_is_a_sender_bug_dead_lettered_with_the_body(fake_lago: FakeLago, make_pipeline: MakePipeline) -> None:
    fake_lago.fail_next(1, status=400)
    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, flush_interval=0.3)
    ids = submit_many(pipeline, 4)
    assert pipeline.flush(5)
    assert fake_lago.events == []
    letters = pipeline.dead_letters()
    assert sorted(d["id"] for d in letters) == sorted(ids)
    assert all("400" in d["reason"] and "BadRequest" in d["reason"] for d in letters)
    stats = pipeline.stats()
    assert (stats["dead_lettered"], stats["delivered"], stats["pending"]) == (4, 0, 0)


