"""The proxy's garbage-collector policy (gc_policy.py): what apply() does to the collector, and that a
worker's start-up (the ASGI lifespan) applies it before it reports ready."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from llmbill.proxy import gc_policy
from llmbill.proxy.app import ProxyApp
from llmbill.proxy.config import load_config_dict


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, whatever a test did to it."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_apply_freezes_what_is_alive_and_raises_the_young_threshold(collector: None) -> None:
    assert gc.get_freeze_count() == 0
    kept = [[] for _ in range(1000)]  # alive at apply(): frozen with the rest
    garbage: list[Any] = []
    garbage.append(garbage)  # a cycle only the collector frees: collected first, not frozen
    del garbage
    gc_policy.apply()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (gc_policy.GEN0_THRESHOLD, gc_policy.GEN1_THRESHOLD, gc_policy.GEN2_THRESHOLD)
    assert gc.get_count()[0] < 100  # the young generation starts empty: nothing of start-up left in it
    assert gc.garbage == []


def test_a_worker_applies_the_policy_at_start_up(collector: None, tmp_path: Any) -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "general_settings": {"master_key": "sk-master-0123456789abcdef",
                                   "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}}
    app = ProxyApp(load_config_dict(config))
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":  # ready: the policy is in force by now
            seen["frozen"], seen["threshold"] = gc.get_freeze_count(), gc.get_threshold()

    assert gc.get_freeze_count() == 0
    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert seen["frozen"] > 0
    assert seen["threshold"][0] == gc_policy.GEN0_THRESHOLD
