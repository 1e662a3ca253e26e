"""Which declaration a route handler reads: `@takes(BODY)` on a handler whose body it is, and
`@query(...)` for a GET handler's parameters. The OpenAPI document (openapi.py) looks handlers up
here, so it describes the body each route actually validates.

>>> from llmbill.proxy.fields.spec import Body
>>> @takes(Body(()))
... async def handler() -> None: ...
>>> body_of(handler).fields
()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .spec import Body, Field

F = TypeVar("F", bound=Callable[..., Any])
_BODIES: dict[Callable[..., Any], Body] = {}
_QUERIES: dict[Callable[..., Any], tuple[Field, ...]] = {}


def takes(body: Body) -> Callable[[F], F]:
    def register(handler: F) -> F:
        _BODIES[handler] = body
        return handler
    return register


def query(*params: Field) -> Callable[[F], F]:
    def register(handler: F) -> F:
        _QUERIES[handler] = params
        return handler
    return register


def body_of(handler: Callable[..., Any]) -> Body | None:
    return _BODIES.get(handler)


def query_of(handler: Callable[..., Any]) -> tuple[Field, ...]:
    return _QUERIES.get(handler, ())
