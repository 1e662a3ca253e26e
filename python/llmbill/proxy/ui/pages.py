"""/ui routes: the sign-in form, the admin page, sign-out and the static files (see __init__)."""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from importlib import resources
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import orjson

from ..auth import Principal, is_master
from ..http import Request, Response, json_response
from ..state import ProxyState
from .attempts import MAX_WRONG_PER_MINUTE, client_of
from .sessions import COOKIE, CSRF_HEADER, cookie_value

log = logging.getLogger("llmbill.proxy")

LOGIN_MAX_BYTES = 8 * 1024  # a sign-in form is a few dozen bytes, and read before any authentication
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

# Everything the page loads comes from the proxy itself; no inline script, no framing.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_HTML_HEADERS = [(b"content-type", b"text/html; charset=utf-8"), (b"content-security-policy", _CSP.encode()),
                 (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                 (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]

_files: dict[str, str] = {}


def _read(name: str) -> str:
    """A file of this package (read once per process)."""
    if name not in _files:
        _files[name] = resources.files("llmbill.proxy.ui").joinpath(*name.split("/")).read_text(encoding="utf-8")
    return _files[name]


def _render(name: str, **values: str) -> bytes:
    text = _read(name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text.encode()


def _set_cookie(value: str, max_age: int) -> tuple[bytes, bytes]:
    return (b"set-cookie",
            f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict".encode())


def _login_page(status: int, message: str = "") -> Response:
    notice = f'<p class="form-error" role="alert" id="login-error">{html.escape(message)}</p>' if message else ""
    return Response(status, _render("login.html", notice=notice), list(_HTML_HEADERS))


def _app_page(state: ProxyState, csrf: str) -> Response:
    tz = state.config.timezone
    today = datetime.now(timezone.utc).astimezone(ZoneInfo(tz)).date().isoformat()
    notice = ""
    if state.config.master_key is None:
        notice = ('<p class="banner warn">No master key is configured: this proxy and this page are open to '
                  'anyone who can reach them.</p>')
    # "customer": customers are who Lago bills, so the Customers tab reads each one's credits.
    credits = "customer" if state.credits is not None and state.credits.payer_kind == "customer" else ""
    return Response(200, _render("app.html", csrf=html.escape(csrf), today=today, tz=html.escape(tz),
                                 credits=credits, notice=notice), list(_HTML_HEADERS))


async def page(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    if state.config.master_key is None:
        return _app_page(state, "")
    session = await state.ui_sessions.get(cookie_value(request))
    if session is not None:
        return _app_page(state, session.csrf)
    if "signed_in" in request.query:
        # /ui/login said yes, yet the browser came back without the cookie: it refused a Secure cookie.
        return _login_page(200, "Signed in, but this browser did not keep the session cookie. The cookie is "
                                "Secure: open the admin UI over HTTPS (or on localhost).")
    return _login_page(200)


async def _presented_key(request: Request) -> object:
    """master_key from a form or JSON body (whatever type the client sent; None when absent)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            data = {}
        return data.get("master_key") if isinstance(data, dict) else None
    return dict(parse_qsl(raw.decode("utf-8", "replace"))).get("master_key")


async def login(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    # Unauthenticated: the app already bounds the body to PUBLIC_MAX_BODY; bound it here too, so
    # the form never costs more than a few KB whatever route table serves it.
    request.max_body = min(request.max_body, LOGIN_MAX_BYTES)
    key = await _presented_key(request)
    sessions = state.ui_sessions
    master = state.config.master_key
    # The right key first: accepted from any client, however many wrong ones came before.
    if master is None or (isinstance(key, str) and key and is_master(key, master)):
        sid, _ = await sessions.create()
        headers = [(b"location", b"/ui?signed_in=1"), (b"cache-control", b"no-store"),
                   _set_cookie(sid, int(sessions.ttl_s))]
        return Response(303, b"", headers)
    if not isinstance(key, str) or not key:
        return _login_page(400, "Enter the proxy's master key.")
    client = client_of(request)
    wait = sessions.wrong_keys.retry_after(client)
    if wait > 0:
        response = _login_page(429, f"Too many wrong master keys from your address in the last minute; "
                                    f"try again in {math.ceil(wait)} s.")
        response.headers.append((b"retry-after", str(math.ceil(wait)).encode()))
        return response
    if sessions.wrong_keys.note(client):
        log.warning("admin UI: %d wrong master keys from %s within a minute; its wrong keys are answered 429 "
                    "(and no longer logged) until that minute has passed", MAX_WRONG_PER_MINUTE, client)
    else:
        log.warning("admin UI: a wrong master key from %s", client)
    return _login_page(401, "Wrong master key.")


async def logout(state: ProxyState, request: Request, principal: Principal | None) -> Response:
    sid = cookie_value(request)
    if sid is not None:
        await state.ui_sessions.check(sid, request.headers.get(CSRF_HEADER))  # no cross-site sign-outs either
        await state.ui_sessions.end(sid)  # in the database: signed out on every worker and replica
    response = json_response({"signed_out": True})
    response.headers.append(_set_cookie("", 0))
    return response


def asset(name: str) -> Callable[[ProxyState, Request, Principal | None], Awaitable[Response]]:
    """The handler serving one static file."""
    content_type = ASSETS[name]

    async def handler(state: ProxyState, request: Request, principal: Principal | None) -> Response:
        return Response(200, _read("static/" + name).encode(),
                        [(b"content-type", content_type.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"cache-control", b"no-cache")])
    return handler
