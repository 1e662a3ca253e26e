"""GET /openapi.json (the document openapi.py builds from the route table, once per process) and
GET /docs (a self-contained page that renders it: no script or style from anywhere else)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

from ..auth import Principal
from ..http import JSON_HEADERS, Request, Response
from ..state import ProxyState

_document = b"{}"


def publish(document: dict[str, Any]) -> None:
    """The app's document (ProxyApp builds it from its route table at construction)."""
    global _document
    _document = orjson.dumps(document)


async def openapi_json(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    return Response(200, _document, list(JSON_HEADERS))


_PAGE = resources.files("llmbill.proxy").joinpath("docs.html").read_bytes()


async def page(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    return Response(200, _PAGE, [(b"content-type", b"text/html; charset=utf-8"),
                                 (b"content-security-policy", b"default-src 'self'; script-src 'unsafe-inline'; "
                                                              b"style-src 'unsafe-inline'")])
