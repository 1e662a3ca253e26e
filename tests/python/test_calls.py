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
