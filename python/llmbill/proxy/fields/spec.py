"""A route's request fields, declared once: name → kind (validator + JSON Schema), what llmbill does
with it, and LiteLLM's default. Validation (`read`) and the OpenAPI document (openapi.py) both read
these declarations, so the document cannot promise what validation refuses, or the reverse.

What a field is for llmbill (docs/proxy-api.md, "Request fields"):
- honoured: it changes what the proxy does (its route code acts on it);
- stored: it configures something llmbill does not have; kept on the record as sent, and shown back;
- refused: it would change access, money or limits in a way llmbill does not implement; a value other
  than LiteLLM's default (or null / empty) is a 400 naming it, never silently dropped.

>>> from llmbill.proxy.fields.kinds import JSON, MONEY
>>> body = Body((honoured("max_budget", MONEY, "budget"), refused("budget_limits", JSON, "several windows")))
>>> read(body, {"max_budget": 1, "budget_limits": None}).money("max_budget")
Decimal('1')
>>> read(body, {"budget_limits": [{"max_budget": 1, "budget_duration": "1d"}]})
Traceback (most recent call last):
...
llmbill.proxy.errors.ProxyError: 'budget_limits' is not supported by llmbill (several windows): leave it out or send null
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import bad_request
from ..validate import Fields
from .kinds import Kind

HONOURED, STORED, REFUSED = "honoured", "stored", "refused"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    use: str  # HONOURED | STORED | REFUSED
    doc: str  # what llmbill does with it (refused: why not)
    default: Any = None  # LiteLLM's default: sending it is the same as leaving the field out
    required: bool = False


def honoured(name: str, kind: Kind, doc: str, required: bool = False) -> Field:
    return Field(name, kind, HONOURED, doc, required=required)


def stored(name: str, kind: Kind, doc: str = "") -> Field:
    return Field(name, kind, STORED, doc or "stored and shown back; llmbill has no such feature")


def refused(name: str, kind: Kind, why: str, default: Any = None) -> Field:
    return Field(name, kind, REFUSED, why, default)


@dataclass(frozen=True)
class Body:
    """A request body's fields, in the order the documentation lists them."""

    fields: tuple[Field, ...]
    summary: str = ""
    open: bool = False  # other fields are allowed too (the OpenAI-shaped call bodies)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"a field is declared twice: {sorted(n for n in names if names.count(n) > 1)}")

    @property
    def names(self) -> set[str]:
        return {f.name for f in self.fields}

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def where(self, use: str) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.use == use)

    def but(self, *names: str, summary: str = "") -> Body:
        """These fields less `names` (e.g. an update route that does not take the id it creates)."""
        return Body(tuple(f for f in self.fields if f.name not in names), summary or self.summary, self.open)

    def plus(self, *more: Field, summary: str = "") -> Body:
        """These fields with `more` added, or replacing a field of the same name."""
        replaced = {f.name for f in more}
        return Body(tuple(f for f in self.fields if f.name not in replaced) + more, summary or self.summary, self.open)


def unset(field: Field, value: Any) -> bool:
    """Whether `value` means the same as leaving the field out: null, LiteLLM's default, or empty."""
    return value is None or value == field.default or value in ([], {}, "") or (value is False and not field.default)


def read(spec: Body, body: dict[str, Any]) -> Fields:
    """The body checked against its declaration: unknown fields, required ones, every value's kind,
    then refused fields with a value — each a 400 naming the field. Returns the body as Fields."""
    f = Fields(body, None if spec.open else spec.names)
    for field in spec.fields:
        if field.name not in body:
            if field.required:
                raise bad_request(f"'{field.name}' is required", field.name)
            continue
        value = field.kind.read(f, field.name)
        if field.required and value in (None, ""):
            raise bad_request(f"'{field.name}' is required", field.name)
        if field.use == REFUSED and not unset(field, body[field.name]):
            raise bad_request(f"'{field.name}' is not supported by llmbill ({field.doc}): leave it out or send null",
                              field.name)
    return f


def stored_values(spec: Body, f: Fields) -> dict[str, Any]:
    """The stored fields the body sets, with their checked values, to keep on the record."""
    return {field.name: field.kind.read(f, field.name) for field in spec.where(STORED) if f.has(field.name)}


def values(spec: Body, f: Fields, *names: str) -> dict[str, Any]:
    """The checked values of the named fields the body sends (by their declared kinds)."""
    return {name: spec.field(name).kind.read(f, name) for name in names if f.has(name)}
