"""The SSE relay (proxy/relay.py): events cut whatever the read boundaries, the model renamed, the
usage-only event stripped for a client that did not ask, usage scanned; the pulled and the pushed
(pipe) drivers give the client the same bytes and settle exactly once, also when cut short."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbill import _core as core
from llmbill.proxy import relay as relay_module
from llmbill.proxy.relay import EventRelay, RelayedStream
from llmbill.proxy.upstream import UpstreamStream

CONTENT = b'data: {"id":"c1","model":"up-model","choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
USAGE = (b'data: {"id":"c1","model":"up-model","choices":[],'
         b'"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n')
DONE = b"data: [DONE]\n\n"
STREAM = CONTENT + CONTENT + USAGE + DONE


def _call() -> Any:
    return SimpleNamespace(d=SimpleNamespace(upstream_model="up-model"), model="asked", response_id="")


def _estimate(n: int) -> core.Usage:
    return core.Usage(prompt_tokens=1, completion_tokens=n, estimated=True)


def test_events_are_cut_across_reads_renamed_and_the_usage_only_event_stripped() -> None:
    call = _call()
    relay = EventRelay(call, True, _estimate)
    out = b""
    for i in range(0, len(STREAM), 7):  # reads that split events (and \n\n) anywhere
        out += relay.feed(STREAM[i:i + 7])
    out += relay.tail()
    renamed = CONTENT.replace(b'"model":"up-model"', b'"model":"asked"')
    assert out == renamed + renamed + DONE
    usage = relay.usage()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (7, 3, False)
    assert relay.response_id == "c1"  # the reply's own id, for the spend log


def test_usage_is_kept_for_a_client_that_asked_and_estimated_when_never_reported() -> None:
    relay = EventRelay(_call(), False, _estimate)
    assert relay.feed(STREAM).count(b'"usage":{') == 1
    silent = EventRelay(_call(), False, _estimate)
    assert silent.feed(CONTENT + CONTENT + CONTENT + b"data: {\"tail\"")  # the last event unterminated
    assert silent.tail() == b"data: {\"tail\""
    usage = silent.usage()
    assert (usage.completion_tokens, usage.estimated) == (3, True)


class FakeReply:
    """What Reply.pipe does, minus the socket: each read handed to the sink, then `end` (None: the
    stream ended; an exception: raised after the reads, as pipe raises a silence or a sink error)."""

    def __init__(self, reads: list[bytes], end: BaseException | None = None) -> None:
        self.reads, self.end = reads, end
        self.full: list[bool] = []
        self.complete = False  # as the connection sets it: before the sink gets the body's last read

    async def pipe(self, sink: Callable[[bytes], bool], read_timeout: float | None,
                   drain: Callable[[], Awaitable[None]]) -> None:
        for i, data in enumerate(self.reads):
            self.complete = self.end is None and i == len(self.reads) - 1
            more = sink(data)
            self.full.append(not more)
            if not more:
                await drain()
        if self.end is not None:
            raise self.end


def _stream(reads: list[bytes], end: BaseException | None = None) -> tuple[UpstreamStream, FakeReply]:
    async def chunks() -> AsyncIterator[bytes]:
        for data in reads:
            yield data
        if end is not None:
            raise end

    reply = FakeReply(reads, end)
    return UpstreamStream(200, chunks(), "text/event-stream", None, {}, reply, 5.0), reply  # type: ignore[arg-type]


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[core.Usage]:
    seen: list[core.Usage] = []
    monkeypatch.setattr(relay_module, "settle", lambda call, usage: seen.append(usage))
    return seen


def test_pulled_and_piped_give_the_same_bytes_and_settle_once(settled: list[core.Usage]) -> None:
    reads = [STREAM[:50], STREAM[50:180], STREAM[180:]]

    async def pulled() -> bytes:
        up, _ = _stream(reads)
        return b"".join([c async for c in RelayedStream(up, EventRelay(_call(), True, _estimate))])

    async def piped() -> bytes:
        up, reply = _stream(reads)
        written: list[bytes] = []
        stream = RelayedStream(up, EventRelay(_call(), True, _estimate))
        assert stream.can_pipe

        def write(data: bytes) -> bool:
            written.append(data)
            return len(written) != 1  # the client is slow once

        drains: list[int] = []

        async def drain() -> None:
            drains.append(len(written))

        last = await stream.pipe(write, drain)
        assert drains == [1]
        assert len(written) == 1 and last  # the body's last read is returned, for the response's end
        return b"".join(written) + last

    assert asyncio.run(pulled()) == asyncio.run(piped())
    assert [(u.prompt_tokens, u.completion_tokens) for u in settled] == [(7, 3), (7, 3)]


def test_a_body_that_comes_in_one_read_is_all_returned_for_the_end(settled: list[core.Usage]) -> None:
    """A fast upstream's whole stream in one read: nothing written along the way, so the server sends
    the events and the chunked end in one write (the client woken once)."""
    async def piped() -> tuple[list[bytes], bytes]:
        up, _ = _stream([STREAM])
        written: list[bytes] = []
        last = await RelayedStream(up, EventRelay(_call(), True, _estimate)).pipe(lambda d: written.append(d) is None, _no_drain)
        return written, last

    async def pulled() -> bytes:
        up, _ = _stream([STREAM])
        return b"".join([c async for c in RelayedStream(up, EventRelay(_call(), True, _estimate))])

    written, last = asyncio.run(piped())
    assert written == [] and last == asyncio.run(pulled())
    assert len(settled) == 2 and settled[0].completion_tokens == 3


def test_a_piped_stream_cut_short_or_cancelled_is_billed_once_for_what_came(settled: list[core.Usage]) -> None:
    async def silent() -> list[bytes]:
        up, _ = _stream([CONTENT, CONTENT[:20]], TimeoutError("silence"))
        written: list[bytes] = []
        rest = await RelayedStream(up, EventRelay(_call(), False, _estimate)).pipe(lambda d: written.append(d) is None, _no_drain)
        return [*written, rest]  # the unterminated tail goes with the response's end

    assert asyncio.run(silent()) == [CONTENT.replace(b"up-model", b"asked"), CONTENT[:20]]  # ends quietly
    assert [(u.completion_tokens, u.estimated) for u in settled] == [(1, True)]

    async def cancelled() -> None:
        up, _ = _stream([CONTENT, USAGE], asyncio.CancelledError())
        await RelayedStream(up, EventRelay(_call(), False, _estimate)).pipe(lambda d: True, _no_drain)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert (settled[-1].completion_tokens, settled[-1].estimated, len(settled)) == (3, False, 2)


async def _no_drain() -> None:
    raise AssertionError("never full")


def test_the_call_gets_the_reply_id_when_the_stream_is_settled(settled: list[core.Usage]) -> None:
    call = _call()

    async def piped() -> None:
        up, _ = _stream([STREAM])
        await RelayedStream(up, EventRelay(call, True, _estimate)).pipe(lambda d: True, _no_drain)

    asyncio.run(piped())
    assert call.response_id == "c1" and len(settled) == 1


# The relay as it was written in Python before it moved to the C++ core (the reference its
# replacement must match byte for byte): cut, scan, note the id, strip, count, rename.
def _reference(reads: list[bytes], upstream: str, client: str, strip: bool) -> tuple[bytes, Any, int, str]:
    scanner, buffer, out, data_events, response_id = core.SseUsageScanner(), b"", [], 0, ""
    rename = (f'"model":"{upstream}"'.encode(), f'"model":"{client}"'.encode())

    def note(event: bytes) -> str:
        for line in event.splitlines():
            if line.startswith(b"data:") and b'"id"' in line:
                try:
                    data = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    return ""
                if isinstance(data, dict):
                    for obj in (data, data.get("message"), data.get("response")):
                        if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
                            return str(obj["id"])
                return ""
        return ""

    for data in reads:
        buffer += data
        while True:
            i, j = buffer.find(b"\n\n"), buffer.find(b"\r\n\r\n")
            if i < 0 and j < 0:
                break
            cut = j + 4 if j >= 0 and (i < 0 or j < i) else i + 2
            event, buffer = buffer[:cut], buffer[cut:]
            try:
                scanner.feed(event)
            except core.UsageError:
                pass
            if not response_id:
                response_id = note(event)
            if strip and scanner.last_event_was_usage_only:
                continue
            if event.startswith(b"data: {") or b"\ndata: {" in event:
                data_events += 1
            out.append(event.replace(*rename) if rename[0] != rename[1] else event)
    return b"".join(out) + buffer, scanner.usage, data_events, response_id


_PIECES = [CONTENT, USAGE, DONE, b"event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n", b"data: {\"id\" x\n\n",
           b'data: {"id":"","model":"up-model"}\n\n', b'data: {"response":{"id":"r1"},"model":"up-model"}\n\n',
           b'data: {"usage":{"prompt_tokens":-1}}\n\n', b": comment\n\n", b"data: {\"model\":\"up-model\"\n\n",
           b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}\r\n\r\n',
           b"\n", b"\r\n", b"data: \xff\xfe\n\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12), st.lists(st.integers(1, 64), min_size=1, max_size=8),
       st.booleans(), st.sampled_from(["up-model", "asked"]))
def test_the_native_relay_matches_the_python_reference(pieces: list[bytes], sizes: list[int], strip: bool,
                                                      client: str) -> None:
    stream = b"".join(pieces)
    reads, at = [], 0
    while at < len(stream):
        step = sizes[len(reads) % len(sizes)]
        reads.append(stream[at:at + step])
        at += step
    relay = EventRelay(SimpleNamespace(d=SimpleNamespace(upstream_model="up-model"), model=client), strip, _estimate)
    out = b"".join(relay.feed(r) for r in reads) + relay.tail()
    usage = relay.native.usage
    assert (out, usage, relay.native.data_events, relay.response_id) == _reference(reads, "up-model", client, strip)
