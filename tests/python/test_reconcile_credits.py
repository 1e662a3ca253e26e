"""Prepaid credits in `llmbill reconcile` (lago/reconcile_credits.py, reconcile_credits_run.py): per
customer with Lago wallets, the credits llmbill's calls consumed in each invoiced period (Σ
billed_amount of the settled calls) against the wallet debits Lago applied for the invoice; a
mismatch is flagged and makes the report unclean (exit 1), as a lost event does.

The comparison alone; then the runner over a real store, a real pipeline and the strict fake Lago
(plan, subscriptions, wallets, invoices); then the proxy and the `llmbill reconcile` command."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import llmbill
from llmbill._core import Pipeline, Usage
from llmbill.calls import call_timestamp_ms
from llmbill.lago.reader import LagoReader
from llmbill.lago.reconcile import ReconcileReport
from llmbill.lago.reconcile_credits import CreditAccount, CreditInvoice, InvoicedPeriod, SettledCall, consume
from llmbill.lago.reconcile_run import reconcile_async
from llmbill.ops.report_text import render_report
from llmbill.proxy.store import SpendBatch, SpendLog, open_store
from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.lago_support import FAST, KEY
from tests.python.lago_wallet_support import wallet
from tests.python.proxy_harness import Proxy
from tests.python.test_fake_lago_invoices import plan, subscribe
from tests.python.test_ops_e2e import chat, cli, reconcile_json
from tests.python.test_proxy_e2e import CUSTOM_COST, MASTER, config, lago_env

T0 = 1_786_000_000_000
CODE = "llm_billed"


# -- the comparison --------------------------------------------------------------------------------


def test_each_call_counts_once_in_the_period_of_its_billed_id() -> None:
    invoice = CreditInvoice("i", "N", "2026-09-01", "USD", [InvoicedPeriod("a", T0, T0 + 1000)])
    calls = [SettledCall("c1", "a", T0, Decimal("0.1")), SettledCall("c1", "a", T0, Decimal("0.1")),  # two codes
             SettledCall("c2", "a", T0 + 999, Decimal("0.0000000000000000001")),
             SettledCall("c3", "a", T0 + 1000, Decimal(5)),  # the next period's
             SettledCall("c4", "b", T0, Decimal(7))]  # another billed id's
    consume(invoice, calls)
    assert (invoice.consumed, invoice.calls) == (Decimal("0.1000000000000000001"), 2)


def test_a_match_needs_debits_rounded_consumption_and_the_invoice_to_agree() -> None:
    def inv(**kw: Any) -> CreditInvoice:
        return CreditInvoice("i", "N", "2026-09-01", kw.pop("currency", "USD"), **kw)

    assert inv(consumed=Decimal("0.605"), debited=Decimal("0.61"), prepaid_cents=61, fees_cents=61).matches  # half up
    assert not inv(consumed=Decimal("0.6049"), debited=Decimal("0.61"), prepaid_cents=61, fees_cents=61).matches
    assert inv(consumed=Decimal("12.5"), debited=Decimal("13"), prepaid_cents=13, fees_cents=13,
               currency="JPY").matches  # no minor unit
    short = inv(consumed=Decimal("0.60"), debited=Decimal("0.25"), prepaid_cents=25, fees_cents=60, due_cents=35)
    assert not short.matches
    assert short.notes() == ["Lago debited 25 cents from the wallets for 60 cents of llmbill's calls (0)",
                             "the wallets ran short: Lago asks the customer for 35 cents beyond the credits"]
    odd = inv(consumed=Decimal("0.60"), debited=Decimal("0.60"), prepaid_cents=70, fees_cents=70, taxes_cents=10)
    assert [n.split(" (")[0] for n in odd.notes()[1:]] == [
        "the invoice's prepaid_credit_amount_cents", "the invoice's fees", "taxes"]


def test_a_credit_mismatch_makes_the_report_unclean_and_is_shown() -> None:
    period = InvoicedPeriod("cust", T0, T0 + 3_600_000)
    good = CreditInvoice("i1", "N-1", "2026-09-01", "USD", [period], Decimal("0.6000598"), 2, Decimal("0.6"), 60, 60)
    report = ReconcileReport(T0, T0 + 1000, ("tokens",), "end_user_id",
                             credits=[CreditAccount("cust", ["cust"], 1, [good])])
    assert report.clean and report.to_json()["credits"]["mismatches"] == 0
    bad = CreditInvoice("i2", "N-2", "2026-10-01", "USD", [period], Decimal("0.6000598"), 2, Decimal("0.25"), 25, 60,
                        due_cents=35)
    report.credits[0].invoices.append(bad)
    assert not report.clean and report.credit_mismatches == [bad]
    shown = report.to_json()["credits"]
    assert shown["mismatches"] == 1 and shown["customers"][0]["debited_cents"] == 85
    assert shown["customers"][0]["invoices"][1]["consumed"] == "0.6000598"
    text = render_report(report)
    assert "N-2" in text and "MISMATCH" in text and "ran short" in text
    assert text.endswith("NOT CLEAN: 0 missing, 0 extra, 0 altered, 1 credit mismatch(es).")


# -- the runner: spend logs in a real store, a real pipeline, the fake Lago ----------------------------


def _call(i: int, customer: str, now: datetime, fee: Decimal) -> tuple[SpendLog, Usage, Decimal]:
    usage = Usage(prompt_tokens=100 + i, completion_tokens=20)
    cost = llmbill.cost("gpt-4o", usage).total
    start = now - timedelta(seconds=30 - i)
    log = SpendLog(request_id=f"call-{i}", call_type="chat_completion", model="gpt-4o", api_key="h", user="",
                   team_id="", end_user=customer, spend=cost + fee, prompt_tokens=usage.prompt_tokens,
                   completion_tokens=usage.completion_tokens, cached_tokens=0, reasoning_tokens=0, start_time=start,
                   end_time=start, status="success", metadata={"response_cost": str(cost)})
    return log, usage, cost


def test_runner_compares_each_customers_invoiced_credits(tmp_path: Path, fake_lago: FakeLago) -> None:
    now = datetime.now(timezone.utc)
    plan(fake_lago, CODE, "billed_amount", "1")  # the README's plan: Σ billed_amount at 1 USD per unit
    customers = {"rich": "1.0", "short": "0.25", "no-wallet": None}
    for customer, granted in customers.items():
        if granted is not None:
            wallet(fake_lago, customer, granted=granted)
        subscribe(fake_lago, customer, CODE)
    settings = llmbill.LagoSettings.from_env({"LAGO_API_BASE": fake_lago.url, "LAGO_API_KEY": KEY,
                                              "LAGO_API_EVENT_CODE": CODE})
    pipeline = Pipeline(spool_dir=tmp_path / "spool", api_base=fake_lago.url, api_key=KEY,
                        **{**FAST, "event_codes": [CODE]})
    logs = []
    for i in range(6):  # 2 calls each, billed cost + 0.3 (a fixed margin)
        log, usage, cost = _call(i, list(customers)[i % 3], now, Decimal("0.3"))
        logs.append(log)
        pipeline.submit(call_id=log.request_id, timestamp_ms=call_timestamp_ms(log.start_time), model=log.model,
                        usage=usage, cost=cost, end_user_id=log.end_user, billed_amount=log.spend)
    assert pipeline.flush(5)
    assert fake_lago.wallets.invoice("rich") == 60 and fake_lago.wallets.invoice("short") == 25

    async def run() -> ReconcileReport:
        store = open_store(f"sqlite:///{tmp_path / 'llmbill.db'}")
        await store.open()
        try:
            await store.apply_spend(SpendBatch(logs=logs))
            return await reconcile_async(store, LagoReader(fake_lago.url, KEY), settings,
                                         call_timestamp_ms(now - timedelta(minutes=5)),
                                         call_timestamp_ms(now + timedelta(seconds=1)))
        finally:
            await store.close()

    report = asyncio.run(run())
    pipeline.close(1)
    assert report.differences == [] and report.unsubscribed == []
    assert [(a.customer, a.wallets, len(a.invoices)) for a in report.credits] == [("rich", 1, 1), ("short", 1, 1)]
    rich, short = (a.invoices[0] for a in report.credits)
    billed = {c: sum((log.spend for log in logs if log.end_user == c), Decimal(0)) for c in customers}
    assert (rich.consumed, rich.calls, rich.debited_cents, rich.prepaid_cents) == (billed["rich"], 2, 60, 60)
    assert rich.matches and rich.consumed_cents == int(billed["rich"].quantize(Decimal("0.01"), ROUND_HALF_UP) * 100)
    assert (short.consumed, short.debited_cents, short.due_cents, short.matches) == (billed["short"], 25, 35, False)
    assert rich.periods[0].billed_id == "rich" and rich.periods[0].start_ms <= call_timestamp_ms(logs[0].start_time)
    assert report.credit_mismatches == [short] and not report.clean


# -- end to end: the proxy, its margins, Lago's wallets and `llmbill reconcile` -------------------------


def test_reconcile_command_flags_credits_lago_did_not_debit(upstream: FakeOpenAI, lago: FakeLago) -> None:
    plan(lago, CODE, "billed_amount", "1")
    for customer, granted in (("rich", "1.0"), ("short", "0.25")):
        wallet(lago, customer, granted=granted)
        subscribe(lago, customer, CODE)
    cfg = config(upstream, None)
    cfg["litellm_settings"]["cost_margin_config"] = {"openai": {"percentage": 0.15, "fixed_amount": 0.3}}
    with Proxy(cfg, {**lago_env(lago, "end_user_id"), "LAGO_API_EVENT_CODE": CODE}) as proxy:
        for customer in ("rich", "short", "rich", "short"):
            assert proxy.request("POST", "/chat/completions", chat(customer), MASTER)[0] == 200
        events = lago.wait_for(4)
        status, logs, _ = proxy.request("GET", "/spend/logs", None, MASTER)
        assert status == 200
        per_call = CUSTOM_COST * Decimal("1.15") + Decimal("0.3")
        assert lago.wallets.invoice("rich") == 60
        rc, report = reconcile_json(proxy)
        assert rc == 0 and report["clean"], report
        (rich,) = [c for c in report["credits"]["customers"] if c["customer"] == "rich"]
        # The ledger check: Σ settled billed_amount == Σ Lago's events' billed_amount == the wallet debit.
        settled = sum((Decimal(str(row["spend"])) for row in logs if row["end_user"] == "rich"), Decimal(0))
        sent = sum((Decimal(e["properties"]["billed_amount"]) for e in events
                    if e["external_subscription_id"] == "rich"), Decimal(0))
        assert settled == sent == Decimal(rich["consumed"]) == 2 * per_call
        assert rich["debited_cents"] == rich["consumed_cents"] == 60
        assert lago.wallets.invoice("short") == 25  # the wallet could not cover the period
        rc, report = reconcile_json(proxy)
        assert rc == 1 and report["counts"] == {"missing": 0, "extra": 0, "altered": 0}
        assert report["credits"]["mismatches"] == 1
        rc, text, _ = cli(proxy, "reconcile", "--from=-10m", "--to=now")
        assert rc == 1 and "MISMATCH" in text and "the wallets ran short" in text
