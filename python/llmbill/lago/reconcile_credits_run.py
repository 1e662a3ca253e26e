"""Prepaid credits in the reconciliation, the I/O: Lago's side read through LagoReader (one GET at a
time, synchronous: run it in a thread), llmbill's from the spend logs through `settled`; the
comparison is reconcile_credits.py's.

Per billed id of the window, its subscription (GET /subscriptions/{id}) names the Lago customer; per
customer with wallets (GET /wallets?external_customer_id=, terminated ones included: their past
debits count), the debits are the wallets' outbound `invoiced` transactions (GET
/wallets/{id}/wallet_transactions), grouped by `lago_invoice_id`, and the invoices are the
customer's finalised `subscription` invoices issued since the window's first day (GET /invoices)
whose billing periods (GET /invoices/{id}: `billing_periods[].charges_from/to_datetime`) meet the
window. A period's calls are read from the spend logs over the whole period, even beyond the window.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from .reader import LagoReader, LagoReadError, decimal_or_none, iso_to_ms, ms_to_iso
from .reconcile_credits import CreditAccount, CreditInvoice, InvoicedPeriod, SettledCall, consume

Json = dict[str, Any]
#: Lago's charges_to_datetime is the period's last second, shown to the second: the period ends 1 s later.
_LAST_SECOND_MS = 1000


def subscriptions_of(reader: LagoReader, billed_ids: Iterable[str]) -> dict[str, Json | None]:
    """Each billed id's Lago subscription (the one whose external_id it is), None when Lago has none."""
    out: dict[str, Json | None] = {}
    for ident in billed_ids:
        path = "/subscriptions/" + urllib.parse.quote(ident, safe="")
        status, data = reader.get(path)
        if status == 200 and isinstance(data, dict) and isinstance(data.get("subscription"), dict):
            out[ident] = data["subscription"]
        elif status == 404 and isinstance(data, dict) and data.get("code") == "subscription_not_found":
            out[ident] = None
        else:
            raise LagoReadError(f"Lago answered HTTP {status} to GET {path}: {str(data)[:200]}")
    return out


def _debits(reader: LagoReader, wallets: list[Json]) -> dict[str, Decimal]:
    """Σ amount (currency units) of the settled outbound `invoiced` transactions, per invoice id."""
    debits: dict[str, Decimal] = {}
    for wallet in wallets:
        rows = reader.listing(f"/wallets/{urllib.parse.quote(str(wallet.get('lago_id')), safe='')}/wallet_transactions",
                              "wallet_transactions", {"transaction_type": "outbound", "transaction_status": "invoiced"},
                              absent="wallet_not_found")
        for tx in rows:  # the filters again: a Lago that ignored them must not be believed
            invoice, amount = tx.get("lago_invoice_id"), decimal_or_none(tx.get("amount"))
            if (tx.get("transaction_type"), tx.get("transaction_status"), tx.get("status")) != (
                    "outbound", "invoiced", "settled") or not isinstance(invoice, str) or amount is None:
                continue
            debits[invoice] = debits.get(invoice, Decimal(0)) + amount
    return debits


def _cents(invoice: Json, name: str) -> int:
    value = invoice.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _invoice(reader: LagoReader, lago_id: str, debited: Decimal) -> CreditInvoice:
    path = "/invoices/" + urllib.parse.quote(lago_id, safe="")
    status, data = reader.get(path)
    invoice = data.get("invoice") if status == 200 and isinstance(data, dict) else None
    if not isinstance(invoice, dict):
        raise LagoReadError(f"Lago answered HTTP {status} to GET {path}: {str(data)[:200]}")
    periods = [InvoicedPeriod(str(p.get("external_subscription_id") or ""), iso_to_ms(p.get("charges_from_datetime")),
                              iso_to_ms(p.get("charges_to_datetime")) + _LAST_SECOND_MS)
               for p in invoice.get("billing_periods") or [] if isinstance(p, dict)]
    return CreditInvoice(lago_id, str(invoice.get("number") or ""), str(invoice.get("issuing_date") or ""),
                         str(invoice.get("currency") or "USD"), periods, debited=debited,
                         prepaid_cents=_cents(invoice, "prepaid_credit_amount_cents"),
                         fees_cents=_cents(invoice, "fees_amount_cents"), taxes_cents=_cents(invoice, "taxes_amount_cents"),
                         due_cents=_cents(invoice, "total_due_amount_cents"))


def lago_side(reader: LagoReader, customer: str, billed_ids: list[str], start_ms: int,
              end_ms: int) -> tuple[CreditAccount | None, list[str]]:
    """The customer's credit account as Lago holds it (consumption not yet filled in), None when it
    has no wallet; and warnings."""
    wallets = reader.listing("/wallets", "wallets", {"external_customer_id": customer}, absent="customer_not_found")
    if not wallets:
        return None, []
    debits = _debits(reader, wallets)
    listed = reader.listing("/invoices", "invoices", {"external_customer_id": customer,
                                                      "issuing_date_from": ms_to_iso(start_ms)[:10]})
    account = CreditAccount(customer, sorted(billed_ids), len(wallets))
    warnings = []
    for row in listed:
        kind, lago_id = row.get("invoice_type"), row.get("lago_id")
        if row.get("status") != "finalized" or not isinstance(lago_id, str):
            continue  # a draft has no credits applied yet; a voided one none at all
        if kind == "progressive_billing":
            warnings.append(f"customer {customer}: progressive billing invoice {row.get('number')} is not compared "
                            "(it bills part of a period the period's invoice bills again)")
            continue
        if kind != "subscription":
            continue  # credit purchases, one-off and add-on invoices are not usage
        invoice = _invoice(reader, lago_id, debits.get(lago_id, Decimal(0)))
        if any(p.start_ms < end_ms and p.end_ms > start_ms for p in invoice.periods):
            account.invoices.append(invoice)
    account.invoices.sort(key=lambda i: (i.issuing_date, i.number))
    return account, warnings


async def credit_accounts(reader: LagoReader, subscriptions: dict[str, Json | None], start_ms: int, end_ms: int,
                          settled: Callable[[int, int], Awaitable[list[SettledCall]]]
                          ) -> tuple[list[CreditAccount], list[str]]:
    """Every customer with wallets among the billed ids' subscriptions, each invoice's consumption
    filled in from `settled(start_ms, end_ms)` (the spend logs' calls over each distinct period)."""
    customers: dict[str, list[str]] = {}
    for billed_id, subscription in subscriptions.items():
        customer = (subscription or {}).get("external_customer_id")
        if isinstance(customer, str) and customer:
            customers.setdefault(customer, []).append(billed_id)
    accounts: list[CreditAccount] = []
    warnings: list[str] = []
    for customer in sorted(customers):
        account, more = await asyncio.to_thread(lago_side, reader, customer, customers[customer], start_ms, end_ms)
        warnings += more
        if account is not None:
            accounts.append(account)
    calls_by_range: dict[tuple[int, int], list[SettledCall]] = {}
    for account in accounts:
        for invoice in account.invoices:
            calls: list[SettledCall] = []
            for period in invoice.periods:
                key = (period.start_ms, period.end_ms)
                if key not in calls_by_range:
                    calls_by_range[key] = await settled(*key)
                calls += calls_by_range[key]
            consume(invoice, calls)
    return accounts, warnings
