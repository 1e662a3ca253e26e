"""Body validation for management routes: each field's type checked, a 400 naming the field otherwise.

Everything a management route stores passes here, so the bounds live here too: every string is an
id or a short name (ids.py: at most 256 characters, no control characters), lists are at most
MAX_ITEMS long, integers at most MAX_INT, and objects (metadata) bounded in depth and size
(bounds.py) — a stored value must serialise again in every reply that carries it.

>>> Fields({"max_budget": "4"}).money("max_budget")
Decimal('4')
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Context, Decimal, InvalidOperation
from typing import Any

import orjson

from .bounds import MAX_STORED_BYTES, MAX_STORED_DEPTH, depth_over
from .durations import parse_duration
from .errors import bad_request
from .ids import check_id

_MISSING = object()
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 31 * 86400}
MAX_DURATION_S = 100 * 366 * 86400
MAX_USD = Decimal(10) ** 15  # a budget past a quadrillion USD is a typo; omit it for no limit
USD_UNIT = Decimal("1e-19")
_EXACT = Context(prec=40)  # MAX_USD in USD_UNIT is 35 digits: quantize never rounds or traps here
MAX_ITEMS = 1000
MAX_INT = 2**53 - 1  # the largest integer the admin UI's JavaScript reads exactly


class Fields:
    def __init__(self, body: dict[str, Any], known: set[str] | None = None) -> None:
        self.body = body
        if known is not None:
            unknown = sorted(set(body) - known)
            if unknown:
                raise bad_request(f"unknown field(s): {', '.join(unknown)}", unknown[0])

    def has(self, name: str) -> bool:
        return name in self.body

    def text(self, name: str, required: bool = False) -> str | None:
        v = self.body.get(name)
        if v is None:
            if required:
                raise bad_request(f"'{name}' is required", name)
            return None
        if not isinstance(v, str) or (required and not v):
            raise bad_request(f"'{name}' must be a{' non-empty' if required else ''} string", name)
        return check_id(v, name)

    def texts(self, name: str) -> list[str] | None:
        v = self.body.get(name)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad_request(f"'{name}' must be a list of strings", name)
        if len(v) > MAX_ITEMS:
            raise bad_request(f"'{name}' may list at most {MAX_ITEMS} items", name)
        return [check_id(x, name) for x in v]

    def integer(self, name: str) -> int | None:
        v = self.body.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_INT:
            raise bad_request(f"'{name}' must be an integer between 0 and {MAX_INT}", name)
        return v

    def flag(self, name: str) -> bool | None:
        v = self.body.get(name)
        if v is None:
            return None
        if not isinstance(v, bool):
            raise bad_request(f"'{name}' must be true or false", name)
        return v

    def money(self, name: str) -> Decimal | None:
        """A USD amount: a number or a numeric string (LiteLLM accepts "0"), from 0 to MAX_USD, in
        whole 1e-19 USD (llmbill's money unit). Anything else is refused, never stored: "1e999" would
        read back as null (no limit) once it became a JSON double."""
        v = self.body.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise bad_request(f"'{name}' must be a number", name)
        try:
            amount = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v).strip())
        except InvalidOperation:
            raise bad_request(f"'{name}' must be a number, got {v!r}", name) from None
        if not amount.is_finite() or amount < 0 or amount > MAX_USD:
            raise bad_request(f"'{name}' must be a number from 0 to {MAX_USD:f} (omit it or send null for no limit),"
                              f" got {v!r}", name)
        if amount != amount.quantize(USD_UNIT, rounding=ROUND_DOWN, context=_EXACT):
            raise bad_request(f"'{name}' has more than 19 decimal places: {v!r}", name)
        return amount if amount else Decimal(0)  # -0 → 0; no arithmetic: it would round to 28 digits

    def duration(self, name: str) -> str | None:
        v = self.text(name)
        if v is None:
            return None
        try:
            n, unit = parse_duration(v)
        except ValueError as exc:
            raise bad_request(f"'{name}': {exc}", name) from None
        if n * _UNIT_SECONDS[unit] > MAX_DURATION_S:  # a window or expiry past year 9999 cannot be computed
            raise bad_request(f"'{name}' may be at most 100 years, got {v.strip()!r}", name)
        return v.strip()

    def mapping(self, name: str) -> dict[str, Any] | None:
        v = self.body.get(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise bad_request(f"'{name}' must be an object", name)
        check_stored(v, name)
        return v


def check_stored(value: Any, name: str) -> None:
    """A 400 unless `value` (a JSON value from a request) may be stored: depth and encoded size bounded."""
    if depth_over(value, MAX_STORED_DEPTH):
        raise bad_request(f"'{name}' nests deeper than {MAX_STORED_DEPTH} levels", name)
    if len(orjson.dumps(value)) > MAX_STORED_BYTES:
        raise bad_request(f"'{name}' is over {MAX_STORED_BYTES} bytes of JSON", name)
