"""Depth and size bounds on client JSON (proxy/bounds.py), and where they are enforced: request
bodies (http.Request.json) and stored fields (validate.Fields)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest

from llmbill.proxy.bounds import MAX_BODY_DEPTH, MAX_STORED_BYTES, MAX_STORED_DEPTH, depth_over, raw_depth_within
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.http import Request
from llmbill.proxy.validate import MAX_INT, MAX_ITEMS, Fields


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("levels", [0, 1, 2, 5, 16, 64, 65, 300])
def test_depth_is_counted_exactly(levels: int) -> None:
    value = nested(levels)
    assert not depth_over(value, levels)
    assert depth_over(value, levels - 1) is (levels > 0)
    wide = {"a": [1, 2, {"b": "x"}], "c": nested(levels), "d": []}
    deepest = max(3, levels + 1)
    assert not depth_over(wide, deepest) and depth_over(wide, deepest - 1)
    assert raw_depth_within(json.dumps(value).encode(), levels)


def body_of(raw: bytes) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    request = Request({"method": "POST", "path": "/x", "headers": [], "query_string": b""}, receive, 10**7)
    return asyncio.run(request.json())


def test_request_bodies_nesting_deeper_than_the_bound_are_400() -> None:
    assert body_of(orjson.dumps({"x": nested(MAX_BODY_DEPTH - 1)}))
    with pytest.raises(ProxyError) as refused:
        body_of(orjson.dumps({"x": nested(MAX_BODY_DEPTH)}))
    assert refused.value.status == 400 and "deeper" in refused.value.message
    # Brackets inside strings do not count as nesting.
    assert body_of(orjson.dumps({"x": "[" * 5000}))
    for raw in (b'{"a": "\xff"}', b'{"a": "\\ud800"}', b"[" * 2000 + b"]" * 2000, b"{" * 2000):
        with pytest.raises(ProxyError) as refused:
            body_of(raw)
        assert refused.value.status == 400


def query_of(raw: bytes) -> dict[str, str]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    return Request({"method": "GET", "path": "/x", "headers": [], "query_string": raw}, receive, 10).query


def test_query_values_follow_the_id_rules() -> None:
    assert query_of(b"team_id=t%C3%A9&page=2") == {"team_id": "té", "page": "2"}
    for raw in (b"team_id=a%00b", b"team_id=%0A", b"team_id=%ff", b"x=" + b"y" * 1025, b"a%00=1", b"t=\xff"):
        with pytest.raises(ProxyError) as refused:
            query_of(raw)
        assert refused.value.status == 400


def test_stored_fields_are_bounded() -> None:
    assert Fields({"metadata": nested(MAX_STORED_DEPTH - 1)}).mapping("metadata")
    for value in (nested(MAX_STORED_DEPTH + 1), {"big": "x" * MAX_STORED_BYTES}):
        with pytest.raises(ProxyError) as refused:
            Fields({"metadata": value}).mapping("metadata")
        assert refused.value.param == "metadata"
    assert Fields({"tpm_limit": MAX_INT}).integer("tpm_limit") == MAX_INT
    for bad_int in (MAX_INT + 1, 2**63, -1, True, 1.5):
        with pytest.raises(ProxyError):
            Fields({"tpm_limit": bad_int}).integer("tpm_limit")
    with pytest.raises(ProxyError):
        Fields({"models": ["m"] * (MAX_ITEMS + 1)}).texts("models")
    for name in ("team_id", "key_alias", "user_email", "budget_id"):
        with pytest.raises(ProxyError) as refused:
            Fields({name: "a\x00b"}).text(name)
        assert refused.value.param == name
    with pytest.raises(ProxyError) as refused:
        Fields({"user_ids": ["ok", "x" * 300]}).texts("user_ids")
    assert refused.value.param == "user_ids"
