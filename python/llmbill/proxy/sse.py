"""Server-sent events, as the relays cut them: complete events only, whatever the read boundaries."""

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


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete events at the front of `buffer`, and what is left of it.

    >>> split_events(b"a\\n\\nb\\n\\nc")
    ([b'a\\n\\n', b'b\\n\\n'], b'c')
    """
    events: list[bytes] = []
    while True:
        cut = event_end(buffer)
        if cut < 0:
            return events, buffer
        events.append(buffer[:cut])
        buffer = buffer[cut:]
