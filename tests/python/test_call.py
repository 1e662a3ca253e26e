"""call.py: the reply's headers as the LLM route sends them (reply_headers) say what headers() says."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from llmbill.proxy.auth import MASTER
from llmbill.proxy.call import Call


def _call() -> Call:
    d: Any = SimpleNamespace(price=None, api_base="https://user:secret@api.example.com/v1")
    return Call(SimpleNamespace(), MASTER, "chat", "gpt-4o-mini", d, "cust-1", time.perf_counter(),  # type: ignore[arg-type]
                SimpleNamespace())  # type: ignore[arg-type]


@pytest.mark.parametrize("cost", [None, Decimal(0), Decimal("0.000123"), Decimal("1E-7")])
def test_reply_headers_are_headers_as_bytes_after_the_given_first(cost: Decimal | None) -> None:
    call = _call()
    expected = [(k.encode(), v.encode()) for k, v in call.headers(cost).items()]
    got = call.reply_headers(cost, [(b"content-type", b"application/json")])
    assert got[0] == (b"content-type", b"application/json")
    overhead = [(k, v) for k, v in got[1:] if k == b"x-litellm-overhead-duration-ms"]
    assert len(overhead) == 1 and re.fullmatch(rb"-?\d+\.\d{3}", overhead[0][1])
    assert [(k, v) for k, v in got[1:] if k != b"x-litellm-overhead-duration-ms"] == \
        [(k, v) for k, v in expected if k != b"x-litellm-overhead-duration-ms"]
    assert [k for k, _ in got[1:]] == [k for k, _ in expected]
    assert b"secret" not in b"".join(v for _, v in got)  # the deployment's credentials never leave
