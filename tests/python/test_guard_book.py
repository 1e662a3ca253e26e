"""A plain call's guards in one step with the core (proxy/guard_book.py): admitted and released by
the guard book, its spend and limits as the plan reads them, a record's change seen by the next call,
and the slow way (the plan) taking over — against the same limiter — for a refusal, a flush in
progress or an entity the book does not check. The whole suite runs with LLMBILL_GUARDS_ORACLE=1
(conftest.py), which plans every plain call as well and compares the slots; these tests pin the
paths themselves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbill import _core
from llmbill.proxy.auth import Principal
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.guards import Admission, admit_model
from llmbill.proxy.state import ProxyState
from llmbill.proxy.store import SpendBatch, SpendLog
from llmbill.proxy.upper_bound import UpperBound

TENTH = UpperBound(None, None, 10**18)  # 0.1 USD in the core's units
MOMENT = datetime(2026, 12, 7, tzinfo=timezone.utc)


def run(tmp: Path, scenario: Callable[[ProxyState, Principal], Awaitable[None]], **key: Any) -> None:
    async def main() -> None:
        cfg = load_config_dict({"model_list": [], "general_settings": {"database_url": f"sqlite:///{tmp / 'db'}"}})
        state = ProxyState(cfg)
        await state.store.open()
        await state.cache.load()
        await state.store.insert("key", {"token_hash": "k", "max_budget": Decimal("1"), **key})
        await state.store.insert("customer", {"user_id": "c", "max_budget": Decimal("0.5")})
        principal = Principal("internal_user", await state.cache.get_or_fetch("key", "k"))
        try:
            await scenario(state, principal)
        finally:
            await state.store.close()

    asyncio.run(main())


def spent(state: ProxyState, amount: str) -> None:
    """A settled call of the key and the customer, in the ledger (not flushed)."""
    usage = _core.Usage(prompt_tokens=1, completion_tokens=1)
    row = SpendLog(f"r-{amount}", "chat_completion", "m", "k", "", "", "c", Decimal(amount), 1, 1, 0, 0, MOMENT,
                   MOMENT, "success")
    state.spend.record(usage, Decimal(amount), row, model="m")


def reserved(state: ProxyState, kind: str, ident: str) -> Decimal:
    return state.limiter.reserved_for((kind, ident))


def test_a_plain_call_is_admitted_and_released_by_the_book(tmp_path: Path) -> None:
    async def scenario(state: ProxyState, principal: Principal) -> None:
        admission = await admit_model(state, principal, "c", TENTH, "m")
        assert admission.handle > 0 and state.guard_book.calls_held() == 1
        assert reserved(state, "key", "k") == reserved(state, "customer", "c") == Decimal("0.1")
        assert [s[0] for s in state.guard_book.slots_of(admission.handle)] == ["key\x1fk", "customer\x1fc"]
        admission.release(7)
        admission.release(7)  # once only
        assert state.guard_book.calls_held() == 0 and reserved(state, "customer", "c") == 0
        assert state.limiter.minute_of(("customer", "c"))[2] == 7

    run(tmp_path, scenario)


def test_spend_not_yet_flushed_counts_and_a_refusal_is_worded_by_the_plan(tmp_path: Path) -> None:
    async def scenario(state: ProxyState, principal: Principal) -> None:
        spent(state, "0.45")
        held = await admit_model(state, principal, "c", TENTH, "m")  # 0.05 of headroom: let through
        assert held.handle > 0
        with pytest.raises(ProxyError) as refused:
            await admit_model(state, principal, "c", TENTH, "m")
        assert refused.value.message == ("ExceededBudget: End User=c over budget. Spend=0.45 (+0.1 reserved by calls "
                                         "in flight), Budget=0.5")
        assert reserved(state, "key", "k") == Decimal("0.1")  # the refused call holds nothing

    run(tmp_path, scenario)


def test_a_record_changed_is_read_by_the_next_call(tmp_path: Path) -> None:
    async def scenario(state: ProxyState, principal: Principal) -> None:
        (await admit_model(state, principal, "c", TENTH, "m")).release()
        before = state.cache.generation
        lowered = await state.store.update("customer", "c", {"max_budget": Decimal("0")})
        assert lowered is not None
        state.cache.put("customer", lowered)  # as a management route does
        assert state.cache.generation > before
        with pytest.raises(ProxyError) as refused:
            await admit_model(state, principal, "c", TENTH, "m")
        assert "Budget=0" in refused.value.message

    run(tmp_path, scenario)


def test_while_a_flush_writes_the_plan_decides_against_the_same_limiter(tmp_path: Path) -> None:
    async def scenario(state: ProxyState, principal: Principal) -> None:
        spent(state, "0.35")
        state.spend.writing = [SpendBatch()]  # a flush between the ledger's drain and the write
        planned = await admit_model(state, principal, "c", TENTH, "m")
        assert planned.handle == 0 and planned.slots  # the plan's, in the core's limiter
        state.spend.writing = []
        booked = await admit_model(state, principal, "c", TENTH, "m")  # 0.15 left, 0.1 held: let through
        assert booked.handle > 0
        assert reserved(state, "customer", "c") == Decimal("0.2")
        with pytest.raises(ProxyError):  # 0.2 held >= 0.15: the book refuses, the plan says why
            await admit_model(state, principal, "c", TENTH, "m")
        planned.release()
        booked.release()
        assert reserved(state, "customer", "c") == 0

    run(tmp_path, scenario)


@pytest.mark.parametrize("key, customer, expected", [
    ({"blocked": True}, {}, "auth_error"),
    ({}, {"blocked": True}, "customer_blocked"),
    ({}, {"models": ["other"]}, "key_model_access_denied"),
    ({"model_max_budget": {"m": {"max_budget": "0"}}}, {}, "budget_exceeded"),
])
def test_what_the_book_does_not_check_the_plan_refuses(tmp_path: Path, key: dict[str, Any],
                                                       customer: dict[str, Any], expected: str) -> None:
    async def scenario(state: ProxyState, principal: Principal) -> None:
        if customer:
            changed = await state.store.update("customer", "c", customer)
            assert changed is not None
            state.cache.put("customer", changed)
        with pytest.raises(ProxyError) as refused:
            await admit_model(state, principal, "c", TENTH, "m")
        assert refused.value.type == expected
        assert state.guard_book.calls_held() == 0

    run(tmp_path, scenario, **key)



def test_the_suites_oracle_catches_a_book_that_disagrees_with_the_plan(tmp_path: Path) -> None:
    async def scenario(state: ProxyState, principal: Principal) -> None:
        (await admit_model(state, principal, "c", TENTH, "m")).release()  # the entries compiled
        state.guard_book.put("customer", "c", state.cache.generation, 10**30, 0, None, False, None, None, None, None,
                             None, True, [], None, [])  # a budget the record does not have
        with pytest.raises(AssertionError, match="the guard book admitted"):
            await admit_model(state, principal, "c", TENTH, "m")

    run(tmp_path, scenario)


# Random records, spend and calls: every admission below runs through the book or the plan, and the
# suite's oracle (conftest.py) compares the two on each — a plain call's slots must be the plan's, a
# call the book refuses must be one the plan refuses. A wrong entry or a missed generation fails here.
_MONEY = st.sampled_from(["0", "0.05", "0.1", "0.3", "1", "1", "0.5", "0.1000000000000000000001"])
_LIMIT = st.sampled_from([None, None, None, None, 0, 1, 3])
_NOW = datetime.now(timezone.utc)
_WHEN = st.sampled_from([None, _NOW - timedelta(hours=1), _NOW + timedelta(hours=1)])


@st.composite
def _limits(draw: st.DrawFn, tiered: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["max_budget"] = Decimal(draw(_MONEY))
    fields.update({name: draw(_LIMIT) for name in ("rpm_limit", "tpm_limit", "max_parallel_requests", "tpd_limit")})
    fields["spend"] = Decimal(draw(st.sampled_from(["0", "0.05", "0.25"])))
    if draw(st.booleans()):
        fields["budget_duration"], fields["budget_reset_at"] = "1d", draw(_WHEN)
    if draw(st.integers(0, 11)) == 0:
        fields["blocked"] = True
    if draw(st.integers(0, 7)) == 0:
        fields["model_max_budget"] = {draw(st.sampled_from(["m", "other"])): {"max_budget": "0.2", "rpm_limit": 2}}
    if tiered and draw(st.booleans()):
        fields["budget_id"] = "tier"
    return fields


@given(key=_limits(tiered=True), user=st.one_of(st.none(), _limits()), team=st.one_of(st.none(), _limits()),
       customer=st.one_of(st.none(), _limits(tiered=True)), member=st.sampled_from([None, None, None, "0.2", "0"]),
       temp=_WHEN, models=st.sampled_from([None, None, [], ["m"], ["other"]]),
       calls=st.lists(st.tuples(st.sampled_from(["0", "0.04", "0.1"]), st.booleans(), st.integers(0, 4).map(lambda i: i == 0)),
                      min_size=1, max_size=8))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_book_decides_what_the_plan_decides(tmp_path_factory: pytest.TempPathFactory, key: dict[str, Any],
                                                user: dict[str, Any] | None, team: dict[str, Any] | None,
                                                customer: dict[str, Any] | None, member: str | None,
                                                temp: datetime | None, models: list[str] | None,
                                                calls: list[tuple[str, bool, bool]]) -> None:
    async def main() -> None:
        tmp = tmp_path_factory.mktemp("book")
        cfg = load_config_dict({"model_list": [], "general_settings": {"database_url": f"sqlite:///{tmp / 'db'}"}})
        state = ProxyState(cfg)
        await state.store.open()
        await state.cache.load()
        await state.store.insert("budget", {"budget_id": "tier", "max_budget": Decimal("0.3"), "rpm_limit": 3})
        await state.cache.load()
        record: dict[str, Any] = {"token_hash": "k", **key}
        if temp is not None:
            record["temp_budget_increase"], record["temp_budget_expiry"] = Decimal("0.1"), temp
        if user is not None:
            await state.store.insert("user", {"user_id": "u", **user})
            record["user_id"] = "u"
        if team is not None:
            members = [{"user_id": "u", "role": "user", **({"max_budget_in_team": Decimal(member)} if member else {})}]
            await state.store.insert("team", {"team_id": "t", "members_with_roles": members, **team})
            record["team_id"] = "t"
        await state.store.insert("key", record)
        if customer is not None:
            await state.store.insert("customer", {"user_id": "c", **customer, **({"models": models} if models is not None
                                                                                 else {})})
        principal = Principal("internal_user", await state.cache.get_or_fetch("key", "k"))
        held: list[Admission] = []
        try:
            for i, (cost, release_one, flushing) in enumerate(calls):
                if cost != "0":
                    usage = _core.Usage(prompt_tokens=1, completion_tokens=1)
                    row = SpendLog(f"r{i}", "chat_completion", "m", "k", record.get("user_id", ""),
                                   record.get("team_id", ""), "c", Decimal(cost), 1, 1, 0, 0, MOMENT, MOMENT, "success")
                    state.spend.record(usage, Decimal(cost), row, model="m")
                state.spend.writing = [SpendBatch()] if flushing else []
                try:
                    held.append(await admit_model(state, principal, "c", TENTH, "m"))
                except ProxyError:
                    pass
                state.spend.writing = []
                if release_one and held:
                    held.pop(0).release(3)
        finally:
            for admission in held:
                admission.release()
            assert reserved(state, "key", "k") == 0 and state.guard_book.calls_held() == 0
            await state.store.close()

    asyncio.run(main())
