"""The fake Lago's prepaid wallets, held to the contract in ../shared/docs/lago-wallets.md:

- `balance_cents` / `credits_balance` change only when credits settle (granted: inside POST
  /wallet_transactions; paid: once PUT /invoices/:id says payment_status succeeded), when an invoice
  applies credits (`invoice()`: only when a test says so), or on a void. Usage never lowers them.
- `ongoing_balance_cents` and friends are recomputed only by `refresh_ongoing()` (Lago without a
  premium licence never refreshes them after events): tests prove llmbill never reads them.
- several wallets per customer (at most 6 active), `priority` 1..50 (1 pays first), `applies_to`.
- every balance change sends `wallet.updated` (and transactions `wallet_transaction.created/updated`;
  a subscription created active, `subscription.started`) to `webhook_url`, signed by `webhook_algorithm`: "hmac" (base64 HMAC-SHA256 of the body with
  `hmac_key`) or "jwt" (RS256, claims data = body and iss = `issuer`; public key at
  GET /webhooks/json_public_key).

Invoices (`invoice()`, lago_invoices.py): with a subscription whose external_id is the customer id,
its plan prices the period's events as Lago does, and the wallets pay the fee buckets in priority order
(allocate_prepaid_credits_by_wallets_service.rb: wallet by wallet, largest bucket first), each debit an
outbound `invoiced` wallet transaction, listed by GET /wallets/:id/wallet_transactions. Simplification
(stated), without a subscription: the amount is Σ `response_cost` of the customer's events not yet
invoiced, rounded half up to the cent, as one bucket of `metric`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
import uuid
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable

from .lago_billing import CURRENCIES, Billing, billing_period
from .lago_invoices import InvoiceBook, plan_fees
from .lago_rsa import shared_key
from .lago_store import EventStore, Json, Reply, iso8601, validation_failed

MAX_ACTIVE = 6
_FIVE_DP = Decimal("0.00001")


def _not_found(what: str) -> Reply:
    return 404, {"status": 404, "error": "Not Found", "code": f"{what}_not_found"}


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def ruby_decimal(value: Decimal) -> str:
    """BigDecimal#to_s as Rails serialises it: "1.0", "0.2", "0.00001" (never an exponent)."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


