"""The fake Lago's invoices, served as lago-api serialises them (V1::InvoiceSerializer, read at A =
getlago/lago-api@1b1c24a6; see ../shared/docs/lago-wallets.md for the wallet side):

    GET /api/v1/invoices?external_customer_id=&issuing_date_from=&issuing_date_to=&status=&page=&per_page=
        {"invoices": [...], "meta": {...}}, newest issuing_date first; each with `customer`,
        `metadata`, `applied_taxes` (InvoiceIndex's includes: no billing_periods, no fees)
    GET /api/v1/invoices/:lago_id
        {"invoice": {...}} with `billing_periods`, `subscriptions`, `fees`, `credits` too; 404
        invoice_not_found

Two kinds are made here (never by usage alone):
- `subscription` invoices, when a test invoices a customer (`Wallets.invoice`): fees from the
  subscription's plan over the period, each fee rounded half up (`plan_fees`), then prepaid credits
  applied at finalisation: `prepaid_credit_amount_cents` is the sum of the outbound `invoiced` wallet
  transactions, `total_amount_cents = fees − prepaid` (no taxes, coupons or credit notes in the fake),
  `payment_status` succeeded when nothing is left to pay (calculate_fees_service.rb:64);
- `credit` invoices of paid top-ups, `payment_status` pending until PUT /invoices/:id pays them.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from .lago_billing import CURRENCIES, aggregate, charge_amount
from .lago_store import Json, Reply, iso8601, not_found, parse_iso8601

PER_PAGE = 100


def cents(amount: Decimal, currency: str) -> int:
    """An amount in currency units as integer subunits, rounded half up (Lago's money rounding)."""
    exponent = CURRENCIES[currency]
    return int(amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP).scaleb(exponent))


def plan_fees(plan: Json, metrics: dict[str, Json], events: list[Json]) -> list[Json]:
    """The plan's fees over these events (already the subscription's, in the period): one per charge,
    and the subscription fee when the plan has one. Each: fee_type, metric code, amount_cents, units,
    events_count."""
    currency = plan["amount_currency"]
    fees = []
    for charge in plan["charges"]:
        metric = metrics[charge["billable_metric_code"]]
        matching = [e for e in events if e["code"] == metric["code"]]
        units = aggregate(metric, matching)
        fees.append({"fee_type": "charge", "code": metric["code"], "units": units, "events_count": len(matching),
                     "amount_cents": cents(charge_amount(charge, units), currency)})
    if plan["amount_cents"]:
        fees.append({"fee_type": "subscription", "code": plan["code"], "units": Decimal(1), "events_count": 0,
                     "amount_cents": plan["amount_cents"]})
    return fees


