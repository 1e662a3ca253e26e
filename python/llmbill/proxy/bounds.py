"""Bounds on client JSON: how deep a value nests and how large a stored one may be.

Why depth matters: orjson parses 1024 levels but serialises only 255, so a body or a stored field
nested deeper than that parses fine and then fails every reply that carries it (a stored 300-level
`metadata` broke /key/list, /team/info and /user/info for good). Request bodies may nest
MAX_BODY_DEPTH levels, stored fields (metadata and the like) MAX_STORED_DEPTH levels and
MAX_STORED_BYTES of JSON — far below the serialiser's limit even inside a reply's wrappers.

>>> depth_over({"a": [{"b": 1}]}, 3)
False
>>> depth_over({"a": [{"b": [1]}]}, 3)
True
"""

from __future__ import annotations

from typing import Any

MAX_BODY_DEPTH = 64
MAX_STORED_DEPTH = 16
MAX_STORED_BYTES = 64 * 1024


def depth_over(value: Any, limit: int) -> bool:
    """True when `value` nests lists and objects more than `limit` levels deep (a scalar is level 0).
    A tight loop: it runs on request bodies, and visits every value inside a list or object."""
    stack: list[tuple[Any, int]] = [(value, 0)] if type(value) is dict or type(value) is list else []
    pop, push = stack.pop, stack.append
    while stack:
        item, level = pop()
        if level >= limit:  # this container is level + 1 deep
            return True
        level += 1
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                push((child, level))
    return False


def raw_depth_within(raw: bytes, limit: int) -> bool:
    """A quick sufficient test on the JSON text: fewer opening brackets than `limit` (in strings or not)
    cannot nest deeper, so the common small body skips the walk."""
    return raw.count(b"[") + raw.count(b"{") <= limit
