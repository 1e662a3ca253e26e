import json
from decimal import Decimal

import pytest

import llmbill


def test_price_normalisation_removes_float_dust() -> None:
    assert llmbill.normalise_price(1.0000000000000001e-07) == 10**12
    assert llmbill.normalise_price(2.5e-06) == 25 * 10**12


def test_units_convert_to_exact_decimal() -> None:
    assert llmbill.units_to_usd(11_130_000_000_000_000) == Decimal("0.001113")
    assert llmbill.MONEY_DECIMALS == 19


def test_bad_price_is_a_typed_error() -> None:
    with pytest.raises(llmbill.PriceTableError):
        llmbill.normalise_price(-1.0)


def test_small_decimal_costs_in_exponent_form_are_read_exactly() -> None:
    """str(Decimal("0.00000008")) is "8E-8": the spend logs hand such Decimals to the core when
    `llmbill reconcile` rebuilds events (a cheap call made POST /billing/reconcile answer 500)."""
    from llmbill import _core

    for cost in (Decimal("8E-8"), Decimal("0.00000008"), Decimal("1E-19"), Decimal("2.5E+3")):
        events, missing = _core.build_lago_events(
            call_id="c1", timestamp_ms=0, model="m", usage=_core.Usage(prompt_tokens=1, completion_tokens=1),
            cost=cost, codes=["tokens"], end_user_id="cust")
        assert not missing and Decimal(json.loads(events[0])["properties"]["response_cost"]) == cost
