"""Operating llmbill end to end, with the real proxy process, the `llmbill` command, the fake
OpenAI upstream and the strict fake Lago: reconciliation finds what Lago lost or altered and
--fix restores the lost; a wrong event code is held as a dead letter and replayed once after the
fix; /metrics figures are whole across two workers; the access log is JSON without secrets."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmbill.cli import main
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_support import eventually
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import CUSTOM_COST, GPT4O_COST, MASTER, config, lago_env

WINDOW = ["--from=-10m", "--to=now"]


def cli(proxy: Proxy, *args: str, process: bool = False) -> tuple[int, str, str]:
    """`llmbill ...` as an operator runs it beside the proxy (its config and environment): as a real
    process when `process`, else through the same entry point in this process (faster)."""
    assert proxy.config_path is not None
    argv = [*args, "--config", str(proxy.config_path)]
    if process:
        done = subprocess.run([sys.executable, "-m", "llmbill.cli", *argv], cwd=proxy.dir, env=proxy.env,
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr
    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    os.environ.clear()
    os.environ.update(proxy.env)
    try:
        rc = main(argv, out, err)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rc, out.getvalue(), err.getvalue()


def chat(customer: str, model: str = "custom-model", text: str = "hi") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "user": customer}


def reconcile_json(proxy: Proxy, *extra: str, process: bool = False) -> tuple[int, dict[str, Any]]:
    rc, out, err = cli(proxy, "reconcile", *WINDOW, "--format", "json", *extra, process=process)
    assert rc in (0, 1), err
    return rc, json.loads(out)


def ids_of(report: dict[str, Any], kind: str) -> list[str]:
    return sorted(d["transaction_id"] for a in report["accounts"] for d in a["differences"] if d["kind"] == kind)


def test_reconcile_finds_lost_and_altered_events_and_fix_restores_the_lost(upstream: FakeOpenAI,
                                                                         lago: FakeLago) -> None:
    with Proxy(config(upstream, None), lago_env(lago, "end_user_id")) as proxy:
        calls: dict[str, tuple[str, Decimal]] = {}  # call id -> (customer, cost)
        for i in range(50):
            customer = f"cust-{i % 5}"
            status, body, headers = proxy.request("POST", "/chat/completions",
                                                  chat(customer, "gpt-4o" if i % 4 == 0 else "custom-model"), MASTER)
            assert status == 200, body
            calls[headers["x-litellm-call-id"]] = (customer, Decimal(headers["x-litellm-response-cost"]))
        lago.wait_for(50, timeout=15)
        proxy.request("GET", "/spend/logs?limit=1", None, MASTER)  # the spend logs are written
        ids = sorted(calls)
        lost, altered = ids[:7], ids[7:9]
        assert lago.drop_events(lost) == 7
        lago.alter_event(altered[0], properties={"response_cost": "1.5"})
        # ... and one whose tokens changed and which Lago now dates a day later, outside the window.
        moved = lago.alter_event(altered[1], properties={"input_tokens": 999})["timestamp"]
        lago.alter_event(altered[1], timestamp=str(moved + 86400))
        total = sum(cost for _, cost in calls.values())
        assert total == 13 * GPT4O_COST + 37 * CUSTOM_COST

        rc, report = reconcile_json(proxy)
        assert rc == 1 and report["counts"] == {"missing": 7, "extra": 0, "altered": 2}
        assert ids_of(report, "missing") == lost and ids_of(report, "altered") == altered
        missing = [d for a in report["accounts"] for d in a["differences"] if d["kind"] == "missing"]
        assert {d["transaction_id"]: (d["billed_id"], Decimal(d["proxy"]["cost"])) for d in missing} == {
            i: calls[i] for i in lost}
        changes = {d["transaction_id"]: d["changes"] for a in report["accounts"] for d in a["differences"]
                   if d["kind"] == "altered"}
        assert changes[altered[0]] == {"response_cost": {"proxy": str(calls[altered[0]][1]), "lago": "1.5"}}
        assert changes[altered[1]]["input_tokens"] == {"proxy": "12", "lago": "999"}
        assert set(changes[altered[1]]) == {"input_tokens", "timestamp"}
        proxy_side, lago_side = report["totals"]["proxy"], report["totals"]["lago"]
        assert proxy_side == {"events": 50, "input_tokens": 600, "output_tokens": 350, "cost": str(total),
                             "billed": str(total)}
        lost_cost = sum(calls[i][1] for i in lost)
        assert Decimal(lago_side["cost"]) == total - lost_cost - calls[altered[0]][1] + Decimal("1.5")
        assert (lago_side["events"], lago_side["input_tokens"]) == (43, 600 - 7 * 12 + 999 - 12)
        for account in report["accounts"]:  # per billed id, exact
            mine = [i for i in ids if calls[i][0] == account["billed_id"]]
            assert Decimal(account["proxy"]["cost"]) == sum(calls[i][1] for i in mine)

        rc, fixed = reconcile_json(proxy, "--fix", process=True)
        assert rc == 1 and sorted(fixed["fixed"]) == lost
        assert fixed["counts"] == {"missing": 0, "extra": 0, "altered": 2}
        assert lago.count_by_transaction_id() == {i: 1 for i in ids}

        rc, again = reconcile_json(proxy)
        assert rc == 1 and again["fixed"] == [] and ids_of(again, "altered") == altered
        assert again["counts"] == {"missing": 0, "extra": 0, "altered": 2}
        proxy_side, lago_side = again["totals"]["proxy"], again["totals"]["lago"]
        assert Decimal(lago_side["cost"]) - Decimal(proxy_side["cost"]) == Decimal("1.5") - calls[altered[0]][1]
        assert lago_side["input_tokens"] - proxy_side["input_tokens"] == 999 - 12
        assert (lago_side["events"], lago_side["output_tokens"]) == (proxy_side["events"], proxy_side["output_tokens"])

        status, body, _ = proxy.request("POST", "/billing/reconcile", {"from": "-10m", "to": "now"}, MASTER)
        assert status == 200 and body["counts"] == again["counts"] and body["totals"] == again["totals"]
        status, body, _ = proxy.request("POST", "/billing/reconcile", {"from": "last week", "to": "now"}, MASTER)
        assert status == 400 and body["error"]["param"] == "from" and body["error"]["code"] == "400"
        status, body, _ = proxy.request("POST", "/billing/reconcile", {"from": "-1h", "to": "now"})
        assert status == 401 and body["error"]["type"] == "auth_error"

        rc, out, _ = cli(proxy, "reconcile", *WINDOW)
        assert rc == 1 and "NOT CLEAN: 0 missing, 0 extra, 2 altered." in out and "TOTAL" in out
        rc, _, err = cli(proxy, "reconcile", "--from=tomorrow", "--to=now")
        assert rc == 2 and "--from" in err


def test_wrong_event_code_is_held_as_a_dead_letter_and_replayed_once_after_the_fix(upstream: FakeOpenAI,
                                                                                  lago: FakeLago) -> None:
    wrong = {**lago_env(lago, "end_user_id"), "LAGO_API_EVENT_CODE": "openai_tokenz"}
    with Proxy(config(upstream, None), wrong) as proxy:
        status, body, headers = proxy.request("POST", "/chat/completions", chat("cust-1"), MASTER)
        assert status == 200, body
        call_id = headers["x-litellm-call-id"]
        status, ready, _ = proxy.request("GET", "/health/readiness", None, MASTER)
        assert ready["billing"]["held_codes"] == ["openai_tokenz"]
        assert ready["billing"]["dead_letters"] == 1 and ready["billing"]["oldest_dead_letter_age_s"] >= 0
        rc, out, _ = cli(proxy, "deadletters", "list", "--format", "json")
        (letter,) = json.loads(out)
        assert letter["id"] == call_id and "not a billable metric" in letter["reason"]
        rc, out, _ = cli(proxy, "deadletters", "show", call_id)
        assert rc == 0 and json.loads(out)[0]["event"]["code"] == "openai_tokenz"
        rc, out, _ = cli(proxy, "deadletters", "replay", call_id)  # the cause is not fixed yet
        assert rc == 1 and "still not a billable metric" in out
    assert lago.events == []
    assert "openai_tokenz" in proxy.output and "not a billable metric" in proxy.output

    fixed = lago_env(lago, "end_user_id")
    with Proxy(config(upstream, None), fixed, workdir=proxy.dir) as proxy:
        status, ready, _ = proxy.request("GET", "/health/readiness", None, MASTER)
        assert ready["billing"]["held_codes"] == [] and ready["billing"]["dead_letters"] == 1
        rc, out, err = cli(proxy, "deadletters", "replay", "--all", process=True)
        assert rc == 0, out + err
        assert f"replayed {call_id} as {call_id}" in out
        (event,) = lago.wait_for(1)
        assert (event["transaction_id"], event["code"], event["external_subscription_id"]) == (
            call_id, "openai_tokens", "cust-1")
        assert cli(proxy, "deadletters", "replay", "--all")[1].strip() == "No dead letters."
        time.sleep(0.3)
        assert lago.count_by_transaction_id() == {call_id: 1}  # delivered once
        assert reconcile_json(proxy)[0] == 0

        status, body, headers = proxy.request("POST", "/chat/completions", chat(""), MASTER)  # no one to charge
        assert status == 200
        anonymous = headers["x-litellm-call-id"]
        assert [d["id"] for d in json.loads(cli(proxy, "deadletters", "list", "--format", "json")[1])] == [anonymous]
        rc, _, err = cli(proxy, "deadletters", "drop", anonymous, process=True)
        assert rc == 2 and "--yes" in err
        rc, out, _ = cli(proxy, "deadletters", "drop", anonymous, "--yes")
        assert rc == 0 and "dropped" in out
        audit = (proxy.dir / "spool" / "deadletters-audit.jsonl").read_text().splitlines()
        assert [json.loads(line)["action"] for line in audit] == ["replay", "drop"]
        status, ready, _ = proxy.request("GET", "/health/readiness", None, MASTER)
        assert ready["billing"]["dead_letters"] == 0 and ready["billing"]["oldest_dead_letter_age_s"] is None


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_are_whole_across_two_workers_and_the_access_log_is_json_without_secrets(
        upstream: FakeOpenAI, lago: FakeLago) -> None:
    args = ["--log-level", "info", "--log-format", "json"]
    with Proxy(config(upstream, None), lago_env(lago, "team_id"), workers=2, args=args) as proxy:
        status, key, _ = proxy.request("POST", "/key/generate", {"team_id": "t1", "key_alias": "alias-1"}, MASTER)
        status, broke, _ = proxy.request("POST", "/key/generate", {"team_id": "t1", "max_budget": 0}, MASTER)
        status, body, _ = proxy.request("GET", "/metrics")
        assert status == 401 and body["error"]["type"] == "auth_error"

        def one(i: int) -> tuple[int, str]:
            model = "gpt-4o" if i % 3 == 0 else "custom-model"
            s, b, h = proxy.request("POST", "/chat/completions", chat(f"cust-{i}", model, "SECRET-PROMPT-TEXT"),
                                    key["key"])
            return s, h.get("x-litellm-call-id", "")

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(24)))
        assert all(s == 200 for s, _ in results)
        assert proxy.request("POST", "/chat/completions", chat("c", "no-such-model"), key["key"])[0] == 400
        assert proxy.request("POST", "/chat/completions", chat("c"), broke["key"])[0] == 422  # over budget
        lago.wait_for(24, timeout=15)

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            status, text, headers = proxy.request("GET", "/metrics", None, MASTER)
            assert status == 200 and headers["content-type"].startswith("text/plain")
            return _samples(text)

        route = ("route", "/chat/completions")

        def whole() -> bool:
            # Each worker folds its request figures into the shared files every second
            # (metrics_tally.py), apart from the pipeline's figures: wait for both. A request's figures
            # (count, tokens, spend, durations) are folded together, so its count says the rest is there.
            m = scrape()
            served = sum(m.get(("llmbill_requests_total", (("model", model), route, ("status", "200"))), 0)
                         for model in ("custom-model", "gpt-4o"))
            return m.get(("llmbill_billing_events_total", (("outcome", "delivered"),))) == 24 and served == 24

        eventually(whole, timeout=10, what="24 deliveries and 24 calls counted across both workers")
        m = scrape()
        assert m[("llmbill_requests_total", (("model", "custom-model"), route, ("status", "200")))] == 16
        assert m[("llmbill_requests_total", (("model", "gpt-4o"), route, ("status", "200")))] == 8
        assert m[("llmbill_requests_total", (("model", ""), route, ("status", "400")))] == 1
        assert m[("llmbill_budget_refusals_total", (("kind", "key"),))] == 1
        assert m[("llmbill_tokens_total", (("model", "custom-model"), ("team", "t1"), ("type", "prompt")))] == 16 * 12
        assert m[("llmbill_tokens_total", (("model", "gpt-4o"), ("team", "t1"), ("type", "completion")))] == 8 * 7
        spend = m[("llmbill_spend_usd_total", (("model", "custom-model"), ("team", "t1")))]
        assert spend == pytest.approx(float(16 * CUSTOM_COST), rel=1e-12)
        assert m[("llmbill_request_duration_seconds_count", (("model", "gpt-4o"), route))] == 8
        assert m[("llmbill_upstream_duration_seconds_count", (("model", "custom-model"),))] == 16
        assert m[("llmbill_added_latency_seconds_count", (("model", "custom-model"), route))] == 16
        assert m[("llmbill_billing_events_total", (("outcome", "enqueued"),))] == 24
        assert m[("llmbill_billing_pending_events", ())] == 0
        assert m[("llmbill_billing_dead_letters", ())] == 0
        secret_key = key["key"]
    output = proxy.output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "llmbill.proxy.access" and line["status"] == 200
              and line["path"] == "/chat/completions"]
    assert sorted(line["request_id"] for line in access) == sorted(cid for _, cid in results)
    assert len({line["pid"] for line in access}) == 2  # both workers served, and the figures above are whole
    sample = next(line for line in access if line["model"] == "custom-model")
    assert (sample["key_alias"], sample["team"], sample["prompt_tokens"], sample["completion_tokens"],
            sample["cost"]) == ("alias-1", "t1", 12, 7, str(CUSTOM_COST))
    assert sample["customer"].startswith("cust-") and sample["duration_ms"] >= sample["upstream_ms"] > 0
    assert sample["overhead_ms"] >= 0 and sample["level"] == "info"
    for secret in (secret_key, MASTER, "upstream-key", "SECRET-PROMPT-TEXT", "lago-key"):
        assert secret not in output
