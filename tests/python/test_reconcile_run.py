"""Reconciliation's runner without the proxy process: spend log rows in a real store, events sent by
a real pipeline with two codes (`<call id>:<code>`), the strict fake Lago. The events rebuilt from the
rows are the ones that were sent, byte for byte; a lost event is re-sent and then found."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import llmbill
from llmbill._core import Pipeline, Usage
from llmbill.lago.reader import LagoReader
from llmbill.calls import call_timestamp_ms
from llmbill.lago.reconcile_run import expected_events, reconcile_async
from llmbill.proxy.store import SpendBatch, SpendLog, open_store
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import FAST, KEY, ingestion_requests

CODES = ["input", "output"]
NOW = datetime.now(timezone.utc).replace(microsecond=123456)


def a_call(i: int) -> tuple[SpendLog, Usage]:
    usage = Usage(prompt_tokens=100 + i, completion_tokens=20, cached_tokens=10, cache_creation_tokens=5 * (i % 2),
                  reasoning_tokens=3, estimated=i == 2)
    start = NOW - timedelta(seconds=30 - i, microseconds=i * 777)
    meta: dict[str, Any] = {"key_alias": "alias"} if i % 2 else {}
    if usage.cache_creation_tokens:
        meta["cache_creation_tokens"] = usage.cache_creation_tokens
    if usage.estimated:
        meta["estimated"] = True
    unpriced = i == 3
    if unpriced:
        meta["unpriced"] = True
    cost = Decimal(0) if unpriced else llmbill.cost("gpt-4o", usage).total
    log = SpendLog(request_id=f"call-{i}", call_type="chat_completion", model="gpt-4o", api_key="h", user="u-1",
                   team_id="t-1", end_user=f"cust-{i % 2}", spend=cost, prompt_tokens=usage.prompt_tokens,
                   completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens,
                   reasoning_tokens=usage.reasoning_tokens, start_time=start, end_time=start, status="success",
                   metadata=meta)
    return log, usage


def test_rebuilt_events_are_the_sent_ones_and_a_lost_one_is_resent(tmp_path: Path, fake_lago: FakeLago) -> None:
    settings = llmbill.LagoSettings.from_env({"LAGO_API_BASE": fake_lago.url, "LAGO_API_KEY": KEY,
                                              "LAGO_API_EVENT_CODE": ",".join(CODES)})
    pipeline = Pipeline(spool_dir=tmp_path / "spool", api_base=fake_lago.url, api_key=KEY,
                        **{**FAST, "event_codes": CODES})
    logs = []
    for i in range(5):  # as the proxy's LLM route does it
        log, usage = a_call(i)
        logs.append(log)
        pipeline.submit(call_id=log.request_id, timestamp_ms=call_timestamp_ms(log.start_time), model=log.model,
                        usage=usage, cost=log.spend, unpriced=bool(log.metadata.get("unpriced")),
                        key_alias=str(log.metadata.get("key_alias", "")), user_id=log.user, team_id=log.team_id,
                        end_user_id=log.end_user)
    assert pipeline.flush(5)
    sent = {raw["transaction_id"]: raw for raw in fake_lago.raw_events}
    expected, unbillable = expected_events(logs, settings)
    assert unbillable == [] and len(expected) == 10
    assert {e.transaction_id: json.loads(e.event_json) for e in expected} == sent
    bodies = b"".join(r.body for r in ingestion_requests(fake_lago))
    assert all(e.event_json.encode() in bodies for e in expected)  # byte for byte: a resend is identical
    assert sorted(sent) == sorted(f"call-{i}:{c}" for i in range(5) for c in CODES)

    async def run(fix: bool) -> Any:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        try:
            if not fix:
                await store.apply_spend(SpendBatch(logs=logs))
            start = call_timestamp_ms(NOW - timedelta(minutes=5))
            end = call_timestamp_ms(NOW + timedelta(seconds=1))
            return await reconcile_async(store, LagoReader(fake_lago.url, KEY), settings, start, end,
                                         submit=pipeline.submit_event if fix else None,
                                         flush=pipeline.flush if fix else None, wait=5)
        finally:
            await store.close()

    report = asyncio.run(run(fix=False))
    assert report.clean and report.calls == 5 and report.proxy_total == report.lago_total
    assert report.proxy_total.events == 10 and report.proxy_total.cost == 2 * sum(log.spend for log in logs)
    fake_lago.drop_events(["call-2:output"])
    report = asyncio.run(run(fix=True))
    assert report.fixed == ["call-2:output"] and report.clean
    assert fake_lago.count_by_transaction_id()["call-2:output"] == 1
    pipeline.close(1)
