"""call.py: the reply's headers as the LLM routes send them (reply_headers)."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from llmbill.proxy.auth import MASTER
from llmbill.proxy.call import Call


def _call(admission_id: str = "") -> Call:
    d: Any = SimpleNamespace(price=None, api_base="https://user:secret@api.example.com/v1")
    return Call(SimpleNamespace(), MASTER, "chat", "gpt-4o-mini", d, "cust-1", time.perf_counter(),  # type: ignore[arg-type]
                SimpleNamespace(call_id=admission_id))  # type: ignore[arg-type]


def test_the_call_id_is_its_admissions_else_a_fresh_one() -> None:
    assert _call("0123456789abcdef0123456789abcdef").call_id == "0123456789abcdef0123456789abcdef"
    first, second = _call(), _call()  # no admission id (nothing held): one made for each call
    assert re.fullmatch(r"[0-9a-f]{32}", first.call_id) and first.call_id != second.call_id


@pytest.mark.parametrize(("cost", "shown"), [(None, None), (Decimal(0), b"0"), (Decimal("0.000123"), b"0.000123"),
                                             (Decimal("1E-7"), b"0.0000001")])
def test_reply_headers_follow_the_given_first(cost: Decimal | None, shown: bytes | None) -> None:
    call = _call()
    got = call.reply_headers(cost, [(b"content-type", b"application/json")])
    assert got[0] == (b"content-type", b"application/json")
    names = [b"x-litellm-call-id", b"x-litellm-overhead-duration-ms", b"x-litellm-model-api-base"]
    assert [k for k, _ in got[1:]] == names + ([b"x-litellm-response-cost"] if cost is not None else [])
    values = dict(got)
    assert values[b"x-litellm-call-id"] == call.call_id.encode()
    assert re.fullmatch(rb"-?\d+\.\d{3}", values[b"x-litellm-overhead-duration-ms"])
    assert values[b"x-litellm-model-api-base"] == b"https://user:***@api.example.com/v1"  # redact.url
    assert values.get(b"x-litellm-response-cost") == shown  # exact: never a float's digits
    assert b"secret" not in b"".join(v for _, v in got)  # the deployment's credentials never leave
