"""A spend-log row as its line (proxy/store/log_line.py): the form the journal appends and the flush
binds, written alike by Python and by the core's settle_call; a LineLog reads its fields only when
asked, and is then the row the line holds."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from llmbill._native import core
from llmbill.proxy.store import SpendLog
from llmbill.proxy.store.log_line import LOG_FIELDS, LineLog, encode_line, read_line

T0 = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=timezone.utc)
T0_US = 1796637600123456
PRICES = core.PriceTable.from_json(['{"m": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}}'])


def row(**fields: Any) -> SpendLog:
    values: dict[str, Any] = dict(
        request_id="call-1", call_type="chat_completion", model="m", api_key="hash", user="u1", team_id="t1",
        end_user="cüst \"q\" \\ \n 名前", spend=Decimal("0.00000045"), prompt_tokens=2000, completion_tokens=1000,
        cached_tokens=500, reasoning_tokens=7, start_time=T0, end_time=T0 + timedelta(milliseconds=90),
        status="success", metadata={"key_alias": "a", "tags": ["x", "ü"]}, response_id="chatcmpl-1")
    values.update(fields)
    return SpendLog(**values)


def test_a_row_and_its_line_are_one_another() -> None:
    original = row()
    line = encode_line(original)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    values = orjson.loads(line)
    assert values[LOG_FIELDS.index("spend")] == "0.00000045"  # exact, as its column holds it
    assert values[LOG_FIELDS.index("start_time")] == T0_US
    assert read_line(line) == original and original == read_line(line)
    tiny = row(spend=Decimal("1E-19"), metadata={})
    assert read_line(encode_line(tiny)) == tiny


def test_a_line_log_reads_its_line_once_and_only_when_asked() -> None:
    original = row()
    held = LineLog(encode_line(original))
    assert list(held.__dict__) == ["line"]
    assert encode_line(held) is held.line  # the flush's and the journal's form, without reading it
    assert held.response_id == "chatcmpl-1"  # a field whose default SpendLog's class holds
    assert set(held.__dict__) == {"line", *LOG_FIELDS}
    assert held.spend == Decimal("0.00000045") and held.metadata == original.metadata
    assert held == original and original == held
    assert dataclasses.astuple(held) == dataclasses.astuple(original)
    assert held != row(spend=Decimal("0.00000046"))
    with pytest.raises(AttributeError):
        held.no_such_field  # noqa: B018


@pytest.mark.parametrize("line", [
    b'{"request_id": "x"}\n',  # an object, not the array
    b'["x"]\n',  # too few values
    encode_line(row()).replace(b'"0.00000045"', b"4.5e-07"),  # spend as a float
    encode_line(row()).replace(str(T0_US).encode(), b'"2026-12-07"'),  # a time not in microseconds
    encode_line(row()).replace(b'"call-1"', b"1"),  # text as a number
])
def test_what_is_not_a_row_is_refused(line: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        read_line(line)


def settled_line(usage: core.Usage, *, model: str = "m", alias: str = "a", tags: str = '["x","ü"]',
                 response_id: str = "chatcmpl-1") -> tuple[core.Cost | None, bytes]:
    price = PRICES.find(model)
    cost, error, line = core.settle_call(core.Ledger(), None, price, usage, "call-1", T0_US // 1000, model, "hash",
                                         alias, "u1", "t1", "cüst \"q\" \\ \n 名前", "chat_completion", T0_US,
                                         response_id, tags)
    assert error == "" and line is not None
    return cost, line


def test_the_core_writes_the_row_python_would() -> None:
    """core.settle_call's row is the row proxy/settle.py's spend_log makes for a call priced in Python."""
    usage = core.Usage(prompt_tokens=2000, completion_tokens=1000, cached_tokens=500, reasoning_tokens=7)
    before = datetime.now(timezone.utc)
    cost, line = settled_line(usage)
    made = read_line(line)
    assert cost is not None and cost.total == made.spend == Decimal("0.0009")
    assert before - timedelta(seconds=1) <= made.end_time <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert made == row(spend=cost.total, end_time=made.end_time)


def test_the_core_row_flags_what_the_event_carries_beyond_the_columns() -> None:
    usage = core.Usage(prompt_tokens=50, completion_tokens=4, cache_creation_tokens=30, cache_creation_1h_tokens=10,
                       estimated=True)
    cost, line = settled_line(usage, model="unpriced-model", alias="", tags="", response_id="")
    made = read_line(line)
    assert cost is None and made.spend == 0
    assert made.metadata == {"unpriced": True, "estimated": True, "cache_creation_tokens": 30,
                             "cache_creation_1h_tokens": 10}
    assert made.response_id == "" and made.model == "unpriced-model"


def test_without_a_call_type_the_core_makes_no_row() -> None:
    result = core.settle_call(core.Ledger(), None, PRICES.find("m"), core.Usage(prompt_tokens=1), "c", 0, "m", "",
                              "", "", "", "")
    assert result[2] is None


def test_the_module_examples_hold() -> None:
    import doctest

    from llmbill.proxy.store import log_line

    assert doctest.testmod(log_line).failed == 0
