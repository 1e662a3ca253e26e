"""A budget amount is refused with a 400 naming its field unless it is a plain USD amount llmbill can
hold: "1e999" was stored and read back as null — no limit at all."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmbill.proxy.errors import ProxyError
from llmbill.proxy.routes import budgets, customers, keys, teams, users
from llmbill.proxy.validate import Fields
from tests.python.test_budget_reset import Harness


@pytest.mark.parametrize("value", ["1e999", "1E+16", 1e300, "NaN", "nan", "Infinity", "-inf", "-1", -0.5, "sNaN",
                                   "0.00000000000000000001", "1e-30", "", "ten", [1], {"usd": 1}, True])
def test_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ProxyError) as err:
        Fields({"max_budget": value}).money("max_budget")
    assert err.value.status == 400 and err.value.param == "max_budget"


@pytest.mark.parametrize("value,amount", [("4", "4"), (4, "4"), (0.1, "0.1"), (1e-07, "0.0000001"), ("0", "0"),
                                          ("-0", "0"), (" 2.50 ", "2.50"), ("1e15", "1000000000000000"),
                                          ("999999999999999.9999999999999999999", "999999999999999.9999999999999999999"),
                                          ("0.0000000000000000001", "1E-19"), (None, None)])
def test_accepted_exactly(value: Any, amount: str | None) -> None:
    got = Fields({"max_budget": value}).money("max_budget")
    assert got == (None if amount is None else Decimal(amount))
    assert got is None or not got.is_signed()


@pytest.mark.parametrize("route,extra", [(keys.generate, {}), (users.user_new, {"user_id": "u"}),
                                         (teams.team_new, {"team_id": "t"}), (customers.new, {"user_id": "c"}),
                                         (budgets.new, {"budget_id": "b"})])
def test_every_budget_route_refuses_1e999(tmp_path: Path, route: Any, extra: dict[str, Any]) -> None:
    h = Harness(tmp_path)
    try:
        for field in ("max_budget", "soft_budget"):
            with pytest.raises(ProxyError) as err:
                h.post(route, {**extra, field: "1e999"})
            assert err.value.status == 400 and err.value.param == field
    finally:
        h.close()
