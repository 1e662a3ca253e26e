"""The management field declarations (proxy/fields/) and the pieces the honoured fields use: value
kinds, refusal by name, per-model windows, route groups, loosening rules of the new key limits."""

from __future__ import annotations

import doctest
import importlib
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from llmbill.proxy import key_limits
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.fields import HONOURED, REFUSED, STORED, read
from llmbill.proxy.fields.customers import BUDGET_NEW, CUSTOMER_NEW
from llmbill.proxy.fields.keys import KEY_GENERATE, KEY_UPDATE
from llmbill.proxy.fields.kinds import MODEL_BUDGETS
from llmbill.proxy.fields.teams import TEAM_NEW
from llmbill.proxy.fields.users import USER_NEW
from llmbill.proxy.model_windows import window_start
from llmbill.proxy.route_access import may_call
from llmbill.proxy.validate import Fields

MODULES = ["llmbill.proxy.fields.kinds", "llmbill.proxy.fields.spec", "llmbill.proxy.fields.registry",
           "llmbill.proxy.model_windows", "llmbill.proxy.route_access"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted and not result.failed


def test_every_field_says_what_llmbill_does_with_it() -> None:
    for body in (KEY_GENERATE, KEY_UPDATE, TEAM_NEW, USER_NEW, CUSTOMER_NEW, BUDGET_NEW):
        for field in body.fields:
            assert field.use in (HONOURED, STORED, REFUSED) and field.doc, field


_SAMPLES = {"text": "x", "choice(eu|us)": "eu", "texts": ["x"], "flag": True, "duration": "1d", "integer": 1}


def test_every_refusal_names_the_field_and_says_why_in_one_line() -> None:
    for body in (KEY_GENERATE, KEY_UPDATE, TEAM_NEW, USER_NEW, CUSTOMER_NEW, BUDGET_NEW):
        required = {f.name: "x" for f in body.fields if f.required}
        for field in body.where(REFUSED):
            assert "\n" not in field.doc and 30 <= len(field.doc) <= 160, field
            with pytest.raises(ProxyError) as refused:
                read(body, {**required, field.name: _SAMPLES.get(field.kind.name, {"a": 1})})
            assert refused.value.param == field.name and field.doc in refused.value.message


def test_model_budgets_read_both_spellings_and_refuse_unknown_keys() -> None:
    read_ = MODEL_BUDGETS.read
    assert read_(Fields({"m": {"gpt-4o": 0.5}}), "m") == {"gpt-4o": {"max_budget": Decimal("0.5")}}
    assert read_(Fields({"m": {"a": {"max_budget": "1", "budget_duration": "1d", "rpm_limit": 3}}}), "m") == {
        "a": {"max_budget": Decimal("1"), "budget_duration": "1d", "rpm_limit": 3}}
    with pytest.raises(ProxyError) as bad:
        read_(Fields({"m": {"a": {"limit": 1}}}), "m")
    assert bad.value.param == "m"
    with pytest.raises(ProxyError):
        read_(Fields({"m": {"a": {"time_period": "forever"}}}), "m")


def test_a_refused_field_is_refused_only_with_a_value() -> None:
    assert read(KEY_GENERATE, {"auto_rotate": False, "budget_limits": [], "throttle_on_budget_exceeded": None})
    for spec, body in ((KEY_GENERATE, {"auto_rotate": True}), (KEY_GENERATE, {"end_user_budget_id": "tier"}),
                       (USER_NEW, {"budget_fallbacks": {"a": ["b"]}})):  # a key's setting, not a user's
        with pytest.raises(ProxyError) as refused:
            read(spec, body)
        assert refused.value.status == 400 and refused.value.param == next(iter(body))
    with pytest.raises(ProxyError) as nested:
        read(KEY_GENERATE, {"object_permission": {"models": ["gpt-4o"]}})
    assert nested.value.param == "object_permission.models"


def test_a_duration_too_long_to_compute_is_a_400() -> None:
    # Found by the schema fuzzer: "4311590687416mo" reached the window arithmetic and answered 500.
    with pytest.raises(ProxyError) as long:
        Fields({"budget_duration": "4311590687416mo"}).duration("budget_duration")
    assert long.value.param == "budget_duration"
    assert Fields({"d": "1000mo"}).duration("d") == "1000mo"


def test_model_windows_align_to_fixed_boundaries() -> None:
    now = datetime(2026, 3, 18, 15, 30, tzinfo=timezone.utc)
    assert window_start(now, None, "UTC") is None
    assert window_start(now, "1d", "UTC") == datetime(2026, 3, 18, tzinfo=timezone.utc)
    assert window_start(now, "1w", "UTC") == datetime(2026, 3, 16, tzinfo=timezone.utc)  # a Monday
    assert window_start(now, "2w", "UTC") in (datetime(2026, 3, 16, tzinfo=timezone.utc),
                                              datetime(2026, 3, 9, tzinfo=timezone.utc))
    assert window_start(now, "30m", "UTC") == datetime(2026, 3, 18, 15, 30, tzinfo=timezone.utc)
    paris = window_start(now, "1d", "Europe/Paris")
    assert paris == datetime(2026, 3, 17, 23, tzinfo=timezone.utc)
    # Stable within a window, new in the next one.
    assert window_start(datetime(2026, 3, 31, 23, tzinfo=timezone.utc), "1mo", "UTC") == window_start(now, "1mo", "UTC")


def test_route_groups() -> None:
    assert may_call([], "/key/generate")
    assert may_call(["management_routes"], "/team/new") and not may_call(["management_routes"], "/chat/completions")
    assert may_call(["info_routes"], "/key/info") and not may_call(["info_routes"], "/key/generate")
    assert may_call(["/anthropic/*"], "/anthropic/v1/messages") and not may_call(["/anthropic/*"], "/v1/messages")


def test_loosening_the_new_key_limits() -> None:
    budget = {"gpt-4o": {"max_budget": Decimal(1), "budget_duration": "1d"}}
    assert not key_limits.loosens("model_max_budget", budget, {"gpt-4o": {"max_budget": Decimal("0.5"),
                                                                          "budget_duration": "1d"}})
    assert key_limits.loosens("model_max_budget", budget, {"gpt-4o": {"max_budget": Decimal(2), "budget_duration": "1d"}})
    assert key_limits.loosens("model_max_budget", budget, {})
    assert key_limits.loosens("model_rpm_limit", {"a": 2}, {"a": 3}) and not key_limits.loosens("model_rpm_limit",
                                                                                                  {"a": 2}, {"a": 1})
    assert key_limits.loosens("allowed_routes", ["/chat/completions"], ["/chat/completions", "/key/generate"])
    assert key_limits.loosens("enforced_params", ["user"], []) and not key_limits.loosens("enforced_params", [], ["user"])
    assert key_limits.loosens("tpd_limit", 10, 20) and key_limits.loosens("budget_id", "a", "b")
