"""Helpers for the Lago end-to-end tests: calls to submit, what Lago must receive, waiting.

Not a test module (pytest collects test_*.py only). The fixtures themselves are in conftest.py.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import llmbill
from llmbill import _core
from tests.python.fakes.http_server import RecordedRequest
from tests.python.fakes.lago import INGESTION, FakeLago

KEY = "llmbill-e2e-key"
CODE = "llm_usage"
MODEL = "gpt-4o"

#: Pipeline timings that keep the suite fast: short linger, short backoffs, quick config retries.
FAST: dict[str, Any] = {
    "event_codes": [CODE],
    "fsync": "never",
    "flush_interval": 0.02,
    "backoff_base": 0.02,
    "backoff_cap": 0.2,
    "config_error_retry": 0.2,
    "timeout": 3.0,
}

#: An OpenAI chat completion's usage block, with cached and reasoning tokens.
OPENAI_USAGE: dict[str, Any] = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 200},
    "completion_tokens_details": {"reasoning_tokens": 100},
}


def usage(prompt: int = 100, completion: int = 20) -> _core.Usage:
    return _core.Usage(prompt_tokens=prompt, completion_tokens=completion)


def submit_call(pipeline: _core.Pipeline, call_id: str, *, end_user_id: str = "cust-1",
                timestamp_ms: int | None = None, prompt: int = 100, completion: int = 20,
                **ids: str) -> list[str]:
    """Submits one priced gpt-4o call; returns its transaction ids."""
    tokens = usage(prompt, completion)
    return pipeline.submit(
        call_id=call_id,
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        model=MODEL,
        usage=tokens,
        cost=llmbill.cost(MODEL, tokens),
        end_user_id=end_user_id,
        **ids,
    )


def ingestion_requests(lago: FakeLago) -> list[RecordedRequest]:
    """The event-ingestion POSTs the fake received, in order."""
    return [r for r in lago.requests if r.method == "POST" and r.path in INGESTION]


def batch_sizes(lago: FakeLago) -> list[int]:
    return [len(r.json["events"]) for r in ingestion_requests(lago)]


def stored_once(lago: FakeLago, ids: list[str]) -> None:
    """Asserts the fake stored exactly these transaction ids, each exactly once."""
    counts = lago.count_by_transaction_id()
    assert len(lago.events) == len(ids), f"stored {len(lago.events)} events, expected {len(ids)}"
    assert set(counts) == set(ids)
    twice = {tid: n for tid, n in counts.items() if n != 1}
    assert not twice, f"stored more than once: {twice}"


def raw_by_id(lago: FakeLago) -> dict[str, list[dict[str, Any]]]:
    """Every event object received (resends included), grouped by transaction_id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for raw in lago.raw_events:
        out.setdefault(raw.get("transaction_id"), []).append(raw)
    return out


def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def built_events(call_id: str, timestamp_ms: int, end_user_id: str, prompt: int = 100,
                 completion: int = 20) -> list[dict[str, Any]]:
    """What llmbill builds for a `submit_call` call, parsed (via the core's own builder)."""
    tokens = usage(prompt, completion)
    events, missing = _core.build_lago_events(
        call_id=call_id, timestamp_ms=timestamp_ms, model=MODEL, usage=tokens,
        cost=llmbill.cost(MODEL, tokens), codes=[CODE], end_user_id=end_user_id)
    assert missing == ""
    return [json.loads(e) for e in events]
