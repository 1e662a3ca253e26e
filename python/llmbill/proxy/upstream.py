"""Forwarding to a deployment: OpenAI-compatible upstreams over a lean pooled keep-alive HTTP/1.1
client (httpclient.py: aiohttp's client was the largest single cost of the request path; httpx,
with its per-request pool scans, measured 10x slower still), or the built-in mock model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from .. import redact
from . import mock, request_fields
from .deadlines import Deadlines
from .deployments import Deployment
from .errors import ProxyError
from .failures import GENERAL, UpstreamFailure, answered
from .httpclient import ConnectFailed, Reply, Target, UpstreamError
from .httpclient_pool import Client, WaitObserver
from .routing import RETRY_STATUSES, backoff
from .providers.base import UpstreamRequest

ROUTE_PATHS = {"chat": "/chat/completions", "completion": "/completions", "embedding": "/embeddings"}
T = TypeVar("T")


@dataclass
class UpstreamReply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)  # filled for adapters' requests only


@dataclass
class UpstreamStream:
    status: int
    chunks: AsyncIterator[bytes]  # raw bytes as they arrive
    content_type: str
    close: Any  # async callable releasing the connection
    headers: dict[str, str] = field(default_factory=dict)  # an error reply's (Bedrock names its errors there)
    # The pooled client's reply, for a consumer that takes the bytes pushed (Reply.pipe) instead of
    # pulling `chunks`; None for the mock model. Use one or the other, never both.
    reply: Reply | None = None
    read_timeout: float | None = None  # the longest silence pipe() allows (chunks applies the same)


class Upstream:
    def __init__(self, waits: WaitObserver | None = None) -> None:
        self._client: Client | None = None
        self._waits = waits  # told when a request is written and its reply comes (idle_poll.py)
        self._deadlines = Deadlines()  # the exchanges' timeouts (deadlines.py)
        # Per deployment and route, built once: the parsed URL and the request head (keyed by id(),
        # checked by identity: wildcard deployments come and go).
        self._targets: dict[tuple[int, str], tuple[Deployment, Target]] = {}

    async def start(self) -> None:
        self._client = Client(spare=True, waits=self._waits)

    async def close(self) -> None:
        self._deadlines.close()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _target(self, d: Deployment, route: str) -> Target:
        entry = self._targets.get((id(d), route))
        if entry is None or entry[0] is not d:
            headers = {"content-type": "application/json"}
            if d.api_key:
                headers["authorization"] = f"Bearer {d.api_key}"
            try:
                target = Target(d.api_base + ROUTE_PATHS[route], headers)
            except ValueError as exc:
                raise ProxyError(502, f"{d.model_name}: {redact.text(str(exc))}", "upstream_error") from None
            if len(self._targets) >= 10_000:
                self._targets.clear()
            entry = self._targets[(id(d), route)] = (d, target)
        return entry[1]

    async def call(self, d: Deployment, route: str, body: dict[str, Any]) -> UpstreamReply:
        if d.provider == "mock":
            reply = mock.embeddings(body, d.upstream_model) if route == "embedding" else (
                mock.chat(body, d.upstream_model, d.mock_response) if route == "chat"
                else mock.completion(body, d.upstream_model, d.mock_response))
            return UpstreamReply(200, orjson.dumps(reply), "application/json")
        client = self._client
        assert client is not None
        target = self._target(d, route)
        payload = orjson.dumps(body)

        async def exchange() -> UpstreamReply:
            resp = await client.post(target, payload)
            return UpstreamReply(resp.status, await resp.read(), resp.content_type)

        try:
            return await _retrying(d, lambda: self._deadlines.within(d.timeout, exchange), _reply_status, _no_release)
        except (UpstreamError, OSError, TimeoutError) as exc:
            raise _unreachable(d, exc) from None

    async def stream(self, d: Deployment, route: str, body: dict[str, Any]) -> UpstreamStream:
        if d.provider == "mock":
            async def noop() -> None:
                return None

            return UpstreamStream(200, mock.chat_stream(body, d.upstream_model, d.mock_response),
                                  "text/event-stream", noop)
        client = self._client
        assert client is not None
        target = self._target(d, route)
        payload = orjson.dumps(body)
        try:
            resp: Reply = await _retrying(
                d, lambda: self._deadlines.within(d.timeout, lambda: client.post(target, payload)), _open_status,
                _release)
        except (UpstreamError, OSError, TimeoutError) as exc:
            raise _unreachable(d, exc) from None
        return _streamed(d, resp)

    async def send(self, d: Deployment, request: UpstreamRequest) -> UpstreamReply:
        """One POST an adapter built (its own URL and headers, e.g. signed per request)."""
        client = self._client
        assert client is not None
        target = _adapter_target(d, request)

        async def exchange() -> UpstreamReply:
            resp = await client.post(target, request.body)
            return UpstreamReply(resp.status, await resp.read(), resp.content_type, resp.header_map())

        try:
            return await _retrying(d, lambda: self._deadlines.within(d.timeout, exchange), _reply_status, _no_release)
        except (UpstreamError, OSError, TimeoutError) as exc:
            raise _unreachable(d, exc) from None

    async def open_stream(self, d: Deployment, request: UpstreamRequest) -> UpstreamStream:
        """A streamed POST an adapter built; the reply's bytes as they arrive."""
        client = self._client
        assert client is not None
        target = _adapter_target(d, request)
        try:
            resp: Reply = await _retrying(
                d, lambda: self._deadlines.within(d.timeout, lambda: client.post(target, request.body)), _open_status,
                _release)
        except (UpstreamError, OSError, TimeoutError) as exc:
            raise _unreachable(d, exc) from None
        return _streamed(d, resp)


