"""The proxy's operator pieces one by one: where /metrics is open, which budget refused a call,
pipeline counters mirrored by their increase, the log formats, the command-line time forms, and
event codes held while Lago does not know them."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from llmbill import LagoSettings, Pipeline
from llmbill.billing import ConfigError
from llmbill.lago.timeparse import UsageError, parse_duration, parse_time
from llmbill.proxy import billing_watch, metrics
from llmbill.proxy.app import ADMIN, PUBLIC, ProxyApp
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.logs import JsonFormatter, TextFormatter
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import FAST, KEY

MODELS = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}


def test_metrics_need_the_master_key_unless_configured_open() -> None:
    general = {"master_key": "sk-master-0123456789abcdef", "database_url": "sqlite:////tmp/unused-llmbill.db"}
    closed = ProxyApp(load_config_dict({**MODELS, "general_settings": general}))
    assert closed.routes[("GET", "/metrics")][1] == ADMIN
    assert closed.routes[("POST", "/billing/reconcile")][1] == ADMIN
    opened = ProxyApp(load_config_dict({**MODELS, "general_settings": {**general, "metrics_open": True}}))
    assert opened.routes[("GET", "/metrics")][1] == PUBLIC
    assert opened.routes[("POST", "/billing/reconcile")][1] == ADMIN
    with pytest.raises(ConfigError, match="general_settings.metrics_open"):
        load_config_dict({**MODELS, "general_settings": {"metrics_open": "yes"}})


@pytest.mark.parametrize("message, kind", [
    ("ExceededBudget: End User=c1 over budget. Spend=1, Budget=1", "customer"),
    ("ExceededBudget: User=u1 over budget. Spend=1, Budget=1", "user"),
    ("Budget has been exceeded! Team=t1 Current cost: 1, Max budget: 1", "team"),
    ("Budget has been exceeded! Current cost: 1, Max budget: 0", "key"),
    ("something new", "other"),
])
def test_budget_refusals_are_counted_by_kind(message: str, kind: str) -> None:
    assert metrics.budget_kind(message) == kind
    assert metrics.budget_kind(message, "tier") == "tier"  # a refusal that names its kind wins


def test_pipeline_counters_are_mirrored_by_their_increase() -> None:
    def delivered() -> float:
        return REGISTRY.get_sample_value("llmbill_billing_events_total", {"outcome": "delivered"}) or 0.0

    mirror, before = metrics.PipelineMirror(), delivered()
    mirror.sync({"delivered": 5, "pending": 2, "spool_bytes": 100, "oldest_pending_age_s": 1.5})
    mirror.sync({"delivered": 5})
    mirror.sync({"delivered": 8})
    assert delivered() - before == 8
    assert REGISTRY.get_sample_value("llmbill_billing_pending_events") == 0


def _record(fields: dict[str, object]) -> logging.LogRecord:
    record = logging.LogRecord("llmbill.proxy.access", logging.INFO, "", 0, "POST /chat/completions %d", (200,), None)
    record.fields = fields
    return record


def test_log_lines_as_text_and_as_json() -> None:
    fields = {"request_id": "abc", "cost": "0.000026", "upstream_ms": None}
    line = json.loads(JsonFormatter().format(_record(fields)))
    assert (line["message"], line["request_id"], line["cost"], line["upstream_ms"]) == (
        "POST /chat/completions 200", "abc", "0.000026", None)
    assert line["level"] == "info" and isinstance(line["pid"], int)
    assert TextFormatter().format(_record(fields)).endswith(
        "POST /chat/completions 200 request_id=abc cost=0.000026 upstream_ms=-")


def test_command_line_times_and_durations() -> None:
    now = datetime(2026, 8, 6, 12, tzinfo=timezone.utc)
    assert parse_time("now", "--to", now) == now
    assert parse_time("-90m", "--from", now) == now - timedelta(minutes=90)
    assert parse_time("2026-08-06T10:00:00Z", "--from") == datetime(2026, 8, 6, 10, tzinfo=timezone.utc)
    assert parse_time("2026-08-06T12:00:00+02:00", "--from") == datetime(2026, 8, 6, 10, tzinfo=timezone.utc)
    with pytest.raises(UsageError, match="--from"):
        parse_time("yesterday", "--from")
    assert parse_duration("31d", "--max-age") == timedelta(days=31)
    with pytest.raises(UsageError):
        parse_duration("a month", "--max-age")


def test_codes_lago_does_not_know_are_held_until_lago_knows_them(tmp_path: Path, fake_lago: FakeLago) -> None:
    settings = LagoSettings.from_env({"LAGO_API_BASE": fake_lago.url, "LAGO_API_KEY": KEY,
                                      "LAGO_API_EVENT_CODE": "known,typo"})
    options = {**FAST, "event_codes": ["known", "typo"]}
    pipeline = Pipeline(spool_dir=tmp_path / "spool", api_base=fake_lago.url, api_key=KEY, **options)
    state = SimpleNamespace(billing=settings, pipeline=pipeline)
    try:
        fake_lago.add_metric("known")
        asyncio.run(billing_watch.check_codes(state))  # type: ignore[arg-type]
        assert list(pipeline.held_codes()) == ["typo"]
        assert "not a billable metric in Lago" in pipeline.held_codes()["typo"]
        fake_lago.stop()  # Lago out of reach: nothing held or released
        asyncio.run(billing_watch.check_codes(state, timeout=1))  # type: ignore[arg-type]
        assert list(pipeline.held_codes()) == ["typo"]
        fake_lago.start()
        fake_lago.add_metric("typo")
        asyncio.run(billing_watch.check_codes(state))  # type: ignore[arg-type]
        assert pipeline.held_codes() == {}
    finally:
        pipeline.close(0.5)
