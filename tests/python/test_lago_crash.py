"""A billing process killed with SIGKILL loses no event and bills none twice.

A child process (lago_crash_child.py) spools 500 calls and is killed; a new Pipeline on the same
spool directory then delivers them. Each event Lago finally holds must be byte-for-byte the event
the child built: the same transaction_id and the same timestamp, so Lago's dedup can work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from llmbill._core import Pipeline
from tests.python.fakes.lago import FakeLago
from tests.python.lago_support import KEY, built_events, raw_by_id, stored_once

CHILD = Path(__file__).with_name("lago_crash_child.py")
ROOT = Path(__file__).resolve().parents[2]
N = 500


def run_and_kill(spool: Path, api_base: str, in_flight: FakeLago | None = None) -> tuple[list[dict[str, Any]], float]:
    """Runs the child until it has spooled N calls (and, given `in_flight`, until a batch of it has
    reached that Lago), SIGKILLs it; returns its calls and the kill time."""
    child = subprocess.Popen([sys.executable, str(CHILD), str(spool), api_base, KEY, str(N)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    calls: list[dict[str, Any]] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "ready":
                break
            calls.append(json.loads(line))
        deadline = time.monotonic() + 10
        while in_flight is not None and not in_flight.requests and time.monotonic() < deadline:
            time.sleep(0.005)  # however loaded the machine, the kill lands with a batch on the wire
        os.kill(child.pid, signal.SIGKILL)
        killed_at = time.time()
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert len(calls) == N, "the child died before spooling everything"
    return calls, killed_at


@pytest.mark.parametrize("lago_state", ["down", "in-flight"])
def test_sigkill_loses_nothing_and_bills_nothing_twice(tmp_path: Path, fake_lago: FakeLago,
                                                       make_pipeline: Callable[..., Pipeline],
                                                       lago_state: str) -> None:
    spool = tmp_path / "spool"
    if lago_state == "down":
        fake_lago.set_down(True)  # every request is dropped unanswered
    else:
        fake_lago.delay_seconds = 1.0  # a batch is on the wire when the child dies; Lago stores it

    calls, killed_at = run_and_kill(spool, fake_lago.url, fake_lago if lago_state == "in-flight" else None)
    if lago_state == "down":
        assert fake_lago.events == []
    else:
        time.sleep(1.3)  # let the orphaned request finish: stored, its reply lost with the child
        fake_lago.delay_seconds = 0
    stored_by_child = len(fake_lago.events)
    fake_lago.set_down(False)

    pipeline = make_pipeline(api_base=fake_lago.url, api_key=KEY, spool_dir=spool)
    recovered = pipeline.stats()["recovered"]
    assert N - stored_by_child <= recovered <= N
    assert pipeline.flush(15)

    expected = {e["transaction_id"]: e for c in calls
                for e in built_events(c["call_id"], c["timestamp_ms"], c["end_user_id"])}
    stored_once(fake_lago, sorted(expected))
    for tid, copies in raw_by_id(fake_lago).items():
        for copy in copies:
            assert copy == expected[tid], f"{tid} was resent changed"
    for event in fake_lago.events:
        assert event["timestamp"] < killed_at  # stamped when spooled, not when resent
    stats = pipeline.stats()
    assert stats["delivered"] == recovered and stats["dead_lettered"] == 0
    if lago_state == "down":
        assert recovered == N and stats["duplicates"] == 0
    else:
        assert stored_by_child > 0
        assert stats["duplicates"] > 0  # the batch whose reply died with the child
