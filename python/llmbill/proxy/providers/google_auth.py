"""OAuth2 access tokens for Vertex AI from a service-account key, cached and refreshed before expiry.

The key comes from `vertex_credentials` (a file path, or the key's JSON text, or an already parsed
object as YAML gives it) or, when that is unset, the file named by GOOGLE_APPLICATION_CREDENTIALS.
google-auth (`google.oauth2.service_account`, the optional extra `llmbill[vertex]`) signs the RS256
JWT grant and exchanges it at the key's `token_uri`; its HTTP goes through the standard library
(`_UrllibRequest`), so the extra needs no HTTP client of its own.

A token refresh is blocking I/O, so `TokenProvider.token()` runs it in a worker thread; concurrent
callers share one refresh (an asyncio lock) and a cached token is reused until `margin` seconds
before it expires. The clock and the refresh function are injectable for tests.

>>> import asyncio
>>> p = TokenProvider(lambda: AccessToken("t1", expires_at=1000.0), clock=lambda: 0.0)
>>> asyncio.run(p.token())
't1'
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import Any

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MISSING_EXTRA = "vertex_ai deployments need google-auth: pip install 'llmbill[vertex]'"


class GoogleAuthError(RuntimeError):
    """The deployment's Google credentials are missing, unreadable or refused (a configuration fault)."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: float  # seconds since the epoch


def load_service_account_info(source: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The service-account key as a dict, from `vertex_credentials` or GOOGLE_APPLICATION_CREDENTIALS."""
    if isinstance(source, Mapping):
        info: Any = dict(source)
    else:
        text = source.strip() if isinstance(source, str) else ""
        if not text:
            path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
            if not path:
                raise GoogleAuthError("vertex_ai: set litellm_params.vertex_credentials or "
                                      "GOOGLE_APPLICATION_CREDENTIALS to a service-account key")
            text = _read(path)
        elif not text.startswith("{"):
            text = _read(text)
        try:
            info = json.loads(text)
        except ValueError:
            raise GoogleAuthError("vertex_ai: the service-account key is not valid JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise GoogleAuthError(f"vertex_ai: expected a service_account key, got type {kind!r}")
    return info


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as error:
        raise GoogleAuthError(f"vertex_ai: cannot read the service-account key {path!r}: {error.strerror}") from None


def service_account_refresher(info: Mapping[str, Any], scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,),
                              timeout: float = 30.0) -> Callable[[], AccessToken]:
    """A blocking function that mints a fresh token with google-auth (call it off the event loop)."""
    try:
        service_account = importlib.import_module("google.oauth2.service_account")
        exceptions = importlib.import_module("google.auth.exceptions")
    except ImportError:
        raise GoogleAuthError(MISSING_EXTRA) from None
    try:
        credentials = service_account.Credentials.from_service_account_info(dict(info), scopes=list(scopes))
    except (ValueError, KeyError) as error:
        raise GoogleAuthError(f"vertex_ai: the service-account key is unusable: {error}") from None
    lock = threading.Lock()  # google-auth's Credentials are not documented as thread-safe

    def refresh() -> AccessToken:
        with lock:
            try:
                credentials.refresh(_UrllibRequest(timeout))
            except exceptions.GoogleAuthError as error:
                raise GoogleAuthError(f"vertex_ai: the token exchange failed: {error}") from None
            expiry = credentials.expiry  # naive UTC, as google-auth keeps it
            return AccessToken(str(credentials.token), expiry.replace(tzinfo=timezone.utc).timestamp())

    return refresh


class TokenProvider:
    """A cached access token, refreshed in a worker thread `margin` seconds before it expires."""

    def __init__(self, refresh: Callable[[], AccessToken], *, clock: Callable[[], float] = time.time,
                 margin: float = 300.0) -> None:
        self._refresh, self._clock, self._margin = refresh, clock, margin
        self._current: AccessToken | None = None
        self._lock: asyncio.Lock | None = None

    def _fresh(self) -> str | None:
        current = self._current
        if current is not None and self._clock() < current.expires_at - self._margin:
            return current.token
        return None

    async def token(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = self._fresh()  # another caller refreshed while this one waited
            if token is None:
                self._current = await asyncio.to_thread(self._refresh)
                token = self._current.token
            return token


_providers: dict[str, TokenProvider] = {}
_providers_lock = threading.Lock()


def provider_for(source: str | Mapping[str, Any] | None) -> TokenProvider:
    """The process-wide TokenProvider of one credentials source (deployments sharing a key share it)."""
    key = json.dumps(source, sort_keys=True) if isinstance(source, Mapping) else (source or "")
    key = key or "env:" + os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TokenProvider(service_account_refresher(load_service_account_info(source)))
            _providers[key] = provider
        return provider


# --- google-auth's transport, on the standard library --------------------------------------------
class _Response:
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status, self.headers, self.data = status, dict(headers), data


class _UrllibRequest:
    """google.auth.transport.Request's interface (a callable returning status, headers, data)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None, **_: Any) -> _Response:
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self._timeout) as reply:
                return _Response(reply.status, dict(reply.headers.items()), reply.read())
        except urllib.error.HTTPError as error:  # google-auth reads the refusal's body itself
            with error:
                return _Response(error.code, dict(error.headers.items()), error.read())
        except (urllib.error.URLError, OSError) as error:
            transport_error = importlib.import_module("google.auth.exceptions").TransportError
            raise transport_error(str(error)) from error
