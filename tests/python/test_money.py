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
