"""GET /global/spend/report: spend per day per team, customer or model — the aggregation itself,
then the route on the real proxy process (history seeded into its database, plus live calls)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmbill.proxy.routes.spend_report import aggregate
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.spend_history import PAST, log, past_logs, seed
from tests.python.test_customers import ask, seed_config
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, lago_env

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_aggregate_sums_exactly_per_day_and_group() -> None:
    rows = [log("a", T0, "m1", "t1", "c1", "0.1"), log("b", T0, "m2", "t1", "c2", "0.2"),
            log("c", T0, "m1", "t2", "c1", "0.000026"), log("d", T0 + timedelta(days=1), "m1", "", "", "1")]
    report = aggregate(rows, "team", "UTC")
    assert [d["group_by_day"] for d in report] == ["2026-03-02", "2026-03-03"]
    t1, t2 = report[0]["teams"]
    assert t1["team_name"] == "t1" and t1["total_spend"] == Decimal("0.3") and t1["requests"] == 2
    assert t1["total_tokens"] == 38
    assert [(m["model"], m["spend"]) for m in t1["metadata"]] == [("m2", Decimal("0.2")), ("m1", Decimal("0.1"))]
    assert t2["total_spend"] == Decimal("0.000026")
    assert (report[1]["teams"][0]["team_name"], report[1]["teams"][0]["team_id"]) == ("Unassigned Team", None)
    named = aggregate(rows, "team", "UTC", {"t1": "Research", "t2": None})[0]["teams"]
    assert [(t["team_name"], t["team_id"]) for t in named] == [("Research", "t1"), ("t2", "t2")]
    by_customer = aggregate(rows, "customer", "UTC")[0]["customers"]
    assert [(c["customer"], c["total_spend"]) for c in by_customer] == [("c2", Decimal("0.2")), ("c1", Decimal("0.100026"))]
    by_model = aggregate(rows, "model", "UTC")
    assert [(m["model"], m["total_spend"]) for m in by_model[0]["models"]] == [("m2", Decimal("0.2")), ("m1", Decimal("0.100026"))]
    assert aggregate([], "model", "UTC") == []


def test_aggregate_days_follow_the_configured_timezone() -> None:
    late = datetime(2026, 3, 2, 23, 30, tzinfo=timezone.utc)
    rows = [log("a", late, "m", "t", "c", "1")]
    assert aggregate(rows, "model", "UTC")[0]["group_by_day"] == "2026-03-02"
    assert aggregate(rows, "model", "Asia/Tokyo")[0]["group_by_day"] == "2026-03-03"
    assert aggregate(rows, "model", "America/New_York")[0]["group_by_day"] == "2026-03-02"


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    workdir = Path(tempfile.mkdtemp(prefix="llmbill-report-"))
    seed(workdir / "llmbill.db", past_logs())
    with FakeOpenAI() as up, FakeLago(api_key="lago-key") as lago:
        config = seed_config(up)
        config["general_settings"]["database_url"] = f"sqlite:///{workdir / 'llmbill.db'}"
        with Proxy(config, lago_env(lago, "end_user_id"), workdir=workdir) as p:
            yield p


def report(proxy: Proxy, query: str, key: str | None = MASTER) -> tuple[int, Any]:
    status, body, _ = proxy.request("GET", f"/global/spend/report?{query}", None, key)
    return status, body


def total(days: list[dict[str, Any]], field: str) -> Decimal:
    return sum((Decimal(str(g["total_spend"])) for d in days for g in d[field]), Decimal(0))


def test_report_route_groups_history_and_live_calls(proxy: Proxy) -> None:
    for user in ("acme", "acme", "newco"):
        assert ask(proxy, user, "mistral")[0] == 200
    past = sum((Decimal(s) for *_, s in PAST), Decimal(0))
    today = datetime.now(timezone.utc).date()
    start = (today - timedelta(days=29)).isoformat()
    for group, field in (("team", "teams"), ("customer", "customers"), ("model", "models")):
        status, days = report(proxy, f"start_date={start}&end_date={today}&group_by={group}")
        assert status == 200, days
        assert total(days, field) == past + 3 * CUSTOM_COST  # the live calls are flushed into the report
        assert [d["group_by_day"] for d in days] == sorted(d["group_by_day"] for d in days)
    status, days = report(proxy, "group_by=customer")  # defaults: the 30 days ending today
    todays = {c["customer"]: c for c in days[-1]["customers"]}
    assert days[-1]["group_by_day"] == today.isoformat()
    assert todays["acme"]["requests"] == 2 and Decimal(str(todays["acme"]["total_spend"])) == 2 * CUSTOM_COST
    assert todays["newco"]["metadata"][0]["model"] == "mistral"
    # One day only: the first seeded day (yesterday) and nothing else.
    yesterday = (today - timedelta(days=1)).isoformat()
    status, days = report(proxy, f"start_date={yesterday}&end_date={yesterday}&group_by=model")
    assert [d["group_by_day"] for d in days] == [yesterday]
    assert total(days, "models") == sum((Decimal(s) for d, *_, s in PAST if d == 1), Decimal(0))


def test_report_route_refuses_bad_input_and_non_admins(proxy: Proxy) -> None:
    status, body = report(proxy, "group_by=region")
    assert status == 400 and body["error"]["param"] == "group_by" and "team, customer, model" in body["error"]["message"]
    status, body = report(proxy, "start_date=03/01/2026")
    assert status == 400 and body["error"]["param"] == "start_date"
    status, body = report(proxy, "start_date=2026-03-05&end_date=2026-03-01")
    assert status == 400 and "after" in body["error"]["message"]
    status, body = report(proxy, "start_date=2020-01-01&end_date=2026-01-01")
    assert status == 400 and "366" in body["error"]["message"]
    assert report(proxy, "group_by=team", None)[0] == 401
    status, made, _ = proxy.request("POST", "/key/generate", {"key_alias": "reader"}, MASTER)
    assert status == 200
    assert report(proxy, "group_by=team", made["key"])[0] == 403
