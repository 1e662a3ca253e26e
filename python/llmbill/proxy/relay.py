"""Relaying a provider's SSE stream that is already in the client's shape (the OpenAI pass-through,
Anthropic's native /v1/messages, the Responses API): event by event, the complete events of one read
in one send (one write), the model renamed to the name the client asked for, usage scanned by the C++
core as the events pass, and the call settled exactly once — when the stream ends, or when the client
leaves (then on what the provider reported so far, else estimated and marked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from .._native import core
from .call import Call
from .settle import settle
from .sse import event_end


def relay(call: Call, chunks: AsyncIterator[bytes], estimate: Callable[[int], core.Usage],
          strip_usage_only: bool = False) -> AsyncIterator[bytes]:
    """`estimate(n)`: the usage to bill when the stream never reported any, from its n data events.
    `strip_usage_only`: drop the usage-only event (an OpenAI client that did not ask for it)."""
    rename = (f'"model":"{call.d.upstream_model}"'.encode(), f'"model":"{call.model}"'.encode())
    renames = rename[0] != rename[1]

    async def events() -> AsyncIterator[bytes]:
        scanner = core.SseUsageScanner()
        buffer = b""
        data_events = 0
        settled = False
        try:
            async for data in chunks:
                buffer += data
                out: list[bytes] = []
                while True:
                    cut = event_end(buffer)
                    if cut < 0:
                        break
                    event, buffer = buffer[:cut], buffer[cut:]
                    try:
                        scanner.feed(event)
                    except core.UsageError:
                        pass  # a malformed event is passed through; usage comes from the good ones
                    call.note_event(event)
                    if strip_usage_only and scanner.last_event_was_usage_only:
                        continue
                    if event.startswith(b"data: {") or b"\ndata: {" in event:
                        data_events += 1
                    out.append(event.replace(*rename) if renames else event)
                if out:
                    yield out[0] if len(out) == 1 else b"".join(out)
            if buffer:
                yield buffer
            settled = True
            settle(call, scanner.usage or estimate(data_events))
        finally:
            if not settled:  # the client left (or the task was cancelled): bill what was generated so far
                settle(call, scanner.usage or estimate(data_events))

    return events()
