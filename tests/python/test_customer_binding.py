"""Keys bound to customers: `customer_id` fixes a key's customer, `allowed_customer_ids` lists them;
a call outside the binding is a 403 in the OpenAI error shape and nothing is forwarded or billed."""

from __future__ import annotations

from typing import Any

import pytest

from llmbill.proxy.auth import MASTER as MASTER_PRINCIPAL
from llmbill.proxy.auth import Principal
from llmbill.proxy.customer_binding import bound_customer, check_binding
from llmbill.proxy.errors import ProxyError
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config


def _key(**fields: Any) -> Principal:
    return Principal("internal_user", {"token_hash": "h", **fields})


def test_an_unbound_key_bills_whatever_customer_the_call_names() -> None:
    assert bound_customer(_key(), "anyone") == "anyone"
    assert bound_customer(_key(), "") == ""
    assert bound_customer(MASTER_PRINCIPAL, "anyone") == "anyone"


def test_a_fixed_customer_is_the_only_one() -> None:
    key = _key(customer_id="acme")
    assert bound_customer(key, "") == "acme"  # a call naming none is billed to it
    assert bound_customer(key, "acme") == "acme"
    with pytest.raises(ProxyError) as refused:
        bound_customer(key, "fresh-id")
    assert (refused.value.status, refused.value.type, refused.value.param) == (403, "customer_not_allowed", "user")


def test_an_allow_list_must_be_named() -> None:
    key = _key(allowed_customer_ids=["a", "b"])
    assert bound_customer(key, "b") == "b"
    for outside in ("c", ""):
        with pytest.raises(ProxyError) as refused:
            bound_customer(key, outside)
        assert refused.value.status == 403


def test_a_key_is_bound_one_way_only() -> None:
    check_binding({"customer_id": "a"})
    check_binding({"customer_id": None}, {"allowed_customer_ids": ["a"]})
    with pytest.raises(ProxyError) as both:
        check_binding({"customer_id": "a"}, {"allowed_customer_ids": ["a"]})
    assert both.value.status == 400


def test_calls_outside_a_keys_binding_are_refused_and_not_billed(upstream: FakeOpenAI) -> None:
    cfg = config(upstream, None)
    cfg["litellm_settings"] = {}
    with Proxy(cfg) as p:
        def call(key: str, user: str | None = None, header: str | None = None) -> tuple[int, Any]:
            body: dict[str, Any] = {"model": "custom-model", "messages": [{"role": "user", "content": "hi"}]}
            if user is not None:
                body["user"] = user
            s, b, _ = p.request("POST", "/chat/completions", body, key,
                                {"x-litellm-customer-id": header} if header else None)
            return s, b

        s, b, _ = p.request("POST", "/key/generate", {"customer_id": "acme", "allowed_customer_ids": ["x"]}, MASTER)
        assert s == 400 and b["error"]["param"] == "allowed_customer_ids"
        fixed = p.request("POST", "/key/generate", {"customer_id": "acme"}, MASTER)[1]["key"]
        listed = p.request("POST", "/key/generate", {"allowed_customer_ids": ["a", "b"]}, MASTER)[1]["key"]
        assert call(fixed)[0] == 200 and call(fixed, "acme")[0] == 200 and call(listed, "b")[0] == 200
        forwarded = len(upstream.requests)
        for key, user, header in ((fixed, "dodge-1", None), (fixed, None, "dodge-2"), (listed, "dodge-3", None),
                                  (listed, None, None)):
            s, b = call(key, user, header)
            assert s == 403 and b["error"]["type"] == "customer_not_allowed" and b["error"]["param"] == "user", b
            assert set(b["error"]) == {"message", "type", "param", "code"} and b["error"]["code"] == "403"
        assert len(upstream.requests) == forwarded  # nothing reached the upstream
        s, logs, _ = p.request("GET", "/spend/logs", None, MASTER)
        assert sorted(r["end_user"] for r in logs) == ["acme", "acme", "b"]  # the fixed key's unnamed call too
        for dodge in ("dodge-1", "dodge-2", "dodge-3"):
            assert p.request("GET", f"/customer/info?end_user_id={dodge}", None, MASTER)[0] == 404
