"""Admin UI sessions: signing in with the master key gives the browser an opaque random session id in
a cookie; the proxy keeps the session (its expiry and its CSRF token) in this process's memory.

The cookie never holds the master key and is `Secure; HttpOnly; SameSite=Strict`, so page scripts
cannot read it and other sites' pages do not send it. A request authenticated by the cookie must also
carry `x-llmbill-csrf` equal to the session's token, which only the proxy's own page knows (it is
rendered into /ui). Why a token header rather than an Origin check: SameSite treats every port of a
host as the same site (a page on localhost:8080 is "same-site" with a proxy on localhost:4000), and
Origin/Host comparisons break behind TLS-terminating load balancers that rewrite Host; a custom header
cannot be sent cross-origin without a CORS preflight the proxy never grants, and the token must also
match. The header is required on every cookie-authenticated API call, GET included.

>>> sessions = UiSessions(ttl_s=60)
>>> sid, csrf = sessions.create(now=0.0)
>>> sessions.check(sid, csrf, now=1.0)
>>> sessions.check(sid, "wrong", now=1.0)
Traceback (most recent call last):
...
llmbill.proxy.errors.ProxyError: the admin UI's x-llmbill-csrf header is missing or wrong; reload /ui
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..errors import auth_error
from ..http import Request
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
    # Sessions are found by the digest of their id, so nothing compares the raw id byte by byte.
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


class UiSessions:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self.wrong_keys = WrongKeys()  # per client: one client's flood locks nobody else out

    def create(self, now: float | None = None) -> tuple[str, str]:
        """A new session: (session id for the cookie, CSRF token for the page)."""
        now = time.time() if now is None else now
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))  # dicts keep insertion order: the oldest
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._sessions[_digest(sid)] = Session(csrf, now + self.ttl_s)
        return sid, csrf

    def get(self, sid: str | None, now: float | None = None) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(_digest(sid))
        if session is None:
            return None
        if session.expires <= (time.time() if now is None else now):
            self._sessions.pop(_digest(sid), None)
            return None
        return session

    def check(self, sid: str, csrf: str | None, now: float | None = None) -> None:
        """Raises the 401/403 auth_error unless `sid` is a live session and `csrf` its token."""
        session = self.get(sid, now)
        if session is None:
            raise auth_error("the admin UI session is unknown or expired (sessions live in one proxy process "
                             "and end when it restarts); sign in again at /ui")
        if not csrf or not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
            raise auth_error(f"the admin UI's {CSRF_HEADER} header is missing or wrong; reload /ui", 403)

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(_digest(sid), None)

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)
