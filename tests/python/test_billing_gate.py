"""The billing gate (proxy/billing_gate.py) and what it rests on: a billable call is forwarded only
while its Lago event can be made durable, per `general_settings.billing_failure_policy`.

Issue 13, measured before the fix: spool on a tiny filesystem, Lago down, 1,500 calls: all answered
200, 118 events "not spooled" (log only), readiness `healthy`, and those 118 calls were never billed.
Here the spool's own size bound stands in for the small filesystem (no tmpfs in CI)."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from llmbill import _core
from llmbill.billing import ConfigError, LagoSettings, close_pipeline
from llmbill.proxy.config import load_config_dict
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_support import eventually, submit_call
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config, lago_env

#: A spool that fills after a few dozen events, keeping room for about four in-flight calls.
SMALL_SPOOL = {"LLMBILL_SPOOL_MAX_BYTES": "16000", "LLMBILL_SPOOL_RESERVE_BYTES": "2500"}


def _chat(i: int) -> dict[str, Any]:
    return {"model": "custom-model", "messages": [{"role": "user", "content": f"call {i}"}], "user": f"cust-{i % 3}"}


def _fill(proxy: Proxy, calls: int, workers: int = 8) -> tuple[list[str], list[tuple[int, Any, dict[str, str]]]]:
    """`calls` chat calls from `workers` threads: the ids of those answered 200, and the other replies."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        replies = list(pool.map(lambda i: proxy.request("POST", "/chat/completions", _chat(i), MASTER), range(calls)))
    served = [headers["x-litellm-call-id"] for status, _, headers in replies if status == 200]
    return served, [r for r in replies if r[0] != 200]


def _ready(proxy: Proxy, key: str | None = MASTER) -> tuple[int, Any]:
    status, body, _ = proxy.request("GET", "/health/readiness", None, key)
    return status, body


def _billed_once(lago: FakeLago, served: list[str]) -> None:
    """Every served call reaches Lago, each exactly once, and nothing else does."""
    lago.wait_for(len(served), timeout=30)
    time.sleep(0.3)  # a late duplicate would arrive now
    assert lago.count_by_transaction_id() == {call_id: 1 for call_id in served}


def test_fail_closed_refuses_with_503_while_the_spool_is_full_then_recovers_and_bills_every_served_call_once(
        upstream: FakeOpenAI, lago: FakeLago) -> None:
    with Proxy(config(upstream, None), {**lago_env(lago, "end_user_id"), **SMALL_SPOOL}) as proxy:
        assert _ready(proxy, None) == (200, {"status": "healthy"})
        lago.set_down("refuse")
        served, refused = _fill(proxy, 80)
        assert 10 < len(served) < 80 and refused, (len(served), refused[:1])
        for status, body, headers in refused:
            assert status == 503 and body["error"]["type"] == "billing_unavailable", body
            assert body["error"]["code"] == "503" and headers["retry-after"] == "5"
        assert len(upstream.calls("/chat/completions")) == len(served)  # refused before forwarding
        # Every billable route is gated, not only /chat/completions.
        for path, body in (("/v1/messages", {"model": "custom-model", "max_tokens": 5,
                                             "messages": [{"role": "user", "content": "hi"}]}),
                           ("/v1/responses", {"model": "custom-model", "input": "hi"}),
                           ("/embeddings", {"model": "custom-model", "input": "hi"})):
            status, body, _ = proxy.request("POST", path, body, MASTER)
            assert status == 503 and "billing is unavailable" in str(body), (path, body)  # each route's error shape
        assert len(upstream.requests) == len(served)

        # Readiness: the status alone for anyone, the details with the master key.
        assert _ready(proxy, None) == (503, {"status": "degraded"})
        assert _ready(proxy, "sk-not-the-master-key") == (503, {"status": "degraded"})
        status, ready = _ready(proxy)
        billing = ready["billing"]
        assert status == 503 and ready["status"] == "degraded"
        assert billing["accepting"] is False and billing["refusing_calls"] is True
        assert billing["failure_policy"] == "fail_closed" and billing["spool_dir"]
        metrics = proxy.request("GET", "/metrics", None, MASTER)[1]
        assert "llmbill_billing_unspooled_events" in metrics
        eventually(lambda: "billable calls are refused with 503 billing_unavailable" in proxy.output,
                   what="the watcher logs the refusals")  # not only a 503 per call: one line for the operator

        lago.set_down(False)
        eventually(lambda: _ready(proxy, None)[1] == {"status": "healthy"}, timeout=40, what="billing recovers")
        eventually(lambda: "billable calls are accepted" in proxy.output, what="the watcher logs the recovery")
        more, refused = _fill(proxy, 5, workers=1)
        assert len(more) == 5 and not refused
        _billed_once(lago, served + more)