class Wallets:
    def __init__(self, store: EventStore, customers: Callable[[], dict[str, Json]],
                 clock: Callable[[], Decimal], billing: Billing | None = None) -> None:
        self._store = store
        self._customers = customers
        self._clock = clock
        self._billing = billing  # plans and subscriptions, to price an invoice as Lago does
        self.book = InvoiceBook(clock, customers)  # GET /invoices, /invoices/:id
        self._lock = threading.RLock()
        self.webhook_url: str | None = None
        self.webhook_algorithm = "jwt"
        self.hmac_key = "fake-hmac-key"
        self.issuer = "http://fake-lago"
        self.webhooks_sent: list[Json] = []  # {"webhook_type", "status"} per delivery
        self._deliveries: list[threading.Thread] = []
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.wallets: dict[str, Json] = {}  # lago_id → wallet (Decimals inside)
            self.transactions: dict[str, Json] = {}
            self.invoices: dict[str, str] = {}  # credit invoice id → transaction id
            self.invoiced: set[str] = set()  # event transaction ids already invoiced
        self.book.reset()

    # -- money ---------------------------------------------------------------------------------------

    @staticmethod
    def _cents(wallet: Json, credits: Decimal) -> int:
        exp = CURRENCIES[wallet["currency"]]
        amount = (credits * wallet["rate_amount"]).quantize(Decimal(1).scaleb(-exp), rounding=ROUND_HALF_UP)
        return int(amount.scaleb(exp))

    def serialize(self, wallet: Json, limitations: bool = True) -> Json:
        exp = CURRENCIES[wallet["currency"]]
        out = {
            "lago_id": wallet["lago_id"], "lago_customer_id": wallet["lago_customer_id"],
            "external_customer_id": wallet["external_customer_id"], "status": wallet["status"],
            "currency": wallet["currency"], "name": wallet["name"], "code": wallet["code"],
            "rate_amount": ruby_decimal(wallet["rate_amount"]), "credits_balance": ruby_decimal(wallet["credits_balance"]),
            "balance_cents": wallet["balance_cents"], "consumed_credits": ruby_decimal(wallet["consumed_credits"]),
            "ongoing_balance_cents": wallet["ongoing_balance_cents"],
            "ongoing_usage_balance_cents": wallet["ongoing_usage_balance_cents"],
            # Lago derives these through Float fdiv: so does the fake
            "credits_ongoing_balance": str(wallet["ongoing_balance_cents"] / 10**exp / float(wallet["rate_amount"])),
            "credits_ongoing_usage_balance": str(
                wallet["ongoing_usage_balance_cents"] / 10**exp / float(wallet["rate_amount"])),
            "priority": wallet["priority"], "created_at": iso8601(wallet["created_at"]),
            "terminated_at": wallet.get("terminated_at"), "invoice_requires_successful_payment": False,
            "payment_method": {"payment_method_id": None, "payment_method_type": "provider"},
            "recurring_transaction_rules": [],
        }
        if limitations:
            out["applies_to"] = {"fee_types": list(wallet["fee_types"]),
                                 "billable_metric_codes": list(wallet["metric_codes"])}
        return out

    # -- wallets -------------------------------------------------------------------------------------

    def create(self, body: Any) -> Reply:
        params = body.get("wallet") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            return 400, {"status": 400, "error": "BadRequest: param is missing or the value is empty: wallet"}
        with self._lock:
            customer = self._customers().get(str(params.get("external_customer_id") or ""))
            if customer is None:
                return validation_failed({"customer": ["customer_not_found"]})
            rate = _decimal(params.get("rate_amount"))
            if rate is None or rate <= 0:
                return validation_failed({"rate_amount": ["value_is_mandatory"]})
            currency = params.get("currency") or customer.get("currency")
            if currency not in CURRENCIES:
                return validation_failed({"currency": ["value_is_invalid"]})
            active = [w for w in self.wallets.values()
                      if w["external_customer_id"] == customer["external_id"] and w["status"] == "active"]
            if len(active) >= MAX_ACTIVE:
                return validation_failed({"customer": ["wallet_limit_reached"]})
            code = params.get("code") or params.get("name") or "default"
            if any(w["code"] == code for w in active):
                return validation_failed({"code": ["value_already_exist"]})
            priority = params.get("priority", 50)
            if not isinstance(priority, int) or not 1 <= priority <= 50:
                return validation_failed({"priority": ["value_is_invalid"]})
            applies = params.get("applies_to") or {}
            wallet = {
                "lago_id": str(uuid.uuid4()), "lago_customer_id": customer["lago_id"],
                "external_customer_id": customer["external_id"], "status": "active", "currency": currency,
                "name": params.get("name"), "code": code, "rate_amount": rate, "credits_balance": Decimal(0),
                "balance_cents": 0, "consumed_credits": Decimal(0), "ongoing_balance_cents": 0,
                "ongoing_usage_balance_cents": 0, "priority": priority, "created_at": self._clock(),
                "fee_types": tuple(applies.get("fee_types") or ()),
                "metric_codes": tuple(applies.get("billable_metric_codes") or ()),
            }
            self.wallets[wallet["lago_id"]] = wallet
            reply = self.serialize(wallet)  # Lago answers before the initial credits' job runs: balance 0
        self._send("wallet.created", "wallet", self.serialize(wallet, limitations=False))
        initial = {k: params[k] for k in ("paid_credits", "granted_credits") if params.get(k) is not None}
        if initial:
            self.transact({"wallet_transaction": {"wallet_id": wallet["lago_id"], **initial}})
        return 200, {"wallet": reply}

    def index(self, query: dict[str, str]) -> Reply:
        with self._lock:
            external = query.get("external_customer_id")
            if external is not None and external not in self._customers():
                return _not_found("customer")
            rows = [w for w in self.wallets.values() if external is None or w["external_customer_id"] == external]
            page, per_page = int(query.get("page") or 1), int(query.get("per_page") or 100)
            chunk = rows[(page - 1) * per_page: page * per_page]
            pages = max(1, -(-len(rows) // per_page))
            meta = {"current_page": page, "next_page": page + 1 if page < pages else None,
                    "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": len(rows)}
            return 200, {"wallets": [self.serialize(w) for w in chunk], "meta": meta}

    def show(self, lago_id: str) -> Reply:
        with self._lock:
            wallet = self.wallets.get(lago_id)
            return (200, {"wallet": self.serialize(wallet)}) if wallet else _not_found("wallet")

    def terminate(self, lago_id: str) -> Reply:
        with self._lock:
            wallet = self.wallets.get(lago_id)
            if wallet is None:
                return _not_found("wallet")
            wallet["status"] = "terminated"
            wallet["terminated_at"] = iso8601(self._clock())
            shown = self.serialize(wallet)
        self._send("wallet.terminated", "wallet", self.serialize(wallet, limitations=False))
        return 200, {"wallet": shown}

    # -- transactions --------------------------------------------------------------------------------

    def transact(self, body: Any) -> Reply:
        params = body.get("wallet_transaction") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            return 400, {"status": 400,
                         "error": "BadRequest: param is missing or the value is empty: wallet_transaction"}
        with self._lock:
            wallet = self.wallets.get(str(params.get("wallet_id") or ""))
            if wallet is None:
                return validation_failed({"wallet_id": ["wallet_not_found"]})  # 422 here, not 404
            if wallet["status"] != "active":
                return validation_failed({"wallet_id": ["wallet_is_terminated"]})
            made: list[Json] = []
            for kind in ("paid_credits", "granted_credits", "voided_credits"):
                raw = params.get(kind)
                if raw is None:
                    continue
                credits = _decimal(raw)
                if credits is None or credits < 0:
                    code = "invalid_paid_credits" if kind == "paid_credits" else "invalid_amount"
                    return validation_failed({kind: [code]})
                credits = credits.quantize(_FIVE_DP, rounding=ROUND_DOWN)
                if credits == 0:
                    continue
                if self._cents(wallet, credits) == 0:
                    return validation_failed({kind: ["amount_rounds_to_zero"]})
                if kind == "voided_credits" and credits > wallet["credits_balance"]:
                    return validation_failed({"voided_credits": ["insufficient_credits"]})
                made.append(self._transaction(wallet, kind, credits))
        for tx in made:
            self._send("wallet_transaction.created", "wallet_transaction", self._tx_payload(tx))
            if tx["status"] == "settled":
                self._send("wallet.updated", "wallet", self.serialize(wallet, limitations=False))
        return 200, {"wallet_transactions": [self._tx_json(tx) for tx in made]}

    def _transaction(self, wallet: Json, kind: str, credits: Decimal) -> Json:
        exp = CURRENCIES[wallet["currency"]]
        tx = {"lago_id": str(uuid.uuid4()), "lago_wallet_id": wallet["lago_id"], "credit_amount": credits,
              "amount": Decimal(self._cents(wallet, credits)).scaleb(-exp), "lago_invoice_id": None,
              "transaction_type": "outbound" if kind == "voided_credits" else "inbound",
              "transaction_status": {"paid_credits": "purchased", "granted_credits": "granted",
                                     "voided_credits": "voided"}[kind],
              "status": "pending" if kind == "paid_credits" else "settled", "created_at": self._clock()}
        self.transactions[tx["lago_id"]] = tx
        if kind == "paid_credits":  # a credit invoice: credits land once it is paid
            invoice = str(uuid.uuid4())
            tx["lago_invoice_id"] = invoice
            self.invoices[invoice] = tx["lago_id"]
            self.book.add(customer=wallet["external_customer_id"], invoice_type="credit", currency=wallet["currency"],
                          fees=[{"fee_type": "credit", "code": wallet["code"], "units": credits,
                                 "amount_cents": self._cents(wallet, credits)}], lago_id=invoice)
        elif kind == "granted_credits":
            self._increase(wallet, credits)
        else:
            self._decrease(wallet, credits)
        return tx

    def pay_invoice(self, invoice_id: str, body: Any) -> Reply:
        params = body.get("invoice") if isinstance(body, dict) else None
        with self._lock:
            tx_id = self.invoices.get(invoice_id)
            if tx_id is None:
                return _not_found("invoice")
            tx = self.transactions[tx_id]
            status = (params or {}).get("payment_status")
            if status in ("succeeded", "failed") and tx["status"] == "pending":
                self.book.set_payment_status(invoice_id, status)
            if status == "succeeded" and tx["status"] == "pending":
                tx["status"] = "settled"
                wallet = self.wallets[tx["lago_wallet_id"]]
                self._increase(wallet, tx["credit_amount"])
                settled = True
            elif status == "failed" and tx["status"] == "pending":
                tx["status"], settled, wallet = "failed", False, self.wallets[tx["lago_wallet_id"]]
            else:
                return 200, {"invoice": {"lago_id": invoice_id, "payment_status": status}}
        self._send("wallet_transaction.updated", "wallet_transaction", self._tx_payload(tx))
        if settled:
            self._send("wallet.updated", "wallet", self.serialize(wallet, limitations=False))
        return 200, {"invoice": {"lago_id": invoice_id, "payment_status": status}}

    def _increase(self, wallet: Json, credits: Decimal) -> None:
        wallet["credits_balance"] += credits
        wallet["balance_cents"] += self._cents(wallet, credits)

    def _decrease(self, wallet: Json, credits: Decimal) -> None:
        wallet["credits_balance"] -= credits
        wallet["balance_cents"] -= self._cents(wallet, credits)
        wallet["consumed_credits"] += credits

    def _tx_json(self, tx: Json) -> Json:
        """V1::WalletTransactionSerializer's shape (lago-wallets.md §2)."""
        settled = tx["status"] == "settled"
        return {"lago_id": tx["lago_id"], "lago_wallet_id": tx["lago_wallet_id"],
                "lago_invoice_id": tx["lago_invoice_id"], "lago_credit_note_id": None, "lago_voided_invoice_id": None,
                "billing_entity_code": "default", "status": tx["status"], "source": "manual",
                "transaction_status": tx["transaction_status"], "transaction_type": tx["transaction_type"],
                "amount": ruby_decimal(tx["amount"]), "credit_amount": ruby_decimal(tx["credit_amount"]),
                "remaining_amount_cents": None, "remaining_credit_amount": None, "priority": 50,
                "purchase_order_number": None, "settled_at": iso8601(tx["created_at"]) if settled else None,
                "failed_at": None, "created_at": iso8601(tx["created_at"]),
                "invoice_requires_successful_payment": False, "metadata": [], "name": None,
                "payment_method": {"payment_method_id": None, "payment_method_type": "provider"}}

    def transactions_index(self, wallet_id: str, query: dict[str, str]) -> Reply:
        """GET /wallets/:id/wallet_transactions: the filters WalletTransactionsQuery takes (an unknown
        value is ignored, as there), oldest first, paged."""
        filters = {"status": ("pending", "settled", "failed"), "transaction_type": ("inbound", "outbound"),
                   "transaction_status": ("purchased", "granted", "voided", "invoiced")}
        with self._lock:
            if wallet_id not in self.wallets:
                return _not_found("wallet")
            rows = [tx for tx in self.transactions.values() if tx["lago_wallet_id"] == wallet_id
                    and all(query.get(k) not in allowed or tx[k] == query[k] for k, allowed in filters.items())]
            page, per_page = max(int(query.get("page") or 1), 1), int(query.get("per_page") or 100)
            chunk = rows[(page - 1) * per_page: page * per_page]
            pages = -(-len(rows) // per_page)
            meta = {"current_page": page, "next_page": page + 1 if page < pages else None,
                    "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": len(rows)}
            return 200, {"wallet_transactions": [self._tx_json(tx) for tx in chunk], "meta": meta}

    def _tx_payload(self, tx: Json) -> Json:
        return {**self._tx_json(tx), "wallet": self.serialize(self.wallets[tx["lago_wallet_id"]], limitations=False)}

    # -- what only tests trigger ---------------------------------------------------------------------

    def _uninvoiced(self, customer: str) -> tuple[Decimal, list[str]]:
        with self._store.changed:
            rows = [e for e in self._store.events if e.get("external_subscription_id") == customer
                    and e["transaction_id"] not in self.invoiced]
        costs = (_decimal((e.get("properties") or {}).get("response_cost")) or Decimal(0) for e in rows)
        total = sum(costs, Decimal(0))
        return total, [e["transaction_id"] for e in rows]

    def _payers(self, customer: str, currency: str) -> list[Json]:
        rows = [w for w in self.wallets.values() if w["external_customer_id"] == customer
                and w["status"] == "active" and w["currency"] == currency]
        return sorted(rows, key=lambda w: (w["priority"], w["created_at"]))

    def invoice(self, customer: str, currency: str = "USD", metric: str = "llm_usage",
                period: tuple[Decimal, Decimal] | None = None) -> int:
        """Invoices the customer's usage now (a finalised invoice in `book`) and applies its wallets'
        credits; returns the cents the wallets paid. With a subscription whose external_id is the
        customer id: its plan's fees over `period` (charges from and to, Unix seconds, `to` inclusive
        as Lago's charges_to_datetime; by default the current billing period's start to now). Without
        one: the simplification in the module's docstring, in `currency`, as one bucket of `metric`."""
        made: list[Json] = []
        with self._lock:
            subscription = self._subscription(customer)
            if subscription is None:
                total, ids = self._uninvoiced(customer)
                fees = [{"fee_type": "charge", "code": metric, "units": total, "events_count": len(ids),
                         "amount_cents": int((total * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))}]
                periods: list[Json] = []
            else:
                assert self._billing is not None
                plan = self._billing.plans[subscription["plan_code"]]
                currency = plan["amount_currency"]
                start, to = period or self._current_period(subscription, plan)
                with self._store.changed:
                    events = [e for e in self._store.events if e["external_subscription_id"] == customer
                              and start <= e["timestamp"] < to + 1 and e["created_at"] >= subscription["created_at"]
                              and e["transaction_id"] not in self.invoiced]
                fees = plan_fees(plan, self._billing.metrics, events)
                ids = [e["transaction_id"] for e in events]
                periods = [{"lago_subscription_id": subscription["lago_id"], "external_subscription_id": customer,
                            "lago_plan_id": plan["lago_id"], "plan_code": plan["code"], "from": start, "to": to}]
            invoice_id = str(uuid.uuid4())
            paid = 0
            for wallet, take in self._allocate(customer, currency, fees):
                credits = Decimal(take).scaleb(-CURRENCIES[currency]) / wallet["rate_amount"]
                wallet["balance_cents"] -= take
                wallet["credits_balance"] -= credits
                wallet["consumed_credits"] += credits
                tx = {"lago_id": str(uuid.uuid4()), "lago_wallet_id": wallet["lago_id"], "credit_amount": credits,
                      "amount": Decimal(take).scaleb(-CURRENCIES[currency]), "lago_invoice_id": invoice_id,
                      "transaction_type": "outbound", "transaction_status": "invoiced", "status": "settled",
                      "created_at": self._clock()}
                self.transactions[tx["lago_id"]] = tx
                made.append(tx)
                paid += take
            self.invoiced.update(ids)
            self.book.add(customer=customer, invoice_type="subscription", currency=currency, fees=fees,
                          prepaid_cents=paid, periods=periods, lago_id=invoice_id)
        for tx in made:
            self._send("wallet_transaction.created", "wallet_transaction", self._tx_payload(tx))
            self._send("wallet.updated", "wallet", self.serialize(self.wallets[tx["lago_wallet_id"]], limitations=False))
        return paid

    def _subscription(self, customer: str) -> Json | None:
        if self._billing is None:
            return None
        subscription = self._billing.subscriptions.get(customer)
        return subscription if subscription and subscription["external_customer_id"] == customer else None

    def _current_period(self, subscription: Json, plan: Json) -> tuple[Decimal, Decimal]:
        now = self._clock()
        start, end = billing_period(plan["interval"], subscription["billing_time"], subscription["started_at"], now)
        return start, min(end - 1, Decimal(int(now)))

    def _allocate(self, customer: str, currency: str, fees: list[Json]) -> list[tuple[Json, int]]:
        """(wallet, cents) debits: wallet by wallet in priority order, each over the fee buckets it may
        pay, largest first, never past the wallet's balance or the invoice's total."""
        buckets: dict[tuple[str, str], int] = {}
        for fee in fees:
            key = (fee["fee_type"], str(fee["code"]))
            buckets[key] = buckets.get(key, 0) + int(fee["amount_cents"])
        remaining = dict(sorted(buckets.items(), key=lambda item: -item[1]))
        invoice_left = sum(remaining.values())
        debits = []
        for wallet in self._payers(customer, currency):
            taken = 0
            for (fee_type, code), left in remaining.items():
                unrestricted = not wallet["metric_codes"] and not wallet["fee_types"]
                covers = unrestricted or fee_type in wallet["fee_types"] or (
                    fee_type == "charge" and code in wallet["metric_codes"])
                take = min(left, wallet["balance_cents"] - taken, invoice_left) if covers else 0
                if take > 0:
                    remaining[(fee_type, code)] -= take
                    invoice_left -= take
                    taken += take
            if taken > 0:
                debits.append((wallet, taken))
        return debits

    def refresh_ongoing(self, customer: str, currency: str = "USD") -> None:
        """What Lago's refresh job does (only when a test asks): allocate uninvoiced usage by priority,
        the last wallet absorbing the overflow (it may go negative)."""
        with self._lock:
            total, _ = self._uninvoiced(customer)
            left = int((total * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            wallets = self._payers(customer, currency)
            for i, wallet in enumerate(wallets):
                take = left if i == len(wallets) - 1 else min(left, max(wallet["balance_cents"], 0))
                wallet["ongoing_usage_balance_cents"] = take
                wallet["ongoing_balance_cents"] = wallet["balance_cents"] - take
                left -= take

    # -- webhooks ------------------------------------------------------------------------------------

    def public_key(self) -> Reply:
        return 200, {"webhook": {"public_key": base64.b64encode(shared_key().public_pem()).decode()}}

    def sign(self, body: bytes, algorithm: str) -> str:
        if algorithm == "hmac":
            return base64.b64encode(hmac.new(self.hmac_key.encode(), body, hashlib.sha256).digest()).decode()
        return shared_key().jwt({"data": body.decode(), "iss": self.issuer})

    def send_webhook(self, webhook_type: str, object_type: str, obj: Json) -> None:
        """A webhook of another kind (the fake's subscriptions send `subscription.started`), signed alike."""
        self._send(webhook_type, object_type, obj)

    def _send(self, webhook_type: str, object_type: str, obj: Json) -> None:
        url = self.webhook_url
        if not url:
            return
        body = json.dumps({"webhook_type": webhook_type, "object_type": object_type,
                           "organization_id": "fake-org", object_type: obj}).encode()
        algorithm = self.webhook_algorithm
        # Delivered behind the API reply, as Lago's SendWebhookJob is.
        thread = threading.Thread(target=self._deliver, args=(url, body, algorithm, webhook_type), daemon=True)
        self._deliveries.append(thread)
        thread.start()

    def _deliver(self, url: str, body: bytes, algorithm: str, webhook_type: str) -> None:
        headers = {"Content-Type": "application/json", "X-Lago-Signature": self.sign(body, algorithm),
                   "X-Lago-Signature-Algorithm": algorithm, "X-Lago-Unique-Key": str(uuid.uuid4())}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        self.webhooks_sent.append({"webhook_type": webhook_type, "status": status})

    def wait_webhooks(self, timeout: float = 10.0) -> list[Json]:
        """Blocks until every webhook sent so far was delivered (or failed); returns the log."""
        for thread in list(self._deliveries):
            thread.join(timeout)
        return list(self.webhooks_sent)
