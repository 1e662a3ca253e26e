"""A budget window follows its duration on every update: removing a customer's or a tier's duration
clears `budget_reset_at` (a stale one, once passed, made the check count only unwritten spend — the
budget was off), changing it restarts the window; keys, users and teams likewise. The check itself
ignores a reset time that no duration governs. In-process: the routes on a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmbill.proxy.auth import Principal
from llmbill.proxy.config import load_config_dict
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.guards import window_spend
from llmbill.proxy.http import Request, Response
from llmbill.proxy.routes import budgets, customers, keys, teams, users
from llmbill.proxy.state import ProxyState
from llmbill.proxy.store import SpendBatch, member_id

ADMIN = Principal("proxy_admin")
LATER = datetime.now(timezone.utc) + timedelta(days=400)  # past any window started today
Route = Callable[[ProxyState, Request, Principal], Awaitable[Response]]


class Harness:
    def __init__(self, tmp: Path, **litellm: Any) -> None:
        cfg = load_config_dict({"model_list": [], "litellm_settings": litellm,
                                "general_settings": {"database_url": f"sqlite:///{tmp / 'db.sqlite'}"}})
        self.state = ProxyState(cfg)
        self.loop = asyncio.new_event_loop()
        self.run(self.state.store.open())
        self.run(self.state.cache.load())

    def run(self, aw: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(aw)

    def post(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}

        request = Request({"method": "POST", "path": "/", "headers": [], "query_string": b""}, receive, 1 << 20)
        reply = self.run(route(self.state, request, ADMIN))
        assert reply.status == 200, reply.body
        return dict(orjson.loads(reply.body))

    def spend(self, kind: str, ident: str, amount: str) -> None:
        batch = SpendBatch()
        batch.add(kind, ident, Decimal(amount))
        self.run(self.state.store.apply_spend(batch))
        self.run(self.state.cache.load())

    def record(self, kind: str, ident: str) -> dict[str, Any]:
        found = self.state.cache.get(kind, ident)
        assert found is not None
        return found

    def later_spend(self, kind: str, ident: str) -> Decimal:
        """The spend a budget check sees a year from now."""
        return window_spend(self.state, kind, ident, self.record(kind, ident), now=LATER)

    def close(self) -> None:
        self.run(self.state.store.close())
        self.loop.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_end_user_budget_id="default-tier")
    yield harness
    harness.close()


def test_removing_a_customer_duration_clears_its_window(h: Harness) -> None:
    h.post(customers.new, {"user_id": "c", "max_budget": "1", "budget_duration": "30d"})
    assert h.record("customer", "c")["budget_reset_at"] is not None
    h.spend("customer", "c", "2")
    h.post(customers.update, {"user_id": "c", "budget_duration": None})
    assert h.record("customer", "c").get("budget_reset_at") is None
    assert h.later_spend("customer", "c") == Decimal(2)  # still over its budget, a year on


def test_a_customer_leaving_a_windowed_tier_clears_its_window(h: Harness) -> None:
    h.post(budgets.new, {"budget_id": "monthly", "max_budget": "1", "budget_duration": "30d"})
    h.post(budgets.new, {"budget_id": "forever", "max_budget": "1"})
    h.post(customers.new, {"user_id": "c", "budget_id": "monthly"})
    assert h.record("customer", "c")["budget_reset_at"] is not None
    h.spend("customer", "c", "2")
    h.post(customers.update, {"user_id": "c", "budget_id": "forever"})
    assert h.record("customer", "c").get("budget_reset_at") is None
    assert h.later_spend("customer", "c") == Decimal(2)


def test_removing_or_changing_a_tier_duration_moves_its_customers_windows(h: Harness) -> None:
    h.post(budgets.new, {"budget_id": "t", "max_budget": "1", "budget_duration": "30d"})
    h.post(customers.new, {"user_id": "on-tier", "budget_id": "t"})
    h.post(customers.new, {"user_id": "own-window", "budget_id": "t", "budget_duration": "7d"})
    own = h.record("customer", "own-window")["budget_reset_at"]
    h.spend("customer", "on-tier", "2")
    h.post(budgets.update, {"budget_id": "t", "budget_duration": "1d"})
    assert h.record("customer", "on-tier")["budget_reset_at"] <= datetime.now(timezone.utc) + timedelta(days=1)
    h.post(budgets.update, {"budget_id": "t", "budget_duration": None})
    assert h.record("customer", "on-tier").get("budget_reset_at") is None
    assert h.later_spend("customer", "on-tier") == Decimal(2)
    assert h.record("customer", "own-window")["budget_reset_at"] == own  # its own duration governs


def test_the_default_tier_moves_the_windows_of_customers_without_limits(h: Harness) -> None:
    h.post(budgets.new, {"budget_id": "default-tier", "max_budget": "1", "budget_duration": "30d"})
    h.post(customers.new, {"user_id": "plain"})
    assert h.record("customer", "plain")["budget_reset_at"] is not None
    h.post(budgets.update, {"budget_id": "default-tier", "budget_duration": None})
    assert h.record("customer", "plain").get("budget_reset_at") is None


@pytest.mark.parametrize("kind,make,update,ident_field", [
    ("key", keys.generate, keys.update, "key"),
    ("user", users.user_new, users.user_update, "user_id"),
    ("team", teams.team_new, teams.team_update, "team_id"),
])
def test_keys_users_and_teams_clear_their_window_with_their_duration(h: Harness, kind: str, make: Route,
                                                                     update: Route, ident_field: str) -> None:
    made = h.post(make, {"max_budget": "1", "budget_duration": "30d", **({"user_id": "u"} if kind == "user" else {}),
                         **({"team_id": "t"} if kind == "team" else {})})
    ident = {"key": made.get("token"), "user": "u", "team": "t"}[kind]
    assert h.record(kind, ident)["budget_reset_at"] is not None
    h.spend(kind, ident, "2")
    h.post(update, {ident_field: made["key"] if kind == "key" else ident, "budget_duration": None})
    assert h.record(kind, ident).get("budget_reset_at") is None
    assert h.later_spend(kind, ident) == Decimal(2)


def test_a_team_member_budget_duration_moves_its_members_windows(h: Harness) -> None:
    """Sent on /team/update, each member's window restarts now (its spend record's reset time);
    removed, it is cleared and the member's spend counts whole again. A bad duration is a 400."""
    h.post(teams.team_new, {"team_id": "t", "team_member_budget": "1", "members_with_roles": [
        {"role": "user", "user_id": "u"}, {"role": "user", "user_id": "v"}]})
    u, v = member_id("t", "u"), member_id("t", "v")
    h.spend("member", u, "2")  # u's first calls created its record; v has none yet
    made = h.post(teams.team_update, {"team_id": "t", "team_member_budget_duration": "1d"})
    assert made["data"]["team_member_budget_duration"] == "1d"
    reset_at = h.record("member", u)["budget_reset_at"]
    assert datetime.now(timezone.utc) < reset_at <= datetime.now(timezone.utc) + timedelta(days=1)
    assert h.run(h.state.store.get("member", v)) is None
    assert h.later_spend("member", u) == 0  # a year on, that window has ended
    h.post(teams.team_update, {"team_id": "t", "team_member_budget_duration": None})
    assert h.record("member", u).get("budget_reset_at") is None
    assert h.later_spend("member", u) == Decimal(2)
    with pytest.raises(ProxyError) as err:
        h.post(teams.team_update, {"team_id": "t", "team_member_budget_duration": "soon"})
    assert err.value.status == 400 and err.value.param == "team_member_budget_duration"


def test_a_reset_time_no_duration_governs_starts_no_window(h: Harness) -> None:
    """Records written before updates cleared it: the check counts all their spend."""
    h.post(customers.new, {"user_id": "legacy", "max_budget": "1"})
    h.run(h.state.store.update("customer", "legacy", {"budget_reset_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}))
    h.spend("customer", "legacy", "2")
    assert h.later_spend("customer", "legacy") == Decimal(2)
    windowed = {"user_id": "w", "budget_duration": "1d", "budget_reset_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}
    h.state.cache.put("customer", {**windowed, "spend": Decimal(2)})
    assert window_spend(h.state, "customer", "w", h.record("customer", "w"), now=LATER) == 0  # a real window


def test_unknown_ids_still_404(h: Harness) -> None:
    with pytest.raises(ProxyError) as err:
        h.post(budgets.update, {"budget_id": "nope", "budget_duration": None})
    assert err.value.status == 404
