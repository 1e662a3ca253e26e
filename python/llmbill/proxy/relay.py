"""Relaying a provider's SSE stream to the client read by read, and settling the call exactly once —
when the stream ends, or when the client leaves (then on what the provider reported so far, else
estimated and marked).

What a read becomes is the stream's `StreamEvents`: `EventRelay` for a stream already in the
client's shape (the OpenAI pass-through, Anthropic's native /v1/messages, the Responses API: the
complete events of the read, the model renamed to the name the client asked for, usage scanned by the
C++ core as the events pass), or a provider's translator (forward.TranslatedEvents: Anthropic,
Bedrock, Gemini streams as OpenAI chunks).

Two ways to drive it (`RelayedStream`), one event logic: pulled (`async for`, any source of chunks)
or pushed (`pipe`): the upstream connection hands each read to the events and the result is written to
the client from the same callback, with no task switch, generator step or timer per chunk — what lets
one process carry a thousand open streams without queueing (bench/README.md, scenario 4). Either way
the call is settled before the stream's last bytes are written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from .._native import core
from .call import Call
from .httpclient import UpstreamError
from .settle import settle
from .upstream import UpstreamStream

Estimate = Callable[[int], core.Usage]  # the usage to bill from n data events when none was reported


class StreamEvents(Protocol):
    """A stream's per-read work: what the client gets of each read and of the end, and its bill."""

    def feed(self, data: bytes) -> bytes:
        """What the client gets of this read (b"" when nothing yet)."""
        ...

    def tail(self) -> bytes:
        """The upstream ended: what the client still gets."""
        ...

    def settle(self) -> None:
        """Bills the call for what the stream carried (RelayedStream calls it exactly once)."""
        ...


class EventRelay:
    """The events of a stream in the client's shape: the C++ core's SseEventRelay cuts the events,
    scans their usage, renames the model, strips what the client did not ask for and notes the
    reply's id, one crossing a read. Synchronous, so either driver can call it."""

    __slots__ = ("native", "_call", "_estimate")

    def __init__(self, call: Call, strip_usage_only: bool, estimate: Estimate) -> None:
        self.native = core.SseEventRelay(call.d.upstream_model, call.model, strip_usage_only)
        self._call = call
        self._estimate = estimate

    def feed(self, data: bytes) -> bytes:
        """The complete events `data` finishes, ready for the client (b"" when none is complete yet)."""
        return self.native.feed(data)

    def tail(self) -> bytes:
        """What is left when the stream ends: an unterminated last event, passed on as it is."""
        return self.native.tail()

    def usage(self) -> core.Usage:
        return self.native.usage or self._estimate(self.native.data_events)

    @property
    def response_id(self) -> str:
        """The reply's own id, from the first event that named one ("" until then)."""
        return self.native.response_id

    def settle(self) -> None:
        if not self._call.response_id:
            self._call.response_id = self.response_id
        settle(self._call, self.usage())


class RelayedStream:
    """The client's body: iterate it (pulled), or `pipe` it into a writer when the upstream is the pooled
    client's connection (`can_pipe`). Settled exactly once either way."""

    def __init__(self, up: UpstreamStream, events: StreamEvents) -> None:
        self._up = up
        self._events_of = events
        self._settled = False

    @property
    def can_pipe(self) -> bool:
        return self._up.reply is not None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            self._events_of.settle()

    async def _events(self) -> AsyncIterator[bytes]:
        events = self._events_of
        try:
            async for data in self._up.chunks:
                out = events.feed(data)
                if out:
                    yield out
            rest = events.tail()
            self._settle()  # before the end reaches the client
            if rest:
                yield rest
        finally:  # the end, or the client left (the task cancelled): bill what was generated so far
            self._settle()

    async def pipe(self, write: Callable[[bytes], bool], drain: Callable[[], Awaitable[None]]) -> bytes:
        """Every event written with `write` (False: the client is slow; `drain()` waits for it) as the
        upstream's reads arrive — except those of the read that ends the upstream's body, which are
        returned: the caller sends them with the end of the response, so a stream whose body came in
        one read (a fast upstream) reaches the client in one write and wakes it once, not twice.
        Returns when the stream ended (settled then); ends quietly when the upstream cuts it or falls
        silent (billed for what came, the rest returned)."""
        reply = self._up.reply
        assert reply is not None, "pipe() needs the pooled client's reply (can_pipe)"
        events = self._events_of
        last: list[bytes] = []

        def sink(data: bytes) -> bool:
            out = events.feed(data)
            if not out:
                return True
            if reply.complete:  # nothing follows this read: it goes with the response's end
                last.append(out)
                return True
            return write(out)

        try:
            try:
                await reply.pipe(sink, self._up.read_timeout, drain)
            except (UpstreamError, TimeoutError):
                pass  # a cut or silent stream ends here; what arrived is billed
            rest = events.tail()
            if rest:
                last.append(rest)
        finally:
            self._settle()
        return b"".join(last)


def relay(call: Call, up: UpstreamStream, estimate: Estimate, strip_usage_only: bool = False) -> RelayedStream:
    """`estimate(n)`: the usage to bill from the stream's n data events when it never reported any.
    `strip_usage_only`: drop the usage-only event (an OpenAI client that did not ask for it)."""
    return RelayedStream(up, EventRelay(call, strip_usage_only, estimate))
