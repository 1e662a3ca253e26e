"""proxy.idle_poll: the event loop kept polling for a window after a write when the last wait of the
kind fitted in it, and nothing when off — with an injected clock and loop, then on real loops, in
the app in process, and in the proxy."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import uvloop

from llmbill.billing import ConfigError
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.idle_poll import IdlePoll
from tests.python.asgi_lifespan import running
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class QueueLoop:
    """A loop that only queues callbacks, run by hand one turn at a time."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        self.queued.append((callback, args))

    def turn(self) -> None:
        ready, self.queued = self.queued, []
        for callback, args in ready:
            callback(*args)


def test_off_never_touches_the_loop() -> None:
    def no_loop() -> asyncio.AbstractEventLoop | None:
        raise AssertionError("looked for the loop")

    poll = IdlePoll(0, running_loop=no_loop)
    for _ in range(3):
        poll.expect()
    assert poll.spins == 0


def test_polls_until_the_window_has_passed_and_a_write_extends_it() -> None:
    clock, loop = Clock(), QueueLoop()
    poll = IdlePoll(200e-6, clock=clock, running_loop=lambda: loop)  # type: ignore[arg-type, return-value]
    poll.expect()
    assert len(loop.queued) == 1
    for _ in range(3):  # within the window: each turn queues the next, never two at once
        clock.now += 50e-6
        loop.turn()
        assert len(loop.queued) == 1
    poll.expect()  # a write at t+150 µs: the window now ends at t+350 µs, on the same chain
    assert len(loop.queued) == 1
    clock.now += 150e-6  # t+300
    loop.turn()
    assert len(loop.queued) == 1
    clock.now += 60e-6  # t+360: past the window
    loop.turn()
    assert loop.queued == [] and poll.spins == 4
    poll.expect()  # a later write starts polling again
    assert len(loop.queued) == 1


def test_a_stopped_loops_queued_poll_does_not_run_on_after_another_loop_took_over() -> None:
    clock, first, second = Clock(), QueueLoop(), QueueLoop()
    current: list[QueueLoop] = [first]
    poll = IdlePoll(1e-3, clock=clock, running_loop=lambda: current[0])  # type: ignore[arg-type, return-value]
    poll.expect()
    current[0] = second  # the first loop stopped with its poll queued; the next one writes
    poll.expect()
    assert len(first.queued) == 1 and len(second.queued) == 1
    first.turn()
    assert first.queued == []  # the stale chain ends
    second.turn()
    assert len(second.queued) == 1


def test_it_polls_only_while_one_request_is_in_flight() -> None:
    clock, loop = Clock(), QueueLoop()
    poll = IdlePoll(200e-6, clock=clock, running_loop=lambda: loop)  # type: ignore[arg-type, return-value]
    poll.reply_fits = poll.next_fits = True  # the last waits were short: only the in-flight rule decides
    poll.begin()
    poll.begin()
    poll.written()  # two in flight: the loop has other work, no window
    poll.end()  # one left: not the last out
    assert loop.queued == []
    poll.written()  # now the only one: its reply is polled for
    assert len(loop.queued) == 1
    clock.now += 1e-3
    loop.turn()
    assert loop.queued == []
    poll.end()  # the last one out: the client's next request is polled for
    assert len(loop.queued) == 1 and poll.in_flight == 0


def _drain(clock: Clock, loop: QueueLoop) -> None:
    """Lets any open window pass and the loop go to sleep."""
    clock.now += 1
    loop.turn()
    assert loop.queued == []


