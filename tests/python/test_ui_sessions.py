"""Admin UI sessions (proxy/ui/sessions.py) live in the database: a sign-in on one worker is honoured by
every worker (and replica), expires after its TTL, is bounded in number, and a sign-out ends it
everywhere. Before: sessions were in one process's memory, so with `--workers 2` about every other
request of a signed-in page failed with 401."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmbill.proxy.store import open_store
from llmbill.proxy.ui.sessions import MAX_FAILURES_PER_MINUTE, MAX_SESSIONS, UiSessions
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config


def test_sessions_expire_are_bounded_shared_and_count_wrong_keys(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        await store.open()
        sessions, other_worker = UiSessions(store, ttl_s=10), UiSessions(store, ttl_s=10)
        sid, csrf = await sessions.create(now=100.0)
        await other_worker.check(sid, csrf, now=109.9)  # another process accepts it
        assert await other_worker.get(sid, now=110.0) is None and await sessions.count(now=0) == 0  # expired, dropped
        first, _ = await sessions.create(now=200.0)
        for i in range(MAX_SESSIONS):
            await sessions.create(now=200.0 + (i + 1) / 1000)
        assert await sessions.count(now=201.0) == MAX_SESSIONS
        assert await sessions.get(first, now=201.0) is None  # the oldest went
        sid, csrf = await sessions.create(now=300.0)
        await other_worker.end(sid)  # signed out on one worker: gone for all
        assert await sessions.get(sid, now=301.0) is None
        for _ in range(MAX_FAILURES_PER_MINUTE):  # wrong keys are counted per client (attempts.py)
            assert not sessions.wrong_keys.retry_after("192.0.2.1", now=300.0)
            sessions.wrong_keys.note("192.0.2.1", now=300.0)
        assert sessions.wrong_keys.retry_after("192.0.2.1", now=359.0) == 1.0
        assert not sessions.wrong_keys.retry_after("192.0.2.2", now=359.0)
        await store.close()
        assert sid.encode() not in (tmp_path / "db.sqlite").read_bytes()

    asyncio.run(scenario())


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _call(proxy: Proxy, path: str, headers: dict[str, str], body: bytes | None = None,
          method: str = "GET") -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(proxy.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirects).open(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        e.close()
        return e.code, {k.lower(): v for k, v in e.headers.items()}, text


@pytest.fixture
def two_workers(upstream: FakeOpenAI) -> Iterator[Proxy]:
    args = ["--log-level", "info", "--log-format", "json"]  # access lines carry the worker's pid
    with Proxy(config(upstream, None), workers=2, args=args) as proxy:
        yield proxy


def test_a_sign_in_on_one_worker_is_honoured_by_both_and_a_sign_out_ends_it_everywhere(two_workers: Proxy) -> None:
    proxy = two_workers
    status, headers, _ = _call(proxy, "/ui/login", {"content-type": "application/x-www-form-urlencoded"},
                               f"master_key={MASTER}".encode(), "POST")
    assert status == 303
    cookie = headers["set-cookie"].split(";")[0]
    status, _, page = _call(proxy, "/ui", {"cookie": cookie})
    match = re.search(r'name="llmbill-csrf" content="([^"]+)"', page)
    assert status == 200 and match, page[:300]
    session = {"cookie": cookie, "x-llmbill-csrf": match.group(1)}
    for _ in range(40):  # fresh connections: the kernel spreads them over both workers
        status, _, body = _call(proxy, "/budget/list", {**session, "connection": "close"})
        assert status == 200, body
    status, _, _ = _call(proxy, "/ui/logout", {**session, "content-type": "application/json"}, b"{}", "POST")
    assert status == 200
    for _ in range(20):
        assert _call(proxy, "/budget/list", {**session, "connection": "close"})[0] == 401
    served = [json.loads(line) for line in proxy.output.splitlines() if line.startswith("{") and "/budget/list" in line]
    assert len({line["pid"] for line in served}) == 2, "both workers answered with the one session"
