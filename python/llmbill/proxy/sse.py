"""Server-sent events, as the translating streams cut them: complete events only, whatever the read
boundaries (the pass-through relay cuts them in the C++ core: cpp/include/llmbill/sse_relay.hpp)."""

from __future__ import annotations


def event_end(buffer: bytes) -> int:
    """Index just past the first complete SSE event (blank-line terminated), or -1.

    >>> event_end(b"data: 1\\n\\ndata: 2")
    9
    >>> event_end(b"data: 1")
    -1
    """
    i = buffer.find(b"\n\n")
    j = buffer.find(b"\r\n\r\n")
    if i < 0 and j < 0:
        return -1
    if j >= 0 and (i < 0 or j < i):
        return j + 4
    return i + 2