def test_a_reply_is_polled_for_only_when_the_last_one_came_within_the_window() -> None:
    clock, loop = Clock(), QueueLoop()
    poll = IdlePoll(200e-6, clock=clock, running_loop=lambda: loop)  # type: ignore[arg-type, return-value]
    poll.begin()
    poll.written()  # nothing known yet: timed, not polled for
    assert loop.queued == []
    clock.now += 80e-6
    poll.replied()  # came in 80 µs: the next reply is worth polling for
    assert poll.reply_fits
    poll.written()
    assert len(loop.queued) == 1
    clock.now += 5e-3
    poll.replied()  # 5 ms: a slow upstream — this wait cost the whole window, the next costs none
    assert not poll.reply_fits
    _drain(clock, loop)
    spins = poll.spins
    for _ in range(3):  # every reply slow: never a window again
        poll.written()
        assert loop.queued == []
        clock.now += 20e-3
        poll.replied()
    assert poll.spins == spins
    poll.written()
    clock.now += 150e-6
    poll.replied()  # fast again (timed while asleep): polling resumes with the next write
    poll.written()
    assert len(loop.queued) == 1


def test_a_reply_with_no_write_timed_changes_nothing() -> None:
    clock, loop = Clock(), QueueLoop()
    poll = IdlePoll(200e-6, clock=clock, running_loop=lambda: loop)  # type: ignore[arg-type, return-value]
    poll.reply_fits = True
    clock.now += 1
    poll.replied()  # e.g. a write made while two requests were in flight: not timed
    assert poll.reply_fits


def test_the_next_request_is_polled_for_only_when_the_last_gap_fitted() -> None:
    clock, loop = Clock(), QueueLoop()
    poll = IdlePoll(200e-6, clock=clock, running_loop=lambda: loop)  # type: ignore[arg-type, return-value]
    poll.begin()  # the first request: no gap before it
    poll.end()
    assert loop.queued == [] and not poll.next_fits
    clock.now += 30e-6
    poll.begin()  # 30 µs after the last reply: a client calling back to back
    assert poll.next_fits
    poll.end()
    assert len(loop.queued) == 1
    _drain(clock, loop)
    clock.now += 0.5  # (the drain's second) then a pause: the client thinks between calls
    poll.begin()
    assert not poll.next_fits
    poll.end()
    assert loop.queued == []  # no window after this reply
    clock.now += 10e-6
    poll.begin()
    poll.begin()  # a second request while one is in flight: no gap to time
    poll.end()
    poll.end()
    assert poll.next_fits and len(loop.queued) == 1


def test_off_times_nothing() -> None:
    def no_clock() -> float:
        raise AssertionError("read the clock")

    poll = IdlePoll(0, clock=no_clock)
    poll.begin()
    poll.written()
    poll.replied()
    poll.end()
    poll.begin()
    assert poll.in_flight == 1 and poll.spins == 0


def test_outside_a_running_loop_it_does_nothing() -> None:
    """A request's `finally` that runs with no loop (its coroutine collected late) raises nothing."""
    poll = IdlePoll(1e-3)
    poll.begin()
    poll.end()
    poll.written()
    assert poll.in_flight == 0 and poll._loop is None and poll.spins == 0


def test_the_window_is_bounded() -> None:
    with pytest.raises(ValueError):
        IdlePoll(-1e-6)
    with pytest.raises(ValueError):
        IdlePoll(0.011)


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_on_a_real_loop_it_polls_then_lets_the_loop_sleep(runner: Callable[[Any], Any]) -> None:
    async def run() -> tuple[int, int, bool]:
        poll = IdlePoll(10e-3)  # the longest window: a busy test machine may hold the loop off for a while
        poll.expect()
        await asyncio.sleep(0.05)  # the loop turns while polling, then goes to sleep
        spins, stopped = poll.spins, poll._loop is None
        await asyncio.sleep(0.01)
        return spins, poll.spins, stopped

    spins, later, stopped = runner(run())
    assert spins > 0 and stopped and later == spins  # no turn once the window had passed


def test_config_honours_or_refuses_idle_poll_us() -> None:
    assert load_config_dict({}).idle_poll_us == 200  # on by default: adaptive, so it costs nothing where it cannot help
    assert load_config_dict({"general_settings": {"idle_poll_us": 0}}).idle_poll_us == 0
    assert load_config_dict({"general_settings": {"idle_poll_us": 250}}).idle_poll_us == 250
    for bad in (-1, 10_001, 1.5, "200", True, None):
        with pytest.raises(ConfigError, match=r"^general_settings\.idle_poll_us: must be an integer from 0 to 10000"):
            load_config_dict({"general_settings": {"idle_poll_us": bad}})


