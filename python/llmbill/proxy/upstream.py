"""Forwarding to a deployment: OpenAI-compatible upstreams over a pooled aiohttp client (keep-alive,
no per-request pool scans — httpx measured 10x slower here), or the built-in mock model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from . import mock
from .config import Deployment
from .errors import ProxyError

ROUTE_PATHS = {"chat": "/chat/completions", "completion": "/completions", "embedding": "/embeddings"}


@dataclass
class UpstreamReply:
    status: int
    body: bytes
    content_type: str


@dataclass
class UpstreamStream:
    status: int
    chunks: AsyncIterator[bytes]  # raw bytes as they arrive
    content_type: str
    close: Any  # async callable releasing the connection


class Upstream:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # Per deployment, built once: its headers and timeouts (a new ClientTimeout and header dict per
        # call showed in the profile). Keyed by id(), checked by identity (wildcard deployments come and go).
        self._prepared: dict[int, tuple[Deployment, dict[str, str], aiohttp.ClientTimeout, aiohttp.ClientTimeout]] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                              json_serialize=lambda o: orjson.dumps(o).decode())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _prepare(self, d: Deployment) -> tuple[Deployment, dict[str, str], aiohttp.ClientTimeout, aiohttp.ClientTimeout]:
        entry = self._prepared.get(id(d))
        if entry is None or entry[0] is not d:
            h = {"content-type": "application/json"}
            if d.api_key:
                h["authorization"] = f"Bearer {d.api_key}"
            entry = (d, h, aiohttp.ClientTimeout(total=d.timeout), aiohttp.ClientTimeout(total=None, sock_read=d.timeout))
            if len(self._prepared) >= 10_000:
                self._prepared.clear()
            self._prepared[id(d)] = entry
        return entry

    async def call(self, d: Deployment, route: str, body: dict[str, Any]) -> UpstreamReply:
        if d.provider == "mock":
            reply = mock.embeddings(body, d.upstream_model) if route == "embedding" else (
                mock.chat(body, d.upstream_model, d.mock_response) if route == "chat"
                else mock.completion(body, d.upstream_model, d.mock_response))
            return UpstreamReply(200, orjson.dumps(reply), "application/json")
        assert self._session is not None
        url = d.api_base + ROUTE_PATHS[route]
        _, headers, timeout, _ = self._prepare(d)
        try:
            async with self._session.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout) as resp:
                data = await resp.read()
                return UpstreamReply(resp.status, data, resp.headers.get("content-type", ""))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(d, exc) from None

    async def stream(self, d: Deployment, route: str, body: dict[str, Any]) -> UpstreamStream:
        if d.provider == "mock":
            async def noop() -> None:
                return None

            return UpstreamStream(200, mock.chat_stream(body, d.upstream_model, d.mock_response),
                                  "text/event-stream", noop)
        assert self._session is not None
        url = d.api_base + ROUTE_PATHS[route]
        _, headers, _, timeout = self._prepare(d)
        try:
            resp = await self._session.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(d, exc) from None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for data in resp.content.iter_any():
                    yield data
            except (aiohttp.ClientError, TimeoutError):
                return  # a cut stream ends here; what arrived is billed
            finally:
                resp.release()

        async def close() -> None:
            resp.release()

        return UpstreamStream(resp.status, chunks(), resp.headers.get("content-type", ""), close)


def _unreachable(d: Deployment, exc: BaseException) -> ProxyError:
    detail = str(exc) or type(exc).__name__
    return ProxyError(502, f"{d.model_name}: upstream {d.api_base} unreachable: {detail}", "upstream_error")


def upstream_error(d: Deployment, status: int, body: bytes) -> ProxyError:
    """The upstream's status and type, its message prefixed with the deployment."""
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
    return ProxyError(status if 400 <= status < 600 else 502, f"{d.model_name}: {message}", type_, param)
