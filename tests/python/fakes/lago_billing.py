"""The minimal billing side of the fake Lago: metrics, plans, customers, subscriptions, usage.

Enough of Lago to bill a customer end to end in a test (docs/lago-api.md, "Billing a customer end
to end"): billable metrics (count, sum, max, unique count, latest), plans with `standard` and
`package` charges, customers (upsert), subscriptions (idempotent on external_id) and
`current_usage`. Units are exact decimals, amounts integer cents rounded half up per charge as
lago-api does. What real Lago supports and this fake does not (weighted sums, graduated or volume
charges, taxes, coupons, customer time zones) answers 501 `fake_lago_unsupported`, never a guess.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any, Callable

from .lago_store import (
    EventStore,
    Json,
    Reply,
    iso8601,
    decimal_text,
    not_allowed,
    not_found,
    param_missing,
    parse_decimal,
    parse_iso8601,
    unsupported,
    validation_failed,
)

AGGREGATIONS = ("count_agg", "sum_agg", "max_agg", "unique_count_agg", "latest_agg")
LAGO_ONLY_AGGREGATIONS = ("weighted_sum_agg", "custom_agg")
CHARGE_MODELS = ("standard", "package")
LAGO_ONLY_CHARGE_MODELS = ("graduated", "graduated_percentage", "volume", "percentage", "dynamic", "custom")
INTERVAL_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "yearly": 12}  # and "weekly"
# Currency -> decimals of its minor unit. A short list; Lago knows ~160 (add one here when needed).
CURRENCIES = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2, "MXN": 2, "CNY": 2, "HKD": 2, "SGD": 2,
    "ZAR": 2, "JPY": 0, "KRW": 0,
}


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _text(params: Json, key: str) -> str | None:
    """A required string parameter: None when absent, blank or not a string."""
    value = params.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _params(body: Any, name: str) -> Json | None:
    """`params.require(name)`: a non-empty object, else None (STRICT: Rails 500s on a non-object)."""
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, dict) and value else None


def _utc(seconds: Decimal) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def _seconds(moment: datetime) -> Decimal:
    return Decimal(int(moment.timestamp()))


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    next_first = datetime(year + (month == 11), (month + 1) % 12 + 1, 1, tzinfo=timezone.utc)
    last_day = (next_first - timedelta(days=1)).day
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


def billing_period(interval: str, billing_time: str, started_at: Decimal, now: Decimal) -> tuple[Decimal, Decimal]:
    """[start, end) of the period containing `now`, never starting before the subscription (UTC)."""
    today = _utc(now).replace(hour=0, minute=0, second=0)
    anchor = _utc(started_at).replace(hour=0, minute=0, second=0)
    if interval == "weekly":
        if billing_time == "calendar":
            start = today - timedelta(days=today.weekday())  # Monday
        else:
            start = anchor + timedelta(weeks=(today - anchor).days // 7)
        end = start + timedelta(weeks=1)
    else:
        step = INTERVAL_MONTHS[interval]
        if billing_time == "calendar":
            start = _add_months(today.replace(day=1), -((today.month - 1) % step))
        else:
            months = (today.year - anchor.year) * 12 + today.month - anchor.month
            count = months // step
            if _add_months(anchor, count * step) > today:
                count -= 1
            start = _add_months(anchor, count * step)
        end = _add_months(start, step) if billing_time == "calendar" else _add_months(anchor, (count + 1) * step)
    return max(_seconds(start), started_at), _seconds(end)


def aggregate(metric: Json, events: list[Json]) -> Decimal:
    """A billable metric's units over the events of one period and subscription."""
    kind, field = metric["aggregation_type"], metric["field_name"]
    if kind == "count_agg":
        return Decimal(len(events))
    present = [event for event in events if field in event["properties"]]
    if kind == "unique_count_agg":
        return Decimal(len({str(event["properties"][field]) for event in present}))
    numbers = [(event, parse_decimal(event["properties"][field])) for event in present]
    values = [number for _, number in numbers if number is not None]
    if kind == "sum_agg":
        return sum(values, Decimal(0))
    if kind == "max_agg":
        return max(values, default=Decimal(0))
    # latest_agg: the value of the latest event (by timestamp, then arrival); negatives count as 0
    dated = [(event["timestamp"], i, number) for i, (event, number) in enumerate(numbers) if number is not None]
    return max(max(dated)[2], Decimal(0)) if dated else Decimal(0)


