"""The one check every id and short name passes at the edge: bounded length, no control characters,
valid UTF-8 — so that whatever a client sends can be stored by both databases and indexed.

Why these bounds: PostgreSQL refuses NUL in text and index entries over ~2.7 kB, so one such id in a
spend flush would fail the transaction (SQLite would store it); 256 characters are at most 1 kB of
UTF-8. Control characters have no place in an id and break log lines and the UI.

>>> check_id("cust-1", "user")
'cust-1'
>>> check_id("a\\x00b", "user")
Traceback (most recent call last):
...
llmbill.proxy.errors.ProxyError: 'user' must not contain control characters
"""

from __future__ import annotations

import itertools
import os
import re
import time

from .errors import bad_request

MAX_ID_LENGTH = 256
# C0 controls (NUL, newline, ...), DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def id_problem(value: str, limit: int = MAX_ID_LENGTH) -> str | None:
    """Why `value` cannot be an id, or None when it can."""
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if value.isascii() and value.isprintable():  # most ids, three per call: ASCII 0x20-0x7e has no control
        return None
    if _CONTROL.search(value) is not None:
        return "must not contain control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, no database stores it
        return "must be valid UTF-8"
    return None


def check_id(value: str, param: str, limit: int = MAX_ID_LENGTH) -> str:
    """`value` unchanged, or a 400 naming `param`."""
    problem = id_problem(value, limit)
    if problem is not None:
        raise bad_request(f"'{param}' {problem}", param)
    return value


def header_id(raw: str, param: str) -> str:
    """An id sent in a header. ASGI servers hand header bytes over as latin-1; clients send UTF-8."""
    try:
        value = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise bad_request(f"header '{param}' must be valid UTF-8", param) from None
    return check_id(value, param)


# ---- ids this process makes (call ids, limiter holds) ----------------------------------------------
# A call id is the Lago event's transaction_id (Lago deduplicates on it), the spend log's request_id
# and x-litellm-call-id, so it must be unique across processes and restarts; uuid4 was one urandom
# system call and a UUID object a call, twice a call (call id and limiter hold). It is also the
# primary key of spend_logs, so ids are made in time order: a spend flush then adds its rows at the
# end of that index, where a random id put each row on a page of its own anywhere in it — a cost that
# grew with the table (bench/spend_flush.py, 1,500-row flushes into 300,000 rows: SQLite 109 → 67 ms,
# PostgreSQL with full_page_writes 49 → 39 ms). Same shape as uuid4().hex, 32 lowercase hex digits:
# 12 of Unix time in milliseconds, 4 drawn once per process (again in a forked child), then 16 of a
# counter sent through a bijection (an odd multiplier and a random offset, also drawn per process):
# unique in the process whatever the clock does, and not telling how many calls the process served.
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: multiplication by it is a bijection modulo 2**64
_MASK = (1 << 64) - 1
_MS_MASK = (1 << 48) - 1  # 12 hex digits of milliseconds last until the year 10889
_clock = time.time  # tests step it


class _IdSource:
    __slots__ = ("tag", "offset", "counter")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        seed = os.urandom(10)
        self.tag = seed[:2].hex()
        self.offset = int.from_bytes(seed[2:], "big")
        self.counter = itertools.count()


_source = _IdSource()
os.register_at_fork(after_in_child=_source.reseed)  # a forked worker must not repeat its parent's ids


def new_id() -> str:
    """A fresh id, unique across processes and restarts and in time order (see above): 32 lowercase
    hex digits."""
    s = _source
    return f"{int(_clock() * 1000) & _MS_MASK:012x}{s.tag}{(next(s.counter) * _MULTIPLIER + s.offset) & _MASK:016x}"
