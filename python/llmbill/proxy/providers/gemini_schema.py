"""JSON Schema (as OpenAI clients send it) → Gemini's `Schema` (a subset of OpenAPI 3.0).

Used for `response_format.json_schema.schema` (→ generationConfig.responseSchema) and for each tool's
`function.parameters` (→ functionDeclarations[].parameters). Gemini accepts only its own subset, so
the schema is rewritten, never passed through:

- passed as is: `description`, `title`, `enum` (strings only), `required`, `minItems`,
  `maxItems`, `minLength`, `maxLength`, `pattern`, `minimum`, `maximum`, `minProperties`,
  `maxProperties`, `propertyOrdering`, `default`, `example`; `properties`, `items` and `anyOf` recurse;
- `type` becomes Gemini's upper-case enum (OBJECT or ARRAY when only `properties` or `items` says
  so); `["string", "null"]` and `anyOf: [X, {"type": "null"}]` become `nullable: true`; a string
  `const` becomes a one-value `enum`;
- `format` is kept where Gemini knows it (`enum` and `date-time` for strings, `float`/`double`,
  `int32`/`int64`) and dropped otherwise (`uri`, `email`, `uuid` ... are validation hints that Google
  AI Studio refuses with a 400; the value's type is unchanged);
- local references (`$ref: "#/$defs/X"` or `#/definitions/X`, as pydantic writes them) are inlined,
  and a one-element `allOf` is merged into its parent; a recursive reference cannot be inlined;
- `additionalProperties: false` is dropped: Gemini generates only the declared properties anyway
  (OpenAI's strict mode requires it on every object, so refusing it would refuse every strict schema);
  `$schema`, `$id`, `$comment`, `$defs`, `definitions` and `examples` are annotations and dropped;
- anything else (`oneOf`, `not`, `if`, `patternProperties`, `additionalProperties` true or a schema,
  a multi-element `allOf`, non-string enums ...) raises ProviderInputError naming the keyword.

>>> to_gemini_schema({"type": "object", "properties": {"n": {"type": ["integer", "null"]}}}, "tools")
{'type': 'OBJECT', 'properties': {'n': {'type': 'INTEGER', 'nullable': True}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import ProviderInputError

_TYPES = {"string": "STRING", "number": "NUMBER", "integer": "INTEGER", "boolean": "BOOLEAN",
          "array": "ARRAY", "object": "OBJECT"}
_COPIED = ("description", "title", "required", "minItems", "maxItems", "minLength", "maxLength",
           "pattern", "minimum", "maximum", "minProperties", "maxProperties", "propertyOrdering", "default",
           "example")
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "definitions", "examples"})
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_HANDLED = frozenset({"type", "format", "properties", "items", "anyOf", "enum", "const", "nullable", "$ref", "allOf",
                      "additionalProperties"}) | frozenset(_COPIED) | _ANNOTATIONS


def to_gemini_schema(schema: Any, param: str) -> dict[str, Any]:
    """The Gemini Schema for a JSON Schema object; `param` names the request field in errors."""
    if not isinstance(schema, Mapping):
        raise ProviderInputError(f"{param} must be a JSON Schema object", param)
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    return _convert(schema, param, defs, ())


def _convert(schema: Any, param: str, defs: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise ProviderInputError(f"{param} must be a JSON Schema object", param)
    schema, seen = _resolve(schema, param, defs, seen)
    unknown = sorted(k for k in schema if k not in _HANDLED)
    if unknown:
        raise ProviderInputError(f"{param}: JSON Schema keyword {unknown[0]!r} cannot be expressed for Gemini", param)
    extra = schema.get("additionalProperties", False)
    if extra is not False:
        raise ProviderInputError(f"{param}: additionalProperties other than false cannot be expressed for Gemini",
                                 param)
    out: dict[str, Any] = {}
    nullable = schema.get("nullable") is True
    raw_type = schema.get("type")
    if isinstance(raw_type, list):
        named = [t for t in raw_type if t != "null"]
        nullable = nullable or len(named) < len(raw_type)
        if len(named) != 1:
            raise ProviderInputError(f"{param}: a type list must name one type besides null", param)
        raw_type = named[0]
    if raw_type is not None:
        if not isinstance(raw_type, str) or raw_type not in _TYPES:
            raise ProviderInputError(f"{param}: type {raw_type!r} cannot be expressed for Gemini", param)
        out["type"] = _TYPES[raw_type]
    elif "properties" in schema or "items" in schema:
        out["type"] = "OBJECT" if "properties" in schema else "ARRAY"
    if isinstance(schema.get("format"), str) and schema["format"] in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = schema["format"]
    for key in _COPIED:
        if key in schema:
            out[key] = schema[key]
    if "const" in schema:
        out["enum"] = [_enum_value(schema["const"], param)]
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list):
            raise ProviderInputError(f"{param}: enum must be a list", param)
        out["enum"] = [_enum_value(v, param) for v in values if v is not None]
        nullable = nullable or None in values
    if "properties" in schema:
        props = schema["properties"]
        if not isinstance(props, Mapping):
            raise ProviderInputError(f"{param}: properties must be an object", param)
        out["properties"] = {name: _convert(sub, f"{param}.properties.{name}", defs, seen)
                             for name, sub in props.items()}
    if "items" in schema:
        out["items"] = _convert(schema["items"], f"{param}.items", defs, seen)
    if "anyOf" in schema:
        options = schema["anyOf"]
        if not isinstance(options, list) or not options:
            raise ProviderInputError(f"{param}: anyOf must be a non-empty list", param)
        kept = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null" and len(o) == 1)]
        nullable = nullable or len(kept) < len(options)
        converted = [_convert(o, f"{param}.anyOf", defs, seen) for o in kept]
        if len(converted) == 1:
            out.update({k: v for k, v in converted[0].items() if k not in out or k == "type"})
        elif converted:
            out["anyOf"] = converted
    if nullable:
        out["nullable"] = True
    return out


def _resolve(schema: Mapping[str, Any], param: str, defs: Mapping[str, Any],
             seen: tuple[str, ...]) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """Inline a local $ref and a one-element allOf (siblings of either win, as pydantic intends)."""
    while "$ref" in schema or "allOf" in schema:
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or ref not in defs:
                raise ProviderInputError(f"{param}: $ref {ref!r} is not a local definition", param)
            if ref in seen:
                raise ProviderInputError(f"{param}: recursive $ref {ref!r} cannot be expressed for Gemini", param)
            seen = seen + (ref,)
            target = defs[ref]
            if not isinstance(target, Mapping):
                raise ProviderInputError(f"{param}: $ref {ref!r} is not a schema", param)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
        else:
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], Mapping):
                raise ProviderInputError(f"{param}: allOf with more than one schema cannot be expressed for Gemini",
                                         param)
            target = parts[0]
            rest = {k: v for k, v in schema.items() if k != "allOf"}
        schema = {**target, **rest}
    return schema, seen


def _enum_value(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise ProviderInputError(f"{param}: Gemini enums hold strings only, got {value!r}", param)
    return value