def test_fail_open_serves_every_call_and_still_bills_each_once_after_lago_returns(
        upstream: FakeOpenAI, lago: FakeLago) -> None:
    cfg = config(upstream, None)
    cfg["general_settings"]["billing_failure_policy"] = "fail_open"
    with Proxy(cfg, {**lago_env(lago, "end_user_id"), **SMALL_SPOOL}) as proxy:
        lago.set_down("refuse")
        served, refused = _fill(proxy, 60)
        assert len(served) == 60 and not refused
        status, ready = _ready(proxy)
        # Served at risk: the events past the spool's bound wait in memory, and readiness says so (200).
        assert (status, ready["status"]) == (200, "degraded")
        assert ready["billing"]["unspooled"] > 0 and ready["billing"]["refusing_calls"] is False
        assert "billing_failure_policy: fail_open" in proxy.output
        lago.set_down(False)
        _billed_once(lago, served)
        eventually(lambda: _ready(proxy, None) == (200, {"status": "healthy"}), timeout=40, what="billing recovers")


# --- the parts, without a proxy process ---

def test_the_policy_key_defaults_to_fail_closed_and_refuses_unknown_values_naming_the_key() -> None:
    base = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}
    assert load_config_dict(base).billing_failure_policy == "fail_closed"
    for policy in ("fail_closed", "fail_open"):
        cfg = load_config_dict({**base, "general_settings": {"billing_failure_policy": policy}})
        assert cfg.billing_failure_policy == policy
        assert not [w for w in cfg.warnings if "billing_failure_policy" in w]  # a known key, not "ignored"
    with pytest.raises(ConfigError, match=r"^general_settings.billing_failure_policy: 'closed' is not one of "):
        load_config_dict({**base, "general_settings": {"billing_failure_policy": "closed"}})
    with pytest.raises(ConfigError, match=r"^general_settings.billing_failure_policy: expected a string"):
        load_config_dict({**base, "general_settings": {"billing_failure_policy": True}})


def test_the_reserve_setting_reaches_the_pipeline() -> None:
    settings = LagoSettings.from_env({"LLMBILL_SPOOL_RESERVE_BYTES": "1234"})
    assert settings.spool_reserve_bytes == 1234
    assert LagoSettings.from_env({}).spool_reserve_bytes == 4 << 20
    with pytest.raises(ConfigError, match="LLMBILL_SPOOL_RESERVE_BYTES"):
        LagoSettings.from_env({"LLMBILL_SPOOL_RESERVE_BYTES": "lots"})


def test_a_pipeline_past_its_spool_bound_holds_events_in_memory_and_refuses_new_calls(
        make_pipeline: Callable[..., _core.Pipeline], fake_lago: FakeLago, tmp_path: Path) -> None:
    fake_lago.set_down("refuse")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key="llmbill-e2e-key", max_spool_bytes=6000,
                             spool_reserve_bytes=1000)
    ids: list[str] = []
    while pipeline.can_accept():
        ids += submit_call(pipeline, f"call-{len(ids)}")
    for i in range(5):  # admitted before the spool filled, answered after: held, never thrown
        ids += submit_call(pipeline, f"late-{i}")
    stats = pipeline.stats()
    assert stats["unspooled"] > 0 and stats["accepting"] is False and stats["spool_failures"] > 0
    assert stats["spool_free_bytes"] > 0
    fake_lago.set_down(False)
    assert pipeline.flush(20)
    assert fake_lago.count_by_transaction_id() == {i: 1 for i in ids}
    eventually(pipeline.can_accept, what="the delivered spool frees its room")


def test_closing_with_events_the_spool_still_cannot_take_logs_each_lost_call(
        make_pipeline: Callable[..., _core.Pipeline], fake_lago: FakeLago, caplog: pytest.LogCaptureFixture) -> None:
    fake_lago.set_down("refuse")
    pipeline = make_pipeline(api_base=fake_lago.url, api_key="llmbill-e2e-key", max_spool_bytes=3000)
    n = 0
    while pipeline.can_accept():
        submit_call(pipeline, f"call-{n}")
        n += 1
    for i in range(5):  # the first may still fit in the reserve; the last ones cannot
        submit_call(pipeline, f"late-{i}")
    in_memory = pipeline.stats()["unspooled"]
    assert in_memory > 0
    with caplog.at_level("ERROR", logger="llmbill"):
        assert close_pipeline(pipeline, 0.05) is False
    lost = [r.getMessage() for r in caplog.records if "could not be spooled" in r.getMessage()]
    assert len(lost) == 1 and f"lost: {in_memory} event(s)" in lost[0] and "late-4" in lost[0], caplog.text