def charge_amount(charge: Json, units: Decimal) -> Decimal:
    """The charge's amount in currency units (not yet rounded)."""
    properties = charge["properties"]
    amount = Decimal(properties["amount"])
    if charge["charge_model"] == "standard":
        return units * amount
    paid: Decimal = units - Decimal(properties["free_units"])
    if paid <= 0:
        return Decimal(0)
    packages = (paid / Decimal(properties["package_size"])).to_integral_value(rounding=ROUND_CEILING)
    return packages * amount


def check_charge_properties(model: str, properties: Any) -> dict[str, list[str]]:
    """Charges::Validators::{Standard,Package}Service: amounts are decimal strings, sizes integers."""
    properties = properties if isinstance(properties, dict) else {}
    errors: dict[str, list[str]] = {}
    amount = properties.get("amount")
    value = parse_decimal(amount) if isinstance(amount, str) else None
    if value is None or value < 0:
        errors["amount"] = ["invalid_amount"]
    if model == "package":
        sizes = (("package_size", "invalid_package_size", 1), ("free_units", "invalid_free_units", 0))
        for field, code, least in sizes:
            number = properties.get(field)
            if not isinstance(number, int) or isinstance(number, bool) or number < least:
                errors[field] = [code]
    return errors


class Billing:
    """Metrics, plans, customers and subscriptions; usage computed from an EventStore's events."""

    def __init__(self, store: EventStore, clock: Callable[[], Decimal]) -> None:
        self._store = store
        self._lock = store.changed
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.metrics: dict[str, Json] = {}  # by code
            self.plans: dict[str, Json] = {}  # by code
            self.customers: dict[str, Json] = {}  # by external_id
            self.subscriptions: dict[str, Json] = {}  # by external_id

    def _now(self) -> Decimal:
        return self._clock()

    # -- POST /api/v1/billable_metrics ---------------------------------------------------------------

    def create_metric(self, body: Any) -> Reply:
        params = _params(body, "billable_metric")
        if params is None:
            return param_missing("billable_metric")
        kind = params.get("aggregation_type")
        errors: Json = {}
        with self._lock:
            if not _present(params.get("name")):
                errors["name"] = ["value_is_mandatory"]
            if not _present(params.get("code")):
                errors["code"] = ["value_is_mandatory"]
            elif params["code"] in self.metrics:
                errors["code"] = ["value_already_exist"]
            if kind not in AGGREGATIONS + LAGO_ONLY_AGGREGATIONS:
                errors["aggregation_type"] = ["value_is_invalid"]
            elif kind != "count_agg" and not _present(params.get("field_name")):
                errors["field_name"] = ["value_is_mandatory"]
            if errors:
                return validation_failed(errors)
            if kind in LAGO_ONLY_AGGREGATIONS:
                return unsupported(f"aggregation_type {kind}")
            metric = {
                "lago_id": str(uuid.uuid4()),
                "name": params["name"],
                "code": params["code"],
                "aggregation_type": kind,
                "field_name": None if kind == "count_agg" else params["field_name"],
                "created_at": iso8601(self._now()),
            }
            self.metrics[metric["code"]] = metric
            return 200, {"billable_metric": dict(metric)}

    def find_metric(self, code: str) -> Reply:
        """GET /api/v1/billable_metrics/{code}."""
        with self._lock:
            metric = self.metrics.get(code)
            return (200, {"billable_metric": dict(metric)}) if metric else not_found("billable_metric")

    # -- POST /api/v1/plans --------------------------------------------------------------------------

    def create_plan(self, body: Any) -> Reply:
        params = _params(body, "plan")
        if params is None:
            return param_missing("plan")
        errors: Json = {}
        with self._lock:
            for field in ("name", "code"):
                if not _present(params.get(field)):
                    errors[field] = ["value_is_mandatory"]
            if "code" not in errors and params["code"] in self.plans:
                errors["code"] = ["value_already_exist"]
            if params.get("interval") not in ("weekly", *INTERVAL_MONTHS):
                errors["interval"] = ["value_is_invalid"]
            cents = params.get("amount_cents")
            if cents is None:
                errors["amount_cents"] = ["value_is_mandatory"]
            elif not isinstance(cents, int) or isinstance(cents, bool) or cents < 0:
                errors["amount_cents"] = ["value_is_invalid"]  # STRICT: Rails casts "12" and floats
            if params.get("amount_currency") not in CURRENCIES:
                errors["amount_currency"] = ["value_is_invalid"]
            charges_in = params.get("charges") or []
            if not isinstance(charges_in, list) or not all(isinstance(c, dict) for c in charges_in):
                errors["charges"] = ["value_is_invalid"]
                charges_in = []
            charges = []
            by_id = {metric["lago_id"]: metric for metric in self.metrics.values()}
            for charge in charges_in:
                metric = by_id.get(charge.get("billable_metric_id"))
                if metric is None:
                    return not_found("billable_metric")
                model = charge.get("charge_model")
                if model in LAGO_ONLY_CHARGE_MODELS:
                    return unsupported(f"charge_model {model}")
                if model not in CHARGE_MODELS:
                    errors["charge_model"] = ["value_is_invalid"]
                    continue
                errors.update(check_charge_properties(model, charge.get("properties")))
                charges.append({
                    "lago_id": str(uuid.uuid4()),
                    "billable_metric_id": metric["lago_id"],
                    "billable_metric_code": metric["code"],
                    "code": charge.get("code"),
                    "charge_model": model,
                    "invoice_display_name": charge.get("invoice_display_name"),
                    "properties": dict(charge.get("properties") or {}),
                })
            if errors:
                return validation_failed(errors)
            plan = {
                "lago_id": str(uuid.uuid4()),
                "name": params["name"],
                "code": params["code"],
                "interval": params["interval"],
                "amount_cents": cents,
                "amount_currency": params["amount_currency"],
                "pay_in_advance": bool(params.get("pay_in_advance", False)),
                "created_at": iso8601(self._now()),
                "charges": charges,
            }
            self.plans[plan["code"]] = plan
            return 200, {"plan": plan}

    # -- POST /api/v1/customers (an upsert) ------------------------------------------------------------

    def upsert_customer(self, body: Any) -> Reply:
        params = _params(body, "customer")
        if params is None:
            return param_missing("customer")
        external_id = _text(params, "external_id")
        if external_id is None:
            return validation_failed({"external_id": ["value_is_mandatory"]})
        currency = params.get("currency")
        if currency is not None and currency not in CURRENCIES:
            return validation_failed({"currency": ["value_is_invalid"]})
        with self._lock:
            customer = self.customers.get(external_id)
            if customer is None:
                customer = self._new_customer(external_id)
            elif currency and customer["currency"] not in (None, currency) and self._has_subscription(external_id):
                return validation_failed({"currency": ["currencies_does_not_match"]})
            if "name" in params:
                customer["name"] = params["name"]
            if currency:
                customer["currency"] = currency
            return 200, {"customer": dict(customer)}

    def _new_customer(self, external_id: str) -> Json:
        customer = {
            "lago_id": str(uuid.uuid4()),
            "external_id": external_id,
            "name": None,
            "currency": None,
            "created_at": iso8601(self._now()),
        }
        self.customers[external_id] = customer
        return customer

    def _has_subscription(self, customer_id: str) -> bool:
        return any(s["external_customer_id"] == customer_id for s in self.subscriptions.values())

    # -- POST /api/v1/subscriptions (idempotent on external_id) ----------------------------------------

    def create_subscription(self, body: Any) -> Reply:
        params = _params(body, "subscription")
        if params is None:
            return param_missing("subscription")
        customer_id = _text(params, "external_customer_id")
        if customer_id is None:
            return validation_failed({"external_customer_id": ["value_is_mandatory"]})
        billing_time = params.get("billing_time", "calendar")
        if billing_time not in ("calendar", "anniversary"):
            return validation_failed({"billing_time": ["value_is_invalid"]})
        started_at: Decimal | None = self._now()
        if params.get("subscription_at") is not None:
            # lago-api takes `subscription_at` (ISO 8601); `started_at` is output only and ignored.
            started_at = parse_iso8601(params["subscription_at"])
        if started_at is None:
            return validation_failed({"subscription_at": ["invalid_date"]})
        external_id = (_text(params, "external_id") or str(uuid.uuid4())).strip()
        with self._lock:
            plan = self.plans.get(_text(params, "plan_code") or "")
            if plan is None:
                return not_found("plan")
            existing = self.subscriptions.get(external_id)
            if existing is not None and existing["external_customer_id"] != customer_id:
                return validation_failed({"external_id": ["value_already_exist"]})
            customer = self.customers.get(customer_id) or self._new_customer(customer_id)  # as Lago's API
            if customer["currency"] not in (None, plan["amount_currency"]):
                return validation_failed({"currency": ["currencies_does_not_match"]})
            customer["currency"] = plan["amount_currency"]
            if existing is not None:
                # Idempotent: the same call returns the same subscription. A new plan applies at
                # once here (Lago upgrades at once but downgrades at the end of the period).
                existing["plan_code"] = plan["code"]
                return 200, {"subscription": self._serialize_subscription(existing)}
            subscription = {
                "lago_id": str(uuid.uuid4()),
                "external_id": external_id,
                "external_customer_id": customer_id,
                "plan_code": plan["code"],
                "name": params.get("name"),
                "billing_time": billing_time,
                "started_at": started_at,
                "created_at": self._now(),
            }
            self.subscriptions[external_id] = subscription
            return 200, {"subscription": self._serialize_subscription(subscription)}

    # -- GET /api/v1/subscriptions/{external_id} -------------------------------------------------------

    def find_subscription(self, external_id: str) -> Reply:
        with self._lock:
            subscription = self.subscriptions.get(external_id)
            if subscription is None:
                return not_found("subscription")
            return 200, {"subscription": self._serialize_subscription(subscription)}

    def _serialize_subscription(self, subscription: Json) -> Json:
        plan = self.plans[subscription["plan_code"]]
        now = self._now()
        active = subscription["started_at"] <= now
        start, end = billing_period(plan["interval"], subscription["billing_time"], subscription["started_at"],
                                    max(now, subscription["started_at"]))
        return {
            **{k: v for k, v in subscription.items() if k not in ("started_at", "created_at")},
            "status": "active" if active else "pending",
            "subscription_at": iso8601(subscription["started_at"]),
            "started_at": iso8601(subscription["started_at"], 3) if active else None,
            "created_at": iso8601(subscription["created_at"]),
            "plan_amount_cents": plan["amount_cents"],
            "plan_amount_currency": plan["amount_currency"],
            "current_billing_period_started_at": iso8601(start),
            "current_billing_period_ending_at": iso8601(end - 1),
        }

    # -- GET /api/v1/customers/{external_customer_id}/current_usage ------------------------------------

    # Filters and options lago-api takes (models/usage_filters.rb) that this fake does not compute:
    # answered 501, never with the unfiltered usage. apply_taxes and skip_grouping change nothing here
    # (no taxes, no grouping), so they are taken.
    USAGE_FILTERS = ("charge_id", "charge_code", "billable_metric_code", "filter_by_charge_id",
                     "filter_by_charge_code", "filter_by_billable_metric_code", "filter_by_group", "group",
                     "full_usage")

    def current_usage(self, customer_id: str, query: dict[str, str]) -> Reply:
        asked = [name for name in self.USAGE_FILTERS if name in query]
        if asked:
            return unsupported(f"current_usage with {', '.join(asked)}")
        with self._lock:
            if customer_id not in self.customers:
                return not_found("customer")
            now = self._now()
            subscription = self.subscriptions.get(query.get("external_subscription_id", ""))
            if (subscription is None or subscription["external_customer_id"] != customer_id
                    or subscription["started_at"] > now):
                return not_allowed("no_active_subscription")
            plan = self.plans[subscription["plan_code"]]
            start, end = billing_period(plan["interval"], subscription["billing_time"],
                                        subscription["started_at"], now)
            # Only the subscription's events of this period count: an event without
            # external_subscription_id, dated before the start or of an unknown code is never billed;
            # nor is one received while Lago had no such subscription (accepted with a 200, never billed).
            events = [
                event for event in self._store.events
                if event["external_subscription_id"] == subscription["external_id"]
                and start <= event["timestamp"] < end
                and event["created_at"] >= subscription["created_at"]
            ]
            exponent = CURRENCIES[plan["amount_currency"]]
            usage = []
            for charge in plan["charges"]:
                metric = self.metrics[charge["billable_metric_code"]]
                matching = [event for event in events if event["code"] == metric["code"]]
                units = aggregate(metric, matching)
                # lago-api rounds each fee half up to the currency's minor unit
                amount = charge_amount(charge, units).quantize(Decimal(1).scaleb(-exponent), ROUND_HALF_UP)
                usage.append({
                    "units": decimal_text(units),
                    "total_aggregated_units": decimal_text(units),
                    "events_count": len(matching),
                    "amount_cents": int(amount.scaleb(exponent)),
                    "amount_currency": plan["amount_currency"],
                    "pricing_unit_details": None,
                    "charge": {
                        "lago_id": charge["lago_id"],
                        "code": charge.get("code"),
                        "charge_model": charge["charge_model"],
                        "invoice_display_name": charge["invoice_display_name"],
                    },
                    "billable_metric": {k: metric[k] for k in ("lago_id", "name", "code", "aggregation_type")},
                    "filters": [],
                    "grouped_usage": [],
                    "presentation_breakdowns": [],
                })
            total = sum(item["amount_cents"] for item in usage)
            return 200, {"customer_usage": {
                "from_datetime": iso8601(start),
                "to_datetime": iso8601(end - 1),
                "issuing_date": iso8601(end)[:10],
                "currency": plan["amount_currency"],
                "amount_cents": total,
                "taxes_amount_cents": 0,
                "total_amount_cents": total,
                "lago_invoice_id": None,
                "charges_usage": usage,
            }}
