"""A spend-log row as one line of JSON: the form the spend journal appends before the reply and the
spend flush binds, all of a batch's rows at once, to one INSERT (store/sql.py) — so a row is encoded
once, on the request path or by the core, and the flush converts nothing a row.

The form: a JSON array of the spend_logs columns in LOG_FIELDS' order, each as its column holds it
(SQLite's storage, which PostgreSQL's INSERT casts from): text as strings, spend an exact decimal
string, token counts integers, times integer microseconds since the epoch, metadata the JSON text of
an object (a string); then a newline. The core writes the same line for the calls it settles
(cpp/include/llmbill/spend_row.hpp); those rows are held as `LineLog`, whose fields are read from the
line only when something asks for them (a flush that must split a batch, a dead letter, a test).

>>> from datetime import datetime, timezone
>>> from decimal import Decimal
>>> t = datetime(2026, 12, 7, tzinfo=timezone.utc)
>>> row = SpendLog("c1", "chat_completion", "m", "k", "u", "", "", Decimal("0.5"), 3, 4, 0, 0, t, t, "success")
>>> line = encode_line(row)
>>> line[:60]
b'["c1","chat_completion","m","k","u","","","0.5",3,4,0,0,1796'
>>> read_line(line) == row
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson

from .base import SpendLog
from .codec import dumps, from_micros, loads, money, to_micros

LOG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SpendLog))
# Each column's kind; every SpendLog field not named here is text.
LOG_TYPES = {"spend": "money", "start_time": "time", "end_time": "time", "metadata": "json",
             "prompt_tokens": "int", "completion_tokens": "int", "cached_tokens": "int",
             "reasoning_tokens": "int"}
_KINDS = tuple(LOG_TYPES.get(name, "text") for name in LOG_FIELDS)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"text expected, not {type(value).__name__}")
    return value


def _whole(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"an integer expected, not {type(value).__name__}")
    return value


_ENCODE: dict[str, Callable[[Any], Any]] = {
    "money": lambda v: format(money(v), "f"), "time": to_micros, "json": lambda v: dumps(dict(v)), "int": int, "text": str}
_DECODE: dict[str, Callable[[Any], Any]] = {
    "money": lambda v: money(_text(v)), "time": lambda v: from_micros(_whole(v)), "json": lambda v: loads(_text(v)),
    "int": _whole, "text": _text}
LINE_ENCODERS: tuple[Callable[[Any], Any], ...] = tuple(_ENCODE[kind] for kind in _KINDS)
_DECODERS = tuple(_DECODE[kind] for kind in _KINDS)


def line_values(log: SpendLog) -> tuple[Any, ...]:
    """The row's values as its line holds them (raises ValueError or TypeError for one no column takes)."""
    return tuple(convert(getattr(log, name)) for convert, name in zip(LINE_ENCODERS, LOG_FIELDS))


def encode_line(log: SpendLog, *, strict: bool = False) -> bytes:
    """The row's line (a LineLog's own). `strict`: refuse (orjson.JSONEncodeError) an integer past
    2**53, which not every JSON reader keeps exact."""
    if isinstance(log, LineLog):
        return log.line
    option = orjson.OPT_APPEND_NEWLINE | (orjson.OPT_STRICT_INTEGER if strict else 0)
    return orjson.dumps(line_values(log), option=option)


def _fields_of(line: bytes) -> dict[str, Any]:
    values = orjson.loads(line)
    if not isinstance(values, list) or len(values) != len(LOG_FIELDS):
        raise ValueError(f"a spend-log line holds {len(LOG_FIELDS)} values in an array")
    return {name: convert(value) for name, convert, value in zip(LOG_FIELDS, _DECODERS, values)}


def read_line(line: bytes) -> SpendLog:
    """The row of a line, checked whole now (raises ValueError, TypeError for one that is not a row)."""
    log = LineLog(line)
    log.__dict__.update(_fields_of(line))
    return log


class LineLog(SpendLog):
    """A row held as its line: made on the request path without building the row's fields, which are
    read from the line the first time one is asked for. Equal to a SpendLog of the same fields."""

    line: bytes  # not a field of the row: this class is not a dataclass of its own

    def __init__(self, line: bytes) -> None:  # the dataclass's __init__ is not run: no fields yet
        self.__dict__["line"] = line

    def _field(self, name: str) -> Any:
        held = self.__dict__
        if name not in held:
            held.update(_fields_of(held["line"]))
        return held[name]

    def __getattr__(self, name: str) -> Any:  # only for attributes not (yet) in __dict__
        if name not in _FIELD_NAMES:
            raise AttributeError(name)
        return self._field(name)

    # SpendLog's class holds response_id's default, which attribute lookup finds before __getattr__.
    @property
    def response_id(self) -> str:
        value: str = self._field("response_id")
        return value

    @response_id.setter
    def response_id(self, value: str) -> None:
        self.__dict__["response_id"] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpendLog):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in LOG_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # as SpendLog's (a dataclass with eq): not hashable


_FIELD_NAMES = frozenset(LOG_FIELDS)
