"""Admin UI sessions: signing in with the master key gives the browser an opaque random session id in
a cookie; the session (its expiry and its CSRF token) is kept in the database, by the sha256 of the
id, so every worker and every replica accepts it and signing out ends it everywhere at once.

The cookie never holds the master key and is `Secure; HttpOnly; SameSite=Strict`, so page scripts
cannot read it and other sites' pages do not send it. A request authenticated by the cookie must also
carry `x-llmbill-csrf` equal to the session's token, which only the proxy's own page knows (it is
rendered into /ui). Why a token header rather than an Origin check: SameSite treats every port of a
host as the same site (a page on localhost:8080 is "same-site" with a proxy on localhost:4000), and
Origin/Host comparisons break behind TLS-terminating load balancers that rewrite Host; a custom header
cannot be sent cross-origin without a CORS preflight the proxy never grants, and the token must also
match. The header is required on every cookie-authenticated API call, GET included.

Why the database and not memory: with `--workers 2` (or two replicas) a sign-in on one process was
unknown to the others, so the page's calls failed on every other request. Each cookie-authenticated
request costs one primary-key read; the admin UI's traffic is small.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..errors import ProxyError, auth_error
from ..http import Request
from ..store.base import Store
from .attempts import MAX_WRONG_PER_MINUTE, WrongKeys

COOKIE = "llmbill_session"
CSRF_HEADER = "x-llmbill-csrf"
TTL_S = 8 * 3600  # a working day; signing in again is cheap
MAX_SESSIONS = 256  # bounded: the oldest session goes first
MAX_FAILURES_PER_MINUTE = MAX_WRONG_PER_MINUTE  # wrong master keys at /ui/login, per client (attempts.py)


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: float  # time.time()


def _digest(sid: str) -> str:
    # Sessions are found by the digest of their id: the database never holds an id a cookie could carry.
    return hashlib.sha256(sid.encode()).hexdigest()


def cookie_value(request: Request, name: str = COOKIE) -> str | None:
    """The named cookie from the Cookie header (None when absent or empty)."""
    header = request.headers.get("cookie")
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value.strip('"')
    return None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class UiSessions:
    def __init__(self, store: Store, ttl_s: float = TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.wrong_keys = WrongKeys()  # per client and process: one client's flood locks nobody else out

    async def create(self, now: float | None = None) -> tuple[str, str]:
        """A new session: (session id for the cookie, CSRF token for the page)."""
        now = time.time() if now is None else now
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        await self.store.put_ui_session(_digest(sid), csrf, _ms(now + self.ttl_s), _ms(now), MAX_SESSIONS)
        return sid, csrf

    async def get(self, sid: str | None, now: float | None = None) -> Session | None:
        if not sid:
            return None
        try:
            found = await self.store.ui_session(_digest(sid))
        except Exception as exc:  # a 503 in the API's error shape, not a 500
            raise ProxyError(503, f"admin UI sessions cannot be read (database unreachable): {exc}",
                             "service_unavailable") from exc
        if found is None:
            return None
        csrf, expires_ms = found
        if expires_ms <= _ms(time.time() if now is None else now):
            await self.store.end_ui_session(_digest(sid))
            return None
        return Session(csrf, expires_ms / 1000)

    async def check(self, sid: str, csrf: str | None, now: float | None = None) -> None:
        """Raises the 401/403 auth_error unless `sid` is a live session and `csrf` its token."""
        session = await self.get(sid, now)
        if session is None:
            raise auth_error("the admin UI session is unknown, expired or signed out; sign in again at /ui")
        if not csrf or not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
            raise auth_error(f"the admin UI's {CSRF_HEADER} header is missing or wrong; reload /ui", 403)

    async def end(self, sid: str | None) -> None:
        if sid:
            await self.store.end_ui_session(_digest(sid))

    async def count(self, now: float | None = None) -> int:
        """Live sessions (all processes)."""
        return await self.store.count_ui_sessions(_ms(time.time() if now is None else now))