def _reply_status(reply: UpstreamReply) -> tuple[int, str | None]:
    return reply.status, reply.headers.get("retry-after")


def _open_status(resp: Reply) -> tuple[int, str | None]:
    return resp.status, None


async def _no_release(reply: UpstreamReply) -> None:
    return None


async def _release(resp: Reply) -> None:
    resp.release()  # the refused reply's connection goes back (or is closed)


async def _retrying(d: Deployment, once: Callable[[], Awaitable[T]],
                    status: Callable[[T], tuple[int, str | None]], drop: Callable[[T], Awaitable[None]]) -> T:
    """`once()` again after a 429/5xx (the provider refused the call: nothing billed) or a refused
    connection (nothing sent), up to the deployment's max_retries (routing.py); never after a failure
    that may have followed the provider's work. The call's own num_retries replaces max_retries."""
    most = request_fields.retries(d.max_retries)
    if most == 0:  # the common case: one send, nothing to inspect
        return await once()
    attempt = 0
    while True:
        try:
            result = await once()
        except (ConnectFailed, ConnectionRefusedError):  # no connection: nothing was written
            if attempt >= most:
                raise
            attempt += 1
            await asyncio.sleep(backoff(attempt, None))
            continue
        code, retry_after = status(result)
        if code not in RETRY_STATUSES or attempt >= most:
            return result
        attempt += 1
        await drop(result)
        await asyncio.sleep(backoff(attempt, retry_after))


_adapter_targets: dict[tuple[str, tuple[tuple[str, str], ...]], Target] = {}


def _adapter_target(d: Deployment, request: UpstreamRequest) -> Target:
    """The request's Target, reused while its URL and headers repeat (most adapters' do; a signed
    request's never do, so the memo is bounded)."""
    key = (request.url, tuple(request.headers.items()))
    target = _adapter_targets.get(key)
    if target is not None:
        return target
    try:
        target = Target(request.url, dict(request.headers))
    except ValueError as exc:
        raise ProxyError(502, f"{d.model_name}: {exc}", "upstream_error") from None
    if len(_adapter_targets) >= 1024:
        _adapter_targets.clear()
    _adapter_targets[key] = target
    return target


def _streamed(d: Deployment, resp: Reply) -> UpstreamStream:
    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for data in resp.chunks(d.stream_timeout or d.timeout):
                yield data
        except (UpstreamError, OSError, TimeoutError):
            return  # a cut or silent stream ends here; what arrived is billed
        finally:
            resp.release()

    async def close() -> None:
        resp.release()

    return UpstreamStream(resp.status, chunks(), resp.content_type, close,
                          resp.header_map() if resp.status >= 400 else {}, resp, d.stream_timeout or d.timeout)


def _unreachable(d: Deployment, exc: BaseException) -> ProxyError:
    """502. A connection never made is an UpstreamFailure (nothing ran: a fallback may follow); any
    other failure came after the request was written and may have been billed: nothing follows it."""
    detail = str(exc) or type(exc).__name__
    message = f"{d.model_name}: upstream {redact.url(d.api_base)} unreachable: {redact.text(detail)}"
    if isinstance(exc, (ConnectFailed, ConnectionRefusedError)):
        return UpstreamFailure(502, message, "upstream_error", kind=GENERAL)
    return ProxyError(502, message, "upstream_error")


def upstream_error(d: Deployment, status: int, body: bytes) -> UpstreamFailure:
    """The upstream's status and type, its message prefixed with the deployment; marked with the
    fallback it starts (failures.py: by what the provider answered)."""
    return answered(_error(d, status, body), status, body)


def _error(d: Deployment, status: int, body: bytes) -> ProxyError:
    message, type_, param = body.decode("utf-8", "replace")[:500], "upstream_error", None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            type_ = str(err.get("type") or type_)
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if d.api_key and d.api_key in message:  # an upstream that quotes the key it was sent: not to our client
        message = message.replace(d.api_key, redact.MASK)
    if status in (401, 403):  # the deployment's key was refused, not the caller's: as every adapter says it
        return ProxyError(502, f"{d.model_name}: the upstream rejected the deployment's credentials: {message}",
                          "upstream_error")
    return ProxyError(status if 400 <= status < 600 else 502, f"{d.model_name}: {message}", type_, param)
