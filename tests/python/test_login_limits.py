"""Sign-in at /ui/login under a flood of wrong master keys, and what an unauthenticated client can
make the proxy read: driven in-process through the ASGI app (no server), with an injected clock
for the per-client memory of wrong keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from llmbill.proxy.app import PUBLIC, ProxyApp
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.ui.attempts import WrongKeys, client_of
from llmbill.proxy.ui.sessions import MAX_FAILURES_PER_MINUTE

MASTER = "sk-master-0123456789abcdef"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def make_app(tmp_path: Any) -> ProxyApp:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "general_settings": {"master_key": MASTER, "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}}
    app = ProxyApp(load_config_dict(config))
    asyncio.run(app.state.store.open())  # sign-ins are stored in the database (ui/sessions.py)
    return app


class Exchange:
    """One request through the app: what it answered, and how much of the body it pulled."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, read: int) -> None:
        self.status, self.headers, self.body, self.read = status, headers, body, read


def call(app: ProxyApp, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         client: tuple[str, int] | None = ("192.0.2.7", 50000), chunk: int = 16 * 1024) -> Exchange:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "query_string": b"",
                             "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
                             "client": client}
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    sent: list[dict[str, Any]] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not pieces:
            return {"type": "http.disconnect"}
        piece = pieces.pop(0)
        read += len(piece)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return Exchange(start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
                    b"".join(m.get("body", b"") for m in sent[1:]), read)


def login(app: ProxyApp, key: str, client: str = "192.0.2.7") -> Exchange:
    return call(app, "POST", "/ui/login", f"master_key={key}".encode(), FORM, (client, 50000))


def test_the_right_key_signs_in_while_wrong_ones_are_limited(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    for _ in range(MAX_FAILURES_PER_MINUTE):
        assert login(app, "sk-wrong-guess").status == 401
    assert login(app, "sk-wrong-guess").status == 429  # the flood is limited...
    signed_in = login(app, MASTER)  # ...and the admin, even from the same address, is not locked out
    assert signed_in.status == 303 and "set-cookie" in signed_in.headers


def test_wrong_keys_are_limited_per_client(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    for _ in range(MAX_FAILURES_PER_MINUTE + 5):
        login(app, "sk-wrong-guess", client="198.51.100.1")
    limited = login(app, "sk-wrong-guess", client="198.51.100.1")
    assert limited.status == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert login(app, "sk-typo", client="198.51.100.2").status == 401  # another client: told it is wrong
    assert login(app, MASTER, client="198.51.100.2").status == 303


def test_the_memory_of_wrong_keys_forgets_after_a_minute_and_is_bounded() -> None:
    wrong = WrongKeys(limit=3, window_s=60, max_clients=100)
    for t in (0.0, 1.0, 2.0):
        assert not wrong.retry_after("a", now=t)
        wrong.note("a", now=t)
    assert wrong.retry_after("a", now=30.0) == 30.0  # the first of the three leaves the window at 60
    assert wrong.retry_after("a", now=60.5) == 0.0
    for i in range(10_000):  # many addresses, each wrong a few times: memory stays bounded
        for t in (100.0, 101.0, 102.0):
            wrong.note(f"10.0.{i // 256}.{i % 256}", now=t)
    assert len(wrong) == 100
    assert wrong.retry_after("10.0.39.15", now=103.0) > 0  # the latest ones are remembered


def test_a_client_is_its_address_and_ipv6_clients_their_64_bit_prefix() -> None:
    def client(scope_client: Iterable[Any] | None) -> str:
        class R:
            scope = {"client": scope_client}
        return client_of(R())  # type: ignore[arg-type]

    assert client(("192.0.2.7", 1)) == client(("192.0.2.7", 2)) == "192.0.2.7"
    assert client(("2001:db8:1:2:aaaa::1", 1)) == client(("2001:db8:1:2:bbbb::9", 1)) == "2001:db8:1:2::/64"
    assert client(None) == client(("not-an-address", 0)) != client(("192.0.2.8", 1))


def test_login_reads_only_a_few_kilobytes_without_credentials(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    huge = b"master_key=" + b"x" * (1 << 20)
    answer = call(app, "POST", "/ui/login", huge, FORM)
    assert answer.status == 413 and b'"error"' in answer.body
    assert answer.read <= 32 * 1024  # stopped at the bound, not after the megabyte
    assert login(app, MASTER).status == 303  # a real sign-in still fits


@pytest.mark.parametrize("with_session_cookie", [False, True])
def test_no_route_reads_a_large_body_without_credentials(tmp_path: Any, with_session_cookie: bool) -> None:
    app = make_app(tmp_path)
    huge = b"{" + b" " * (1 << 20) + b"}"
    headers = {"content-type": "application/json"}
    if with_session_cookie:
        headers["cookie"] = "llmbill_session=forged"
    for (method, path), (_, access) in app.routes.items():
        answer = call(app, method, path, huge, headers)
        assert answer.read <= 32 * 1024, (method, path, access, answer.status)
        if access != PUBLIC:
            assert answer.status == 401, (method, path)


def test_any_public_route_is_bounded_by_the_app_not_by_its_handler(tmp_path: Any) -> None:
    from llmbill.proxy.http import Response

    app = make_app(tmp_path)

    async def reads_everything(state: Any, request: Any, principal: Any) -> Response:
        return Response(200, str(len(await request.body())).encode())

    app.routes[("POST", "/public/echo")] = (reads_everything, PUBLIC)  # a route added later, careless
    app.paths.add("/public/echo")
    assert call(app, "POST", "/public/echo", b"x" * (1 << 20)).status == 413
    assert call(app, "POST", "/public/echo", b"x" * 2000).body == b"2000"
