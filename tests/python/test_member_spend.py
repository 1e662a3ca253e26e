"""A team member's spend is its own record (issue 16): every call of the user's keys in the team adds to
it, and the member's budget is checked against it alone. Before, the check summed the spend of every
key in memory on each call (all keys, all teams), and a process had to hold every key to do it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmbill import _core
from llmbill.proxy.auth import Principal
from llmbill.proxy.config import ConfigError, load_config_dict
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.guards import admit, limits_of, member_spend
from llmbill.proxy.state import ProxyState
from llmbill.proxy.store import SpendLog, member_id
from llmbill.proxy.upper_bound import UpperBound

MOMENT = datetime(2026, 8, 6, tzinfo=timezone.utc)
USAGE = _core.Usage(prompt_tokens=1000, completion_tokens=100)
COST = _core.PriceTable.from_json(['{"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}']
                                  ).cost("m", USAGE)  # 0.0012


def state_on(tmp: Path, **general: Any) -> ProxyState:
    cfg = load_config_dict({"model_list": [], "general_settings": {"database_url": f"sqlite:///{tmp / 'db.sqlite'}",
                                                                   **general}})
    return ProxyState(cfg)


def call(state: ProxyState, rid: str, key: str, team: str, user: str) -> None:
    row = SpendLog(rid, "chat_completion", "m", key, user, team, "", COST.total, 1000, 100, 0, 0, MOMENT, MOMENT,
                   "success")
    state.spend.record(USAGE, COST, row, model="m")


def test_calls_of_a_members_keys_add_to_its_own_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        state = state_on(tmp_path)
        await state.store.open()
        await state.cache.load()
        call(state, "r1", "k1", "t", "u")
        call(state, "r2", "k2", "t", "u")  # another key of the same member
        call(state, "r3", "k3", "t", "other")
        call(state, "r4", "k4", "", "u")  # a personal key: no member
        assert member_spend(state, "t", "u") == 2 * COST.total  # pending, before any write
        assert await state.spend.flush()
        stored = await state.store.get("member", member_id("t", "u"))
        assert stored is not None and stored["spend"] == 2 * COST.total
        assert (await state.store.get("member", member_id("t", "other")) or {})["spend"] == COST.total
        assert await state.store.count("member") == 2
        await state.store.close()

    asyncio.run(scenario())


def test_the_member_budget_is_checked_against_its_record_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        state = state_on(tmp_path)
        await state.store.open()
        await state.cache.load()
        await state.store.insert("team", {"team_id": "t", "members_with_roles": [
            {"user_id": "u", "role": "user", "max_budget_in_team": Decimal("0.002")}]})
        key = {"token_hash": "k-new", "team_id": "t", "user_id": "u"}
        await state.store.insert("key", key)
        other = state_on(tmp_path)  # another process made the calls, with another key of the member
        await other.store.open()
        await other.cache.load()
        for i in range(2):
            call(other, f"r{i}", "k-old", "t", "u")
        assert await other.spend.flush()
        await other.store.close()
        principal = Principal("internal_user", await state.cache.get_or_fetch("key", "k-new"))
        state.cache.held = state.cache.all = None  # type: ignore[assignment,method-assign]  # no scan
        with pytest.raises(ProxyError) as refused:
            await admit(state, principal, "", UpperBound(Decimal("0.0001")))
        assert refused.value.status == 422 and "Member=u" in refused.value.message
        await state.store.close()

    asyncio.run(scenario())


def test_past_its_window_end_a_members_old_spend_no_longer_counts(tmp_path: Path) -> None:
    """team_member_budget_duration: once the member's window ends, the budget check counts only the
    spend since (guards.window_spend), whenever the flush gets to write the reset, which it then does."""
    async def scenario() -> None:
        state = state_on(tmp_path)
        await state.store.open()
        await state.cache.load()
        state.spend.duration_of = lambda kind, record: limits_of(state, kind, record).budget_duration  # as start()
        await state.store.insert("team", {"team_id": "t", "team_member_budget_duration": "1h", "members_with_roles": [
            {"user_id": "u", "role": "user", "max_budget_in_team": Decimal("0.002")}]})
        await state.store.insert("key", {"token_hash": "k", "team_id": "t", "user_id": "u"})
        for i in range(2):
            call(state, f"r{i}", "k", "t", "u")
        assert await state.spend.flush()
        ident = member_id("t", "u")
        now = datetime.now(timezone.utc)
        principal = Principal("internal_user", await state.cache.get_or_fetch("key", "k"))
        for reset_at, admitted in ((now + timedelta(hours=1), False), (now - timedelta(seconds=1), True)):
            await state.store.update("member", ident, {"budget_reset_at": reset_at})
            state.cache.drop("member", ident)  # read again, as another process's change makes it
            if admitted:
                (await admit(state, principal, "", UpperBound(Decimal("0.0001")))).release()
            else:
                with pytest.raises(ProxyError) as refused:
                    await admit(state, principal, "", UpperBound(Decimal("0.0001")))
                assert refused.value.status == 422 and "Max budget in team: 0.002" in refused.value.message
        state.spend.clock = lambda: now
        assert await state.spend.flush()  # the due reset is written
        stored = await state.store.get("member", ident)
        assert stored is not None and stored["spend"] == 0 and stored["budget_reset_at"] > now
        await state.store.close()

    asyncio.run(scenario())


def test_cache_max_entries_is_honoured_or_refused(tmp_path: Path) -> None:
    assert state_on(tmp_path, cache_max_entries=1234).cache.max_entries == 1234
    assert state_on(tmp_path).cache.max_entries == 50_000
    for bad in (10, "many", True, 10**9):
        with pytest.raises(ConfigError, match="cache_max_entries"):
            state_on(tmp_path, cache_max_entries=bad)
    with pytest.raises(ConfigError, match="cache_sync_interval"):
        state_on(tmp_path, cache_sync_interval=0)
