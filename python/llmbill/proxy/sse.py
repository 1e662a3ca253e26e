"""Server-sent events, as the translating streams cut them: complete events only, whatever the read
boundaries (the pass-through relay cuts them in the C++ core: cpp/include/llmbill/sse_relay.hpp)."""

from __future__ import annotations


def event_end(buffer: bytes) -> int:
    """Index just past the first complete SSE event (blank-line terminated), or -1.

    >>> event_end(b"data: 1\\n\\ndata: 2")
    9
    >>> event_end(b"data: 1")
    -1
    >>> event_end(b"a\\r\\n\\n\\r\\n\\r\\n"), event_end(b"\\r\\n\\r\\n\\n")
    (4, 4)
    """
    i = buffer.find(b"\n\n")
    # A CRLF blank line comes first only if it starts before the LF one: only that stretch is searched
    # (as the core's sse_event_end), so a buffer of many LF events is not scanned to its end per event.
    j = buffer.find(b"\r\n\r\n", 0, len(buffer) if i < 0 else i + 3)
    if j >= 0:
        return j + 4
    return i + 2 if i >= 0 else -1
