"""observe.py: a settled call's tokens and spend are counted once, after its reply is sent (finish)
when a request holds it, at once otherwise."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY

from llmbill._native import core
from llmbill.proxy import observe


def _call(model: str) -> Any:
    state = SimpleNamespace(has_model=lambda name: True)
    return SimpleNamespace(principal=SimpleNamespace(key={"team_id": "t-observe"}), state=state, model=model,
                           call_id="c1", upstream_seconds=0.001, customer="")


def _tokens(model: str) -> float:
    return REGISTRY.get_sample_value("llmbill_tokens_total",
                                     {"model": model, "team": "t-observe", "type": "prompt"}) or 0.0


def _billed(model: str) -> float:
    return REGISTRY.get_sample_value("llmbill_billed_calls_total", {"model": model, "team": "t-observe"}) or 0.0


def test_a_settled_calls_figures_are_counted_once_when_its_reply_is_sent() -> None:
    async def request() -> tuple[float, float]:
        call = _call("observe-deferred")
        info = observe.begin("POST", "/chat/completions")
        observe.note_call(call)
        observe.note_settled(call, core.Usage(prompt_tokens=7, completion_tokens=3), Decimal("0.5"))
        during = _tokens("observe-deferred")
        observe.finish(info, 200)
        return during, _tokens("observe-deferred")

    during, after = asyncio.run(request())
    assert (during, after) == (0.0, 7.0)
    assert _billed("observe-deferred") == 1.0


def test_a_call_settled_outside_a_request_or_after_its_finish_is_counted_at_once() -> None:
    observe.note_settled(_call("observe-no-request"), core.Usage(prompt_tokens=5, completion_tokens=1), Decimal(0))
    assert _tokens("observe-no-request") == 5.0

    async def late() -> None:
        call = _call("observe-late")
        info = observe.begin("POST", "/chat/completions")
        observe.note_call(call)
        observe.finish(info, 200)
        observe.note_settled(call, core.Usage(prompt_tokens=2, completion_tokens=1), Decimal(0))

    asyncio.run(late())
    assert _tokens("observe-late") == 2.0 and _billed("observe-late") == 1.0
