"""Bad input at the edge of the real proxy: ids the databases cannot store, JSON nested too deep to
serialise again, numbers the core cannot hold — each a 400 in the API's error shape, never stored,
never a 500 later (issue 13, items 7 and 8). On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    url = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        url = create_database(str(request.getfixturevalue("postgres_url")), f"b_{uuid.uuid4().hex[:12]}")
    with Proxy(config(upstream, url), lago_env(lago, "end_user_id")) as p:
        yield p


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "custom-model", "messages": [{"role": "user", "content": "hi"}], **extra}


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


ANY = "any param"


def assert_400(status: int, body: Any, param: str | None = ANY) -> None:
    assert status == 400, body
    assert body["error"]["type"] == "bad_request_error" and body["error"]["code"] == "400"
    if param != ANY:
        assert body["error"]["param"] == param, body


BAD_IDS = ["a\x00b", "x" * 5000, "line\nbreak", "\x7f"]


def test_customer_ids_the_database_cannot_store_are_refused_and_spend_keeps_flowing(
        proxy: Proxy, lago: FakeLago) -> None:
    for bad in BAD_IDS:
        assert_400(*proxy.request("POST", "/chat/completions", chat(user=bad), MASTER)[:2], "user")
        assert_400(*proxy.request("POST", "/chat/completions", chat(metadata={"user_id": bad}), MASTER)[:2],
                   "metadata.user_id")
    # Headers: control characters cannot travel in HTTP; over-long ids and bytes that are not UTF-8 can.
    s, b, _ = proxy.request("POST", "/chat/completions", chat(), MASTER, {"x-litellm-customer-id": "x" * 5000})
    assert_400(s, b, "x-litellm-customer-id")
    s, b, _ = proxy.request("POST", "/chat/completions", chat(), MASTER,
                            {"x-litellm-end-user-id": b"\xff\xfe".decode("latin-1")})
    assert_400(s, b, "x-litellm-end-user-id")
    # A UTF-8 id in a header is read as UTF-8 (not latin-1 mojibake) and billed as sent.
    s, b, _ = proxy.request("POST", "/chat/completions", chat(), MASTER,
                            {"x-litellm-customer-id": "café".encode().decode("latin-1")})
    assert s == 200, b
    # Good calls around the refused ones are written: the flush is not poisoned.
    s, b, _ = proxy.request("POST", "/chat/completions", chat(user="good-customer"), MASTER)
    assert s == 200, b
    s, info, _ = proxy.request("GET", "/customer/info?end_user_id=good-customer", None, MASTER)
    assert s == 200 and Decimal(str(info["spend"])) == CUSTOM_COST
    s, customers, _ = proxy.request("GET", "/customer/list", None, MASTER)
    assert s == 200 and sorted(c["user_id"] for c in customers) == ["café", "good-customer"]
    assert sorted(e["external_subscription_id"] for e in lago.wait_for(2, timeout=10)) == ["café", "good-customer"]
    s, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
    assert s == 200 and len(logs) == 2


def test_management_ids_are_checked_on_the_way_in(proxy: Proxy) -> None:
    for bad in BAD_IDS:
        assert_400(*proxy.request("POST", "/key/generate", {"team_id": bad}, MASTER)[:2], "team_id")
        assert_400(*proxy.request("POST", "/key/generate", {"key_alias": bad}, MASTER)[:2], "key_alias")
        assert_400(*proxy.request("POST", "/customer/new", {"user_id": bad}, MASTER)[:2], "user_id")
        assert_400(*proxy.request("POST", "/user/new", {"user_id": bad}, MASTER)[:2], "user_id")
        assert_400(*proxy.request("POST", "/team/new", {"team_id": bad}, MASTER)[:2], "team_id")
        assert_400(*proxy.request("POST", "/budget/new", {"budget_id": bad}, MASTER)[:2], "budget_id")
        assert_400(*proxy.request("POST", "/customer/block", {"user_ids": ["ok", bad]}, MASTER)[:2], "user_ids")
    # Ids in the query string are looked up in the database: NUL would make PostgreSQL fail (503).
    for query in ("/customer/info?end_user_id=a%00b", "/team/info?team_id=a%00b", "/user/info?user_id=a%0A",
                  "/key/list?team_id=%ff", "/spend/logs?end_user=" + "x" * 2000):
        s, b, _ = proxy.request("GET", query, None, MASTER)
        assert_400(s, b)
    s, b, _ = proxy.request("GET", "/key/list", None, MASTER)
    assert s == 200 and b["keys"] == []


def test_deep_or_huge_stored_json_is_refused_and_listing_routes_keep_working(proxy: Proxy) -> None:
    # 300 levels: refused with the body (param None); 17 levels or 70 kB: refused as the field.
    for body, param in (({"metadata": nested(300)}, None), ({"metadata": nested(17)}, "metadata"),
                        ({"metadata": {"big": "x" * 70_000}}, "metadata")):
        assert_400(*proxy.request("POST", "/key/generate", {**body, "user_id": "u1"}, MASTER)[:2], param)
        assert_400(*proxy.request("POST", "/team/new", {**body, "team_id": "t1"}, MASTER)[:2], param)
        assert_400(*proxy.request("POST", "/user/new", {**body, "user_id": "u2"}, MASTER)[:2], param)
        assert_400(*proxy.request("POST", "/customer/new", {**body, "user_id": "c1"}, MASTER)[:2], param)
    s, k, _ = proxy.request("POST", "/key/generate", {"metadata": nested(16), "user_id": "u1", "team_id": "t1"},
                            MASTER)
    assert s == 200, k
    for path in ("/key/list", "/team/info?team_id=t1", "/user/info?user_id=u1", "/team/list"):
        s, b, _ = proxy.request("GET", path, None, MASTER)
        assert s == 200, (path, b)
    # A request body nested past what the proxy can serialise again is refused whole.
    s, b, _ = proxy.request("POST", "/chat/completions", chat(extra=nested(300)), MASTER)
    assert_400(s, b)
    s, b, _ = proxy.request("POST", "/chat/completions", chat(messages=[{"role": "user", "content": nested(200)}]),
                            MASTER)
    assert_400(s, b)


def test_numbers_and_shapes_the_core_cannot_hold_are_400(proxy: Proxy) -> None:
    for field, value in (("max_tokens", 2**63), ("max_tokens", 2**63 - 1), ("max_completion_tokens", 2**62),
                         ("max_tokens", -1), ("n", 0), ("n", 10**6), ("n", "2")):
        assert_400(*proxy.request("POST", "/chat/completions", chat(**{field: value}), MASTER)[:2], field)
    for value in ("yes", 1, ["include_usage"]):
        assert_400(*proxy.request("POST", "/chat/completions", chat(stream=True, stream_options=value),
                                  MASTER)[:2], "stream_options")
    assert_400(*proxy.request("POST", "/chat/completions", {"model": "a\x00", "messages": [{}]}, MASTER)[:2],
               "model")
    for field in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        assert_400(*proxy.request("POST", "/key/generate", {field: 2**64 - 1}, MASTER)[:2], field)
    s, b, _ = proxy.request("POST", "/chat/completions", chat(max_tokens=100, n=2, stream_options=None), MASTER)
    assert s == 200, b
    s, b, _ = proxy.request("GET", "/key/list", None, MASTER)
    assert s == 200, b


def test_member_ids_of_the_wrong_type_are_400(proxy: Proxy) -> None:
    """Found by the fuzzer: an object or list as a member's id was hashed before it was checked (500)."""
    assert proxy.request("POST", "/team/new", {"team_id": "t1"}, MASTER)[0] == 200
    for member in ({"user_id": {}}, {"user_id": ["a"]}, [{"user_email": {"x": 1}}], {"user_id": "a\x00"}):
        s, b, _ = proxy.request("POST", "/team/member_add", {"team_id": "t1", "member": member}, MASTER)
        assert_400(s, b)
    s, b, _ = proxy.request("GET", "/team/info?team_id=t1", None, MASTER)
    assert s == 200 and b["team_info"]["members_with_roles"] == []
