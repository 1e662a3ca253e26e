"""The value kinds a management request field may have: each kind's validator and its JSON Schema,
side by side, so that what the OpenAPI document promises is what validation accepts.

A validator takes the request's `Fields` and the field's name, returns the parsed value (None when
the field is null) or raises a 400 naming the field. Every kind accepts null: LiteLLM's request
models make every optional field nullable, and null means "not set" / "no limit".

>>> from llmbill.proxy.validate import Fields
>>> MODEL_BUDGETS.read(Fields({"m": {"gpt-4o": {"budget_limit": "0.5", "time_period": "1d"}}}), "m")
{'gpt-4o': {'max_budget': Decimal('0.5'), 'budget_duration': '1d'}}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import bad_request
from ..validate import MAX_USD, Fields

Reader = Callable[[Fields, str], Any]


@dataclass(frozen=True)
class Kind:
    name: str
    read: Reader
    schema: dict[str, Any] = field(default_factory=dict)  # the JSON Schema of a non-null value


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def schema_of(kind: Kind) -> dict[str, Any]:
    """The kind's JSON Schema with null allowed (OpenAPI 3.1)."""
    return _nullable(kind.schema)


_MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": int(MAX_USD)},
              {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*$"}],
    "description": "USD: a number or a numeric string, at most 19 decimal places"}
_DURATION_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^\s*[0-9]+\s*(s|m|h|d|w|mo)\s*$",
                                    "description": "like 30s, 5m, 1h, 1d, 1w, 1mo"}

TEXT = Kind("text", Fields.text, {"type": "string", "maxLength": 256})
TEXTS = Kind("texts", Fields.texts, {"type": "array", "items": {"type": "string", "maxLength": 256}})
INTEGER = Kind("integer", Fields.integer, {"type": "integer", "minimum": 0, "maximum": 2**53 - 1})
FLAG = Kind("flag", Fields.flag, {"type": "boolean"})
MONEY = Kind("money", Fields.money, _MONEY_SCHEMA)
DURATION = Kind("duration", Fields.duration, _DURATION_SCHEMA)
MAPPING = Kind("mapping", Fields.mapping, {"type": "object"})


def _json(f: Fields, name: str) -> Any:
    """Any JSON value, bounded like metadata (it is stored as sent)."""
    v = f.body.get(name)
    if v is None:
        return None
    Fields({name: {"v": v}}).mapping(name)  # depth and size bounds of stored values
    return v


JSON = Kind("json", _json, {})


def _text_map(f: Fields, name: str) -> dict[str, str] | None:
    v = f.mapping(name)
    if v is None:
        return None
    for k, target in v.items():
        Fields({name: k}).text(name)
        if not isinstance(target, str) or not target:
            raise bad_request(f"'{name}' maps names to non-empty strings; {k!r} maps to {target!r}", name)
        Fields({name: target}).text(name)
    return dict(v)


TEXT_MAP = Kind("text_map", _text_map, {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}})


def _int_map(f: Fields, name: str) -> dict[str, int] | None:
    v = f.mapping(name)
    if v is None:
        return None
    out: dict[str, int] = {}
    for k, n in v.items():
        Fields({name: k}).text(name)
        value = Fields({name: n}).integer(name)
        if value is None:
            raise bad_request(f"'{name}': the limit of {k!r} must be a non-negative integer", name)
        out[k] = value
    return out


