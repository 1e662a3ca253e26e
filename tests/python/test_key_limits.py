"""Which changes lift a limit, and who may make them (key_limits.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from llmbill.proxy.errors import ProxyError
from llmbill.proxy.key_limits import check_change, initial, loosens, member_budget_change, set_by_of

NOW = datetime(2026, 8, 6, tzinfo=timezone.utc)


@pytest.mark.parametrize(("name", "old", "new", "lifts"), [
    ("max_budget", Decimal("1"), Decimal("1000"), True),
    ("max_budget", Decimal("1"), None, True),
    ("max_budget", Decimal("1"), Decimal("0.5"), False),
    ("max_budget", None, Decimal("5"), False),
    ("rpm_limit", 10, 11, True),
    ("expires", NOW, NOW + timedelta(days=999), True),
    ("expires", NOW, None, True),
    ("expires", None, NOW, False),
    ("budget_duration", None, "1d", True),  # a lifetime budget made daily
    ("budget_duration", "30d", "1d", True),
    ("budget_duration", "1d", "1mo", False),
    ("budget_duration", "1d", None, False),
    ("models", ["a"], ["a", "b"], True),
    ("models", ["a"], [], True),  # no list is every model
    ("models", [], ["a"], False),
    ("models", ["a", "b"], ["b"], False),
    ("models", ["all-team-models"], ["a"], False),
    ("customer_id", "c1", "c2", True),
    ("customer_id", "c1", None, True),
    ("customer_id", None, "c1", False),
    ("allowed_customer_ids", ["a"], ["a", "b"], True),
    ("allowed_customer_ids", ["a", "b"], ["a"], False),
    ("blocked", True, False, True),
    ("blocked", False, True, False),
])
def test_what_lifts_a_limit(name: str, old: Any, new: Any, lifts: bool) -> None:
    assert loosens(name, old, new) is lifts


def test_a_limit_is_lifted_only_by_whoever_set_it_or_a_higher_admin() -> None:
    record = {"max_budget": Decimal("1"), "rpm_limit": 5, "blocked": True}
    set_by = {"max_budget": "proxy_admin", "rpm_limit": "owner", "blocked": "team_admin"}
    with pytest.raises(ProxyError) as refused:
        check_change(set_by, record, {"max_budget": Decimal("2"), "blocked": False}, "owner")
    assert refused.value.status == 403
    assert "max_budget (set by a proxy admin), blocked (set by a team admin)" in refused.value.message
    # Tightening is anyone's, and the higher setter stays; what the owner set, the owner lifts.
    assert check_change(set_by, record, {"max_budget": Decimal("0.5"), "rpm_limit": 50}, "owner") == set_by
    assert check_change(set_by, record, {"blocked": False}, "team_admin") == \
        {"max_budget": "proxy_admin", "rpm_limit": "owner"}  # back to no limit: nobody's
    assert check_change(set_by, record, {"rpm_limit": 1}, "team_admin")["rpm_limit"] == "team_admin"


def test_a_budget_window_belongs_to_whoever_set_the_budget() -> None:
    with pytest.raises(ProxyError):
        check_change({"max_budget": "proxy_admin"}, {"max_budget": Decimal("1")}, {"budget_duration": "1d"}, "owner")
    assert check_change({"max_budget": "owner"}, {"max_budget": Decimal("1")}, {"budget_duration": "1d"},
                        "owner") == {"max_budget": "owner", "budget_duration": "owner"}


def test_a_new_key_and_an_old_one() -> None:
    assert initial({"max_budget": Decimal("1"), "models": [], "blocked": False, "key_alias": "a"}, "owner") == \
        {"max_budget": "owner"}
    # Keys made before limits remembered their setter: every limit counts as a proxy admin's.
    assert set_by_of({"rpm_limit": 5, "max_budget": None}) == {"rpm_limit": "proxy_admin"}
    assert set_by_of({"rpm_limit": 5, "limits_set_by": {}}) == {}


def test_member_budgets_remember_their_setter() -> None:
    entry = {"user_id": "ann", "max_budget_in_team": Decimal("5"), "budget_set_by": "proxy_admin"}
    for lifted in (None, Decimal("6")):
        with pytest.raises(ProxyError) as refused:
            member_budget_change(entry, lifted, "team_admin")
        assert refused.value.status == 403 and "'ann'" in refused.value.message
    assert member_budget_change(entry, Decimal("1"), "owner") == "proxy_admin"
    assert member_budget_change(entry, None, "proxy_admin") is None
    assert member_budget_change({"user_id": "bo"}, Decimal("1"), "owner") == "owner"
    assert member_budget_change({"user_id": "bo", "max_budget_in_team": Decimal("1"), "budget_set_by": "owner"},
                                Decimal("9"), "owner") == "owner"
