"""llmbill.calls: billed_call makes the same frozen BilledCall as the dataclass's own constructor."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from llmbill._native import core
from llmbill.calls import BilledCall, billed_call

FIELDS = dict(call_id="c1", timestamp_ms=1_700_000_000_123, model="gpt-4o-mini",
              usage=core.Usage(prompt_tokens=12, completion_tokens=7), cost=Decimal("0.0000063"),
              cost_detail=None, unpriced=False, key_alias="alias", user_id="u1", team_id="t1",
              end_user_id="cust-1", billed_amount=Decimal("0.0000070"), provider="openai")


def test_it_sets_every_field_of_the_dataclass_and_no_other() -> None:
    made = billed_call(**FIELDS)
    assert set(vars(made)) == {f.name for f in dataclasses.fields(BilledCall)}
    assert made == BilledCall(**FIELDS)
    assert made.extra == {} and made.billed == Decimal("0.0000070")


def test_it_is_frozen_like_the_dataclass_s_own() -> None:
    made = billed_call(**FIELDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.cost = Decimal(1)  # type: ignore[misc]
    assert dataclasses.replace(made, billed_amount=None) == BilledCall(**{**FIELDS, "billed_amount": None})


def test_each_call_gets_its_own_extra() -> None:
    a, b = billed_call(**FIELDS), billed_call(**FIELDS)
    assert a.extra is not b.extra


def test_a_calls_start_in_microseconds_and_its_event_timestamp_agree() -> None:
    from datetime import datetime, timedelta, timezone

    from llmbill.calls import call_start_us, call_timestamp_ms

    start = datetime(2026, 12, 8, tzinfo=timezone.utc) + timedelta(microseconds=123_999)
    assert call_start_us(start) == 1796688000123999
    assert call_timestamp_ms(start) == 1796688000123  # floored, never rounded up
    assert call_timestamp_ms(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)) == -1
    with pytest.raises(ValueError):
        call_start_us(datetime(2026, 12, 8))