INT_MAP = Kind("int_map", _int_map, {"type": "object",
                                     "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}})

MAX_LIST = 64  # names in one list of a TEXTS_MAP: far more than any sane chain


def _texts_map(f: Fields, name: str) -> dict[str, list[str]] | None:
    """{name: [name, ...]}, e.g. a model's ordered fallbacks."""
    v = f.mapping(name)
    if v is None:
        return None
    out: dict[str, list[str]] = {}
    for k, targets in v.items():
        Fields({name: k}).text(name)
        listed = Fields({name: targets}).texts(name)
        if not listed or len(listed) > MAX_LIST or not all(listed):
            raise bad_request(f"'{name}' maps names to lists of 1 to {MAX_LIST} non-empty names; {k!r} maps to "
                              f"{targets!r}", name)
        out[k] = listed
    return out


TEXTS_MAP = Kind("texts_map", _texts_map, {"type": "object", "additionalProperties": {
    "type": "array", "minItems": 1, "maxItems": MAX_LIST,
    "items": {"type": "string", "minLength": 1, "maxLength": 256}}})

# LiteLLM's BudgetConfig spells its two fields two ways (budget_limit / time_period in the docs).
_BUDGET_NAMES = {"max_budget": "max_budget", "budget_limit": "max_budget", "budget_duration": "budget_duration",
                 "time_period": "budget_duration", "tpm_limit": "tpm_limit", "rpm_limit": "rpm_limit"}


def _model_budgets(f: Fields, name: str) -> dict[str, dict[str, Any]] | None:
    """{model: {max_budget | budget_limit, budget_duration | time_period, tpm_limit, rpm_limit}} — or
    {model: amount}, an older LiteLLM form. Stored in the first spelling, money exact."""
    v = f.mapping(name)
    if v is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    for model, config in v.items():
        Fields({name: model}).text(name)
        where = f"{name}.{model}"
        if not isinstance(config, dict):
            config = {"max_budget": config}
        entry: dict[str, Any] = {}
        for key, value in config.items():
            canonical = _BUDGET_NAMES.get(key)
            if canonical is None:
                raise bad_request(f"'{where}': unknown field {key!r} (max_budget or budget_limit, budget_duration"
                                  " or time_period, tpm_limit, rpm_limit)", name)
            sub = Fields({where: value})
            parsed = (sub.money(where) if canonical == "max_budget" else sub.duration(where)
                      if canonical == "budget_duration" else sub.integer(where))
            if parsed is not None:
                entry[canonical] = parsed
        out[model] = entry
    return out


_BUDGET_CONFIG_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "object", "properties": {
        "max_budget": _nullable(_MONEY_SCHEMA), "budget_limit": _nullable(_MONEY_SCHEMA),
        "budget_duration": _nullable(_DURATION_SCHEMA), "time_period": _nullable(_DURATION_SCHEMA),
        "tpm_limit": _nullable(INTEGER.schema), "rpm_limit": _nullable(INTEGER.schema)},
        "additionalProperties": False}, _MONEY_SCHEMA]}
MODEL_BUDGETS = Kind("model_budgets", _model_budgets,
                     {"type": "object", "additionalProperties": _BUDGET_CONFIG_SCHEMA})


def _datetime(f: Fields, name: str) -> datetime | None:
    """An ISO-8601 time; one without a zone is UTC (as LiteLLM reads it)."""
    v = f.text(name)
    if v is None:
        return None
    try:
        t = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"'{name}' must be an ISO-8601 time like 2026-01-31T12:00:00Z, got {v!r}", name) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


DATETIME = Kind("datetime", _datetime, {"type": "string", "format": "date-time"})


def choice(*values: str) -> Kind:
    def read(f: Fields, name: str) -> str | None:
        v = f.text(name)
        if v is not None and v not in values:
            raise bad_request(f"'{name}' must be one of {', '.join(values)}, got {v!r}", name)
        return v
    return Kind(f"choice({'|'.join(values)})", read, {"type": "string", "enum": list(values)})


def _objects(f: Fields, name: str) -> list[dict[str, Any]] | None:
    v = f.body.get(name)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise bad_request(f"'{name}' must be a list of objects", name)
    _json(f, name)
    return list(v)


OBJECTS = Kind("objects", _objects, {"type": "array", "items": {"type": "object"}})


def _texts_or_objects(f: Fields, name: str) -> list[Any] | None:
    v = f.body.get(name)
    if v is None:
        return None
    if isinstance(v, list) and all(isinstance(x, dict) for x in v) and v:
        return _objects(f, name)
    return f.texts(name)


TEXTS_OR_OBJECTS = Kind("texts_or_objects", _texts_or_objects,
                        {"type": "array", "items": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "object"}]}})
