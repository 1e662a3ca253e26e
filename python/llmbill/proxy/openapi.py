"""The OpenAPI 3.1 document of the proxy (GET /openapi.json), built from the route table and the
field declarations the management routes validate with (fields/): a route's request schema is its
handler's declared body or query, so the document and validation cannot disagree. Routes that are
not management routes (the OpenAI- and Anthropic-shaped calls, the UI, operations) are described by
the small table below.

Each management field's schema carries `x-llmbill-use` (honoured, stored or refused) and says what
llmbill does with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from .fields.kinds import schema_of
from .fields.registry import body_of, query_of
from .fields.spec import REFUSED, Body, Field

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": "string"}}}}}
_OBJECT: dict[str, Any] = {"type": "object"}
_LIST: dict[str, Any] = {"type": "array", "items": {"type": "object"}}


def _open_body(required: Mapping[str, Any], **optional: Any) -> dict[str, Any]:
    props = {**required, **optional}
    return {"type": "object", "required": list(required), "properties": props, "additionalProperties": True}


_MESSAGES = {"type": "array", "minItems": 1, "items": {"type": "object"}}
_CHAT = _open_body({"model": {"type": "string", "minLength": 1}, "messages": _MESSAGES},
                   stream={"type": "boolean"}, user={"type": "string"}, metadata={"type": "object"},
                   max_tokens={"type": "integer", "minimum": 0}, stream_options={"type": "object"})
_COMPLETION = _open_body({"model": {"type": "string", "minLength": 1},
                          "prompt": {"anyOf": [{"type": "string"}, {"type": "array"}]}},
                         stream={"type": "boolean"}, user={"type": "string"})
_EMBEDDING = _open_body({"model": {"type": "string", "minLength": 1},
                         "input": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1}]}},
                        user={"type": "string"})
_RESPONSES = _open_body({"model": {"type": "string", "minLength": 1}}, input={}, stream={"type": "boolean"})
_MESSAGES_BODY = _open_body({"model": {"type": "string", "minLength": 1}, "messages": {"type": "array"},
                             "max_tokens": {"type": "integer", "minimum": 1}},
                            stream={"type": "boolean"}, system={}, metadata={"type": "object"})
_COUNT = _open_body({"model": {"type": "string", "minLength": 1}, "messages": {"type": "array"}})
_RECONCILE = {"type": "object", "required": ["from", "to"], "properties": {
    "from": {"type": "string", "description": "ISO 8601, 'now' or '-<n>[smhdw]'"}, "to": {"type": "string"},
    "fix": {"type": "boolean"}, "force_late": {"type": "boolean"}, "max_age": {"type": "string"},
    "wait": {"type": "number", "minimum": 0, "maximum": 300}}}
_DATES = [("start_date", "YYYY-MM-DD (or a timestamp for /spend/logs)"), ("end_date", "YYYY-MM-DD")]

# path → (summary, request body schema or None, [(query parameter, description)], reply schema or media type)
OTHER: dict[str, tuple[str, dict[str, Any] | None, list[tuple[str, str]], Any]] = {
    "/chat/completions": ("OpenAI chat completion (stream with stream: true)", _CHAT, [], _OBJECT),
    "/completions": ("OpenAI text completion", _COMPLETION, [], _OBJECT),
    "/embeddings": ("OpenAI embeddings", _EMBEDDING, [], _OBJECT),
    "/engines/embeddings": ("OpenAI embeddings (older path)", _EMBEDDING, [], _OBJECT),
    "/models": ("The models this key may call", None, [], _OBJECT),
    "/responses": ("OpenAI Responses API", _RESPONSES, [], _OBJECT),
    "/v1/messages": ("Anthropic Messages API", _MESSAGES_BODY, [], _OBJECT),
    "/v1/messages/count_tokens": ("Anthropic token count", _COUNT, [], _OBJECT),
    "/health/liveliness": ("Alive", None, [], _OBJECT),
    "/health/liveness": ("Alive", None, [], _OBJECT),
    "/health/readiness": ("Ready: database and billing sink state", None, [], _OBJECT),
    "/openapi.json": ("This document", None, [], _OBJECT),
    "/docs": ("This document, rendered", None, [], "text/html"),
    "/global/spend/teams": ("Spend per team, and per day", None, _DATES + [("limit", "teams listed")], _OBJECT),
    "/global/spend/keys": ("Spend per key", None, [("limit", "keys listed")], _LIST),
    "/global/spend/end_users": ("Spend per customer", None, [("limit", "customers listed")], _LIST),
    "/spend/logs": ("One row per billed call", None, _DATES + [
        ("api_key", "a key (raw or hashed)"), ("user_id", "internal user"), ("end_user", "customer"),
        ("team_id", "team"), ("request_id", "one call"), ("tags", "comma-separated: rows with any of them"),
        ("limit", "rows (at most 100000)")], _LIST),
    "/global/spend/report": ("Spend grouped by team, customer or model", None,
                             _DATES + [("group_by", "team, customer or model")], _OBJECT),
    "/budget/list": ("Every budget tier", None, [], _LIST),
    "/team/list": ("Teams this caller may read", None, [], _LIST),
    "/ui": ("The admin UI", None, [], "text/html"),
    "/ui/login": ("Sign in to the admin UI (form: key)", None, [], "text/html"),
    "/ui/logout": ("Sign out of the admin UI", None, [], "text/html"),
    "/metrics": ("Prometheus metrics", None, [], "text/plain"),
    "/billing/reconcile": ("Compare spend logs with Lago (and resend what Lago lost)", _RECONCILE, [], _OBJECT),
}
_LIST_REPLIES = {"/customer/list", "/end_user/list"}


def _other(path: str) -> tuple[str, dict[str, Any] | None, list[tuple[str, str]], Any] | None:
    for prefix in ("/v1", "/anthropic"):
        if path.startswith(prefix + "/") and path[len(prefix):] in OTHER and path not in OTHER:
            return OTHER[path[len(prefix):]]
    if path.startswith("/ui/static/"):
        return "An admin UI asset", None, [], "text/plain"
    return OTHER.get(path)


def field_schema(field: Field) -> dict[str, Any]:
    schema = schema_of(field.kind)
    what = f"{field.use}: {field.doc}" if field.use != REFUSED else f"refused unless null or unset: {field.doc}"
    return {**schema, "description": what, "x-llmbill-use": field.use}


def body_schema(body: Body) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {f.name: field_schema(f) for f in body.fields},
                              "additionalProperties": body.open}
    required = [f.name for f in body.fields if f.required]
    if required:
        schema["required"] = required
    return schema


def _parameters(params: list[tuple[str, str]] | tuple[Field, ...]) -> list[dict[str, Any]]:
    out = []
    for p in params:
        if isinstance(p, Field):
            out.append({"name": p.name, "in": "query", "required": p.required, "description": p.doc,
                        "schema": {"type": "string"}})
        else:
            out.append({"name": p[0], "in": "query", "required": False, "description": p[1],
                        "schema": {"type": "string"}})
    return out


def _reply(reply: Any) -> dict[str, Any]:
    if isinstance(reply, str):
        return {"description": "OK", "content": {reply: {"schema": {"type": "string"}}}}
    return {"description": "OK", "content": {"application/json": {"schema": reply}}}


def _errors(public: bool) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    codes = {"400": "bad request (the field is named in error.param)", "404": "not found",
             "413": "request body too large", "422": "budget exceeded, or fields that do not go together",
             "429": "rate limit or budget exceeded", "503": "database unavailable"}
    if not public:
        codes.update({"401": "missing, unknown, expired or blocked key", "403": "not allowed for this key"})
    return {code: {"description": text, **ref} for code, text in codes.items()}


def _operation(method: str, path: str, handler: Callable[..., Any], access: str) -> dict[str, Any]:
    public = access == "public"
    op: dict[str, Any] = {"operationId": f"{method.lower()}{path.replace('/', '_').replace('.', '_')}",
                          "tags": [path.strip("/").split("/")[0] or "root"]}
    body, query = body_of(handler), query_of(handler)
    other = _other(path)
    reply: Any = _LIST if path in _LIST_REPLIES else _OBJECT
    if other is not None:
        op["summary"], schema, params, reply = other
        if schema is not None and method == "POST":
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        if params and method == "GET":
            op["parameters"] = _parameters(params)
    if body is not None and method == "POST":
        op["summary"] = body.summary
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema(body)}}}
    if query and method == "GET":
        op["parameters"] = _parameters(query)
        op.setdefault("summary", (handler.__doc__ or "").strip().split("\n")[0] or f"GET {path}")
    op.setdefault("summary", f"{method} {path}")
    op["responses"] = {"200": _reply(reply), **_errors(public)}
    if public:
        op["security"] = []
    return op


def _version() -> str:
    try:
        return metadata.version("llmbill")
    except metadata.PackageNotFoundError:
        return "0"


def build(routes: Mapping[tuple[str, str], tuple[Callable[..., Any], str]]) -> dict[str, Any]:
    """The document for a route table ((method, path) → (handler, access))."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (handler, access) in sorted(routes.items(), key=lambda r: (r[0][1], r[0][0])):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, handler, access)
    return {
        "openapi": "3.1.0",
        "info": {"title": "llmbill-proxy", "version": _version(),
                 "description": "An OpenAI-compatible proxy configured like LiteLLM's, billing every call exactly. "
                                "Management fields are marked x-llmbill-use: honoured, stored or refused."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the master key or a virtual key"},
            "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
        "security": [{"bearer": []}, {"x-api-key": []}],
    }
