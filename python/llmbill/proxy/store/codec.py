"""Values shared by both backends: the record JSON codec, exact money, UTC times and table layout.

Records are stored as JSON text with two type tags so that they round-trip exactly:

>>> from decimal import Decimal
>>> loads(dumps({"max_budget": Decimal("0.001113"), "tags": ["a"]}))
{'max_budget': Decimal('0.001113'), 'tags': ['a']}

`{"$decimal": "1.5"}` is a Decimal, `{"$datetime": "2025-01-01T00:00:00+00:00"}` an aware UTC
datetime; a caller's own one-key dict whose key is a tag is escaped as `{"$dict": [[key, value]]}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .base import INDEXED, KINDS, UPSERTED, WINDOWED, Record

_DEC, _DT, _ESC = "$decimal", "$datetime", "$dict"
_TAGS = frozenset((_DEC, _DT, _ESC))

# Spend is a sum of exact amounts: a result that would need rounding raises instead of rounding.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


# -- scalars ------------------------------------------------------------------------------------


def money(value: Any) -> Decimal:
    """An exact, finite Decimal from Decimal, int or a decimal string (floats go through repr)."""
    if isinstance(value, bool):
        raise TypeError("money cannot be a bool")
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, (Decimal, int, str)):
        raise TypeError(f"money must be a Decimal, int or decimal string, not {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"money must be finite, not {value!r}")
    return amount


def add_money(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware: {value!r}")
    return value.astimezone(timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: SQLite's time columns (exact, sortable)."""
    return (utc(value) - EPOCH) // _MICRO


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


# -- JSON ---------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return {_DEC: str(value)}
    if isinstance(value, datetime):
        return {_DT: utc(value).isoformat()}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"record keys must be strings, not {key!r}")
            out[key] = _encode(item)
        if len(out) == 1 and next(iter(out)) in _TAGS:
            return {_ESC: [[key, item] for key, item in out.items()]}
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    raise TypeError(f"cannot store a {type(value).__name__} in a record: {value!r}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == _DEC:
            return Decimal(value)
        if key == _DT:
            return datetime.fromisoformat(value)
        if key == _ESC:
            return {k: v for k, v in value}
    return obj


# One encoder for every record: json.dumps with non-default options builds a new JSONEncoder a call
# (~1 µs of the ~5 a small record's text took; every spend-log row's metadata goes through here).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(value: Mapping[str, Any]) -> str:
    """JSON text of a record (Decimal and aware datetime tagged; NaN and naive datetimes refused)."""
    return _ENCODER.encode(_encode(value))


def loads(text: str) -> Record:
    value = json.loads(text, object_hook=_decode)
    if not isinstance(value, dict):
        raise ValueError("stored record is not a JSON object")
    return value


# -- tables -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """Where one entity kind lives: `data` holds the whole record except spend; the id and the
    INDEXED fields are copied into their own columns for lookups and filters."""

    kind: str
    name: str
    id_col: str
    indexed: tuple[str, ...]
    has_spend: bool  # budgets have no spend of their own
    upserted: bool  # apply_spend creates a missing record (customers: first call; members: first team call)
    # `budget_reset_at` lives in its own column (`reset_at`), so that a window is reset by one
    # statement guarded by the stored time (reset_windows), never by a read-modify-write per record.
    windowed: bool


TABLES: dict[str, Table] = {
    kind: Table(kind, f"{kind}s", id_col, INDEXED[kind], kind != "budget", kind in UPSERTED, kind in WINDOWED)
    for kind, id_col in KINDS.items()
}
RESET_FIELD = "budget_reset_at"


def table(kind: str) -> Table:
    try:
        return TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r} (one of {', '.join(KINDS)})") from None


def spend_table(kind: str) -> Table:
    t = table(kind)
    if not t.has_spend:
        raise ValueError(f"{kind} records have no spend")
    return t


@dataclass(frozen=True)
class EncodedRecord:
    ident: str
    indexed: tuple[str | None, ...]
    data: str
    spend: Decimal | None  # None when the record carries no spend
    reset_at: datetime | None = None  # the reset_at column of a windowed table


def encode_record(t: Table, record: Mapping[str, Any]) -> EncodedRecord:
    ident = record.get(t.id_col)
    if not isinstance(ident, str) or not ident:
        raise ValueError(f"a {t.kind} record needs a non-empty string {t.id_col!r}")
    indexed: list[str | None] = []
    for name in t.indexed:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{t.kind} field {name!r} must be a string or None, not {value!r}")
        indexed.append(value)
    spend: Decimal | None = None
    data = dict(record)
    if t.has_spend and "spend" in data:
        spend = money(data.pop("spend"))
    reset_at: datetime | None = None
    if t.windowed and isinstance(data.get(RESET_FIELD), datetime):
        reset_at = utc(data[RESET_FIELD])
        data[RESET_FIELD] = None  # the key stays (the record had the field); the column holds the time
    return EncodedRecord(ident, tuple(indexed), dumps(data), spend, reset_at)


def decode_record(t: Table, data: str, spend: Decimal | None, reset_at: datetime | None = None) -> Record:
    """The record of a row. A windowed record's reset time is its column's; a record written before
    the column existed keeps the one in its data until it is migrated (sql.SqlStore._migrate)."""
    record = loads(data)
    if t.has_spend:
        record["spend"] = spend if spend is not None else Decimal(0)
    if reset_at is not None:
        record[RESET_FIELD] = reset_at
    return record


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_filters(allowed: tuple[str, ...] | frozenset[str], filters: Mapping[str, Any] | None,
                  what: str) -> list[tuple[str, str | None]]:
    """Equality filters as (column, value) pairs; unknown fields and non-string values refused."""
    out: list[tuple[str, str | None]] = []
    for name, value in (filters or {}).items():
        if name not in allowed:
            raise ValueError(f"{what} cannot be filtered by {name!r} (only {', '.join(sorted(allowed)) or 'nothing'})")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"filter {name!r} must be a string or None, not {value!r}")
        out.append((name, value))
    return out