class InvoiceBook:
    def __init__(self, clock: Callable[[], Decimal], customers: Callable[[], dict[str, Json]]) -> None:
        self._clock = clock
        self._customers = customers
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.invoices: dict[str, Json] = {}
            self._sequence = itertools.count(1)

    def add(self, *, customer: str, invoice_type: str, currency: str, fees: list[Json], prepaid_cents: int = 0,
            periods: list[Json] | None = None, lago_id: str | None = None) -> Json:
        """A finalised invoice. `periods`: billing_periods entries (subscription, from, to in seconds)."""
        with self._lock:
            sequence = next(self._sequence)
            fees_cents = sum(int(f["amount_cents"]) for f in fees)
            total = fees_cents - prepaid_cents
            now = self._clock()
            invoice: Json = {
                "lago_id": lago_id or str(uuid.uuid4()), "sequential_id": sequence,
                "number": f"FAKE-{sequence:06d}", "issuing_date": iso8601(now)[:10], "invoice_type": invoice_type,
                "status": "finalized", "currency": currency, "fees": fees, "fees_amount_cents": fees_cents,
                "prepaid_credit_amount_cents": prepaid_cents, "total_amount_cents": total, "total_paid_amount_cents": 0,
                "payment_status": "pending" if total > 0 else "succeeded", "customer": customer,
                "periods": list(periods or []), "created_at": now, "updated_at": now,
            }
            self.invoices[invoice["lago_id"]] = invoice
            return invoice

    def set_payment_status(self, lago_id: str, status: str) -> None:
        with self._lock:
            invoice = self.invoices[lago_id]
            invoice["payment_status"] = status
            if status == "succeeded":
                invoice["total_paid_amount_cents"] = invoice["total_amount_cents"]
            invoice["updated_at"] = self._clock()

    # -- GET ---------------------------------------------------------------------------------------

    def index(self, query: dict[str, str]) -> Reply:
        with self._lock:
            rows = list(self.invoices.values())
            customer = query.get("external_customer_id") or query.get("customer_external_id")
            if customer is not None:
                rows = [i for i in rows if i["customer"] == customer]
            if query.get("status"):
                rows = [i for i in rows if i["status"] == query["status"]]
            # ISO dates compare as text; Lago ignores a date it cannot read.
            since, until = query.get("issuing_date_from"), query.get("issuing_date_to")
            if since and parse_iso8601(since) is not None:
                rows = [i for i in rows if i["issuing_date"] >= since[:10]]
            if until and parse_iso8601(until) is not None:
                rows = [i for i in rows if i["issuing_date"] <= until[:10]]
            rows.sort(key=lambda i: i["lago_id"])
            rows.sort(key=lambda i: (i["issuing_date"], i["created_at"]), reverse=True)
            page, per_page = max(int(query.get("page") or 1), 1), int(query.get("per_page") or PER_PAGE)
            chunk = rows[(page - 1) * per_page: page * per_page]
            pages = -(-len(rows) // per_page)
            meta = {"current_page": page, "next_page": page + 1 if page < pages else None,
                    "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": len(rows)}
            return 200, {"invoices": [self.serialize(i, full=False) for i in chunk], "meta": meta}

    def show(self, lago_id: str) -> Reply:
        with self._lock:
            invoice = self.invoices.get(lago_id)
            return (200, {"invoice": self.serialize(invoice, full=True)}) if invoice else not_found("invoice")

    def serialize(self, invoice: Json, full: bool) -> Json:
        fees_cents, prepaid = invoice["fees_amount_cents"], invoice["prepaid_credit_amount_cents"]
        out: Json = {
            "lago_id": invoice["lago_id"], "billing_entity_code": "default", "sequential_id": invoice["sequential_id"],
            "number": invoice["number"], "purchase_order_number": None, "issuing_date": invoice["issuing_date"],
            "payment_due_date": invoice["issuing_date"], "net_payment_term": 0,
            "invoice_type": invoice["invoice_type"], "status": invoice["status"],
            "payment_status": invoice["payment_status"], "payment_dispute_lost_at": None, "payment_overdue": False,
            "currency": invoice["currency"], "fees_amount_cents": fees_cents, "taxes_amount_cents": 0,
            "progressive_billing_credit_amount_cents": 0, "coupons_amount_cents": 0, "credit_notes_amount_cents": 0,
            "sub_total_excluding_taxes_amount_cents": fees_cents, "sub_total_including_taxes_amount_cents": fees_cents,
            "total_amount_cents": invoice["total_amount_cents"],
            "total_due_amount_cents": invoice["total_amount_cents"] - invoice["total_paid_amount_cents"],
            "total_paid_amount_cents": invoice["total_paid_amount_cents"], "total_offsetted_credit_note_amount_cents": 0,
            "prepaid_credit_amount_cents": prepaid, "prepaid_granted_credit_amount_cents": 0,
            "prepaid_purchased_credit_amount_cents": 0, "file_url": None, "xml_url": None, "web_url": None,
            "version_number": 4, "self_billed": False, "created_at": iso8601(invoice["created_at"]),
            "updated_at": iso8601(invoice["updated_at"]), "voided_at": None,
            "customer": self._customer(invoice["customer"]), "metadata": [], "applied_taxes": [],
        }
        if full:
            out["billing_periods"] = [_billing_period(p) for p in invoice["periods"]]
            out["subscriptions"] = [{"external_id": p["external_subscription_id"], "lago_id": p["lago_subscription_id"],
                                     "plan_code": p["plan_code"]} for p in invoice["periods"]]
            out["fees"] = [_fee(invoice, fee) for fee in invoice["fees"]]
            out["credits"] = []
            out["error_details"] = []
            out["applied_invoice_custom_sections"] = []
        return out

    def _customer(self, external_id: str) -> Json:
        customer = self._customers().get(external_id) or {"external_id": external_id}
        return {k: v for k, v in customer.items()}


def _billing_period(period: Json) -> Json:
    start, end = iso8601(period["from"]), iso8601(period["to"])
    return {"lago_subscription_id": period["lago_subscription_id"],
            "external_subscription_id": period["external_subscription_id"], "lago_plan_id": period["lago_plan_id"],
            "subscription_from_datetime": start, "subscription_to_datetime": end, "charges_from_datetime": start,
            "charges_to_datetime": end, "fixed_charges_from_datetime": start, "fixed_charges_to_datetime": end,
            "invoicing_reason": "subscription_periodic"}


def _fee(invoice: Json, fee: Json) -> Json:
    units: Any = fee.get("units", Decimal(0))
    return {"lago_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{invoice['lago_id']}/{fee.get('code')}")),
            "lago_invoice_id": invoice["lago_id"], "amount_cents": fee["amount_cents"],
            "amount_currency": invoice["currency"], "taxes_amount_cents": 0, "total_amount_cents": fee["amount_cents"],
            "units": format(units.normalize(), "f"), "events_count": fee.get("events_count", 0),
            "item": {"type": fee["fee_type"], "code": fee.get("code"), "name": fee.get("code")}}
