"""The few HTTP pieces a raw ASGI app needs: the request, JSON and streaming responses.

Raw ASGI rather than a framework: each framework layer on the request path costs 30-120 µs
(../shared/docs/benchmarks.md), and the proxy's routes are few and flat.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import orjson

from .bounds import MAX_BODY_DEPTH, depth_over, raw_depth_within
from .errors import ProxyError, bad_request
from .ids import id_problem
from .server_protocol import body_writer, send_whole

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
MAX_QUERY_LENGTH = 1024  # ids are at most 256 characters; dates and filters fit easily


class Request:
    __slots__ = ("scope", "receive", "method", "path", "headers", "_query", "_body", "max_body")

    def __init__(self, scope: Scope, receive: Receive, max_body: int) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self._query: dict[str, str] | None = None
        self._body: bytes | None = None
        self.max_body = max_body

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            try:
                query = dict(parse_qsl(self.scope.get("query_string", b"").decode("utf-8"), errors="strict"))
            except UnicodeDecodeError:
                raise bad_request("the query string is not valid UTF-8") from None
            for name, value in query.items():
                # Query values are ids and filters the database is asked about: the id rules apply
                # (PostgreSQL refuses NUL even in a lookup, which would answer 503).
                problem = id_problem(name, MAX_QUERY_LENGTH) or id_problem(value, MAX_QUERY_LENGTH)
                if problem is not None:
                    raise bad_request(f"query parameter {name[:40]!r} (name or value) {problem}", name[:40])
            self._query = query
        return self._query

    async def body(self) -> bytes:
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise ProxyError(413, f"request body over {self.max_body} bytes", "bad_request_error")
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> dict[str, Any]:
        raw = await self.body()
        if not raw.strip():
            raise bad_request("request body must be a JSON object")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise bad_request("request body must be a JSON object")
        if not raw_depth_within(raw, MAX_BODY_DEPTH) and depth_over(data, MAX_BODY_DEPTH):
            raise bad_request(f"request body nests deeper than {MAX_BODY_DEPTH} levels")
        return data


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: list(JSON_HEADERS))

    async def send(self, send: Send) -> None:
        if send_whole(send, self.status, self.headers, self.body):
            return  # written in one step, as uvicorn's two sends below would have written it
        headers = self.headers + [(b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    h = list(JSON_HEADERS)
    if headers:
        h += [(k.encode(), v.encode()) for k, v in headers.items()]
    return Response(status, orjson.dumps(data, default=_default), h)


def _default(value: Any) -> Any:
    from datetime import datetime
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)  # spend fields are JSON numbers: the exact decimal's nearest double
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Pipeable(Protocol):
    """A body that can also push itself into the connection (relay.RelayedStream)."""

    @property
    def can_pipe(self) -> bool: ...

    async def pipe(self, write: Callable[[bytes], bool], drain: Callable[[], Awaitable[None]]) -> bytes:
        """Writes the body as it comes; returns what is left to send with the response's end."""


@dataclass
class StreamingResponse:
    """A response whose body is produced chunk by chunk (server-sent events). A body that can pipe
    itself is written straight to the connection when the server offers a writer (`body_writer`);
    otherwise its chunks are pulled and sent as ASGI messages."""

    chunks: AsyncIterable[bytes]
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    on_disconnect: Callable[[], None] | None = None
    on_close: Callable[[], None] | None = None  # always runs, even if the body was never produced

    async def send(self, send: Send) -> None:
        try:
            await self._send(send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def _send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        if getattr(self.chunks, "can_pipe", False) and (writer := body_writer(send)) is not None:
            last = await cast(Pipeable, self.chunks).pipe(writer.write, writer.drain)
            # uvicorn writes a last chunk and the chunked end together: one write, one wake-up of the client
            await send({"type": "http.response.body", "body": last, "more_body": False})
            return
        client_gone = False
        async for chunk in self.chunks:
            if client_gone:
                continue  # keep draining: the upstream's tokens are billed even if nobody reads them
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:
                client_gone = True
                if self.on_disconnect:
                    self.on_disconnect()
        if not client_gone:
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass



def query_int(request: Request, name: str, default: int, lo: int = 0, hi: int = 10_000) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be between {lo} and {hi}", name)
    return value
