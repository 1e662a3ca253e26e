"""proxy/settle.py: a call billed at cost is priced, put in the ledger and spooled by the core in one
step (core.settle_call); a spool that cannot take its event after that is logged, never raised, and
the call stays billed once (ledger and spend log row); a margined call keeps the Python route."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvloop

from llmbill.proxy.app import ProxyApp
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.routes import llm
from tests.python.asgi_lifespan import running
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env


def _request(app: ProxyApp, body: dict[str, Any], path: str = "/chat/completions") -> Any:
    raw = json.dumps(body).encode()
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
             "headers": [(b"authorization", f"Bearer {MASTER}".encode()), (b"content-type", b"application/json")]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> list[dict[str, Any]]:
        await app(scope, receive, send)
        return sent
    return call()


async def _chat(app: ProxyApp, customer: str) -> None:
    """One chat call for `customer`, answered 200."""
    sent = await _request(app, {"model": "custom-model", "user": customer,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert sent[0]["status"] == 200, sent


@pytest.fixture
def app(tmp_path: Path, upstream: FakeOpenAI, lago: FakeLago, monkeypatch: pytest.MonkeyPatch) -> ProxyApp:
    for name, value in lago_env(lago, "end_user_id").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LLMBILL_SPOOL_DIR", str(tmp_path / "spool"))
    raw = config(upstream, f"sqlite:///{tmp_path}/db.sqlite")
    return ProxyApp(load_config_dict(raw))


def test_a_call_at_cost_is_billed_once_by_the_core(app: ProxyApp, lago: FakeLago,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    crossings: list[str] = []
    real = llm.settle.__globals__["core"].settle_call

    def counted(*args: Any) -> Any:
        crossings.append(args[4])
        return real(*args)

    monkeypatch.setattr(llm.settle.__globals__["core"], "settle_call", counted)

    async def run() -> None:
        async with running(app):
            await _chat(app, "cust-1")
            state = app.state
            assert state.spend.ledger.spend("customer", "cust-1") == CUSTOM_COST
            assert [row.spend for row in state.spend.logs] == [CUSTOM_COST]
            assert state.spend.logs[0].request_id == crossings[0]
            assert state.pipeline is not None and state.pipeline.flush(5.0)

    uvloop.run(run())
    assert len(crossings) == 1  # one step with the core
    events = lago.events
    assert [e["transaction_id"] for e in events] == crossings
    assert Decimal(events[0]["properties"]["response_cost"]) == CUSTOM_COST
    assert "billed_amount" not in events[0]["properties"]


def test_an_event_the_spool_cannot_take_is_logged_and_the_call_stays_billed_once(
        app: ProxyApp, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = llm.settle

    def capture(call: Any, usage: Any) -> Any:
        seen["call"], seen["usage"] = call, usage
        return real(call, usage)

    monkeypatch.setattr(llm, "settle", capture)

    async def run() -> None:
        async with running(app):
            await _chat(app, "cust-2")
            state = app.state
            assert state.pipeline is not None and state.pipeline.close(5.0)  # the spool now refuses
            call = seen["call"]
            call.call_id = "second-settle"
            with caplog.at_level(logging.ERROR, logger="llmbill.proxy"):
                assert real(call, seen["usage"]) == CUSTOM_COST  # no exception: the call was served
            assert "billing event for call second-settle not spooled" in caplog.text
            assert state.spend.ledger.spend("customer", "cust-2") == 2 * CUSTOM_COST
            assert [row.request_id for row in state.spend.logs][-1] == "second-settle"

    uvloop.run(run())


def _settled_with(app: ProxyApp, monkeypatch: pytest.MonkeyPatch, customer: str,
                  between: Any = None) -> tuple[Any, Decimal]:
    """One call for `customer`; `between(state)` runs after its admission, before it settles."""
    seen: dict[str, Any] = {}
    real = llm.settle

    def settle(call: Any, usage: Any) -> Any:
        if between is not None:
            between(call.state)
        seen["call"], seen["cost"] = call, real(call, usage)
        return seen["cost"]

    monkeypatch.setattr(llm, "settle", settle)

    async def run() -> None:
        async with running(app):
            await _chat(app, customer)

    uvloop.run(run())
    return seen["call"], seen["cost"]


def test_a_customer_with_a_margin_is_billed_with_it(app: ProxyApp, monkeypatch: pytest.MonkeyPatch) -> None:
    async def make() -> None:
        async with running(app):
            sent = await _request(app, {"user_id": "vip", "margin_percent": 10}, "/customer/new")
            assert sent[0]["status"] == 200, sent

    uvloop.run(make())
    call, billed = _settled_with(app, monkeypatch, "vip")
    assert not call.admission.at_cost and billed == CUSTOM_COST * Decimal("1.1")


def test_the_margins_in_force_at_admission_decide(app: ProxyApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call admitted with no margin applicable is billed at cost, as its reservation was made,
    even if its customer gains one before it settles."""
    async def make() -> None:
        async with running(app):
            sent = await _request(app, {"user_id": "plain"}, "/customer/new")
            assert sent[0]["status"] == 200, sent

    uvloop.run(make())

    def margin_arrives(state: Any) -> None:
        state.cache.get("customer", "plain")["margin_percent"] = Decimal(10)  # as a refresh would bring it

    call, billed = _settled_with(app, monkeypatch, "plain", margin_arrives)
    assert call.admission.at_cost and billed == CUSTOM_COST
