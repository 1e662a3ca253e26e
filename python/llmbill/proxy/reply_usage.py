"""A decoded reply's usage, read by the C++ core from its `usage` member alone.

The proxy decodes every non-streamed reply (orjson) to rename its model; handing the core the whole
body again made it parse every byte of the content a second time for a ~150-byte member — 4.5 µs for
a 335-byte reply, 32 µs for a 4 KB one, 1.9 µs either way for the member alone (bench/README.md).
The member goes to the core under its own name as the decoded object itself (the binding reads
Python's dicts and numbers straight into its JSON value: 2.8 → 1.5 µs a reply against re-encoding it
with orjson for the core to parse again), so the core applies exactly the rules it applies to a whole
reply (`"usage": null` and a missing member are still its errors, raised as core.UsageError; an
integer beyond int64 reaches it as a double, which it refuses as it refuses one in the bytes).
"""

from __future__ import annotations

from typing import Any

from .._native import core


def usage_of(data: dict[str, Any], body: bytes) -> core.Usage:
    """The usage of a reply decoded as `data` from `body` (core.UsageError when there is none)."""
    member = data.get("usage")
    if isinstance(member, dict):
        return core.Usage.from_response({"usage": member})
    return core.Usage.from_response(body)  # absent, null or odd: the core's own reading and message