def test_the_app_polls_after_the_upstream_write_and_after_its_reply(tmp_path: Path, upstream: FakeOpenAI) -> None:
    """In process, the real upstream client: the first call times its two waits and polls for
    neither; the second, right after it, polls after both writes (expect()'s callers, in order)."""
    from llmbill.proxy.app import ProxyApp

    raw = config(upstream, f"sqlite:///{tmp_path}/db.sqlite")
    raw["litellm_settings"] = {}
    raw["general_settings"]["idle_poll_us"] = 10_000
    app = ProxyApp(load_config_dict(raw))
    configured = app.state.idle_poll
    assert configured.window == 10e-3
    calls: list[str] = []

    class CountingPoll(IdlePoll):
        def expect(self) -> None:
            calls.append(sys._getframe(1).f_code.co_name)
            super().expect()

        def end(self) -> None:
            super().end()
            calls.append(f"end, {self.in_flight} in flight")

    poll = CountingPoll(10e-3)

    body = json.dumps({"model": "custom-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    scope = {"type": "http", "method": "POST", "path": "/chat/completions", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {MASTER}".encode()), (b"content-type", b"application/json")]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        async with running(app):
            client = app.state.upstream._client
            assert client is not None and client._waits is configured  # the config's, wired
            app.state.idle_poll = poll  # the same, counting its callers
            client._waits = poll
            await app(scope, receive, send)
            assert sent[0]["status"] == 200 and poll._loop is None  # nothing known yet: no window
            assert poll.reply_fits  # the fake answered within 10 ms
            calls.append("second call")
            await app(scope, receive, send)  # at once: the gap before it fitted too
            assert sent[2]["status"] == 200
            assert poll._loop is asyncio.get_running_loop()  # polling right after the reply
            await asyncio.sleep(0.1)
            assert poll._loop is None and poll.spins > 0  # and stopped once the window passed

    uvloop.run(run())
    # The upstream request written, then the reply to the client: the lifespan is no request.
    assert calls == ["end, 0 in flight", "second call", "written", "end", "end, 0 in flight"]


def test_the_proxy_prints_whether_it_polls(upstream: FakeOpenAI) -> None:
    raw = config(upstream, None)
    with Proxy(raw) as proxy:
        assert ("idle poll: up to 200 microseconds after a write while one request is in flight, when the last "
                "such wait fitted (general_settings.idle_poll_us; 0 turns it off)") in proxy.output
    raw["general_settings"]["idle_poll_us"] = 0
    with Proxy(raw) as proxy:
        assert "idle poll: off (general_settings.idle_poll_us: 0)" in proxy.output


def test_the_proxy_serves_and_bills_with_idle_polling_on(upstream: FakeOpenAI, lago: FakeLago) -> None:
    raw = config(upstream, None)
    raw["general_settings"]["idle_poll_us"] = 300
    with Proxy(raw, lago_env(lago, "end_user_id")) as proxy:
        client = openai.OpenAI(api_key=MASTER, base_url=proxy.url, max_retries=0)
        for _ in range(3):
            r = client.chat.completions.create(model="custom-model", messages=[{"role": "user", "content": "hi"}],
                                               user="c")
            assert r.usage is not None and r.usage.total_tokens > 0
        stream = client.chat.completions.create(model="custom-model", messages=[{"role": "user", "content": "hi"}],
                                                user="c", stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        client.close()
        events = lago.wait_for(4, timeout=10)
        assert "idle poll: up to 300 microseconds after a write while one request is in flight" in proxy.output
    assert len({e["transaction_id"] for e in events}) == 4
    assert all(Decimal(e["properties"]["response_cost"]) == CUSTOM_COST for e in events)
