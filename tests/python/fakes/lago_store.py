"""Lago's event-ingestion rules and event store, for the fake Lago server (`lago.py`).

No HTTP here: the functions take parsed JSON and return `(status, body)` replies, so the rules can
be read and tested without a socket. The rules are those of the contract (docs/lago-api.md) and,
where it is silent, of lago-api's own code (Events::CreateBatchService, EventsQuery).

Where real Lago coerces or silently drops a malformed field, the fake rejects the event instead
(marked STRICT below): a sender that only works thanks to Lago's leniency has a bug that a lenient
fake would hide. Timestamps are kept as exact `Decimal` seconds, money and units as `Decimal`.
"""

from __future__ import annotations

import re
import threading
import itertools
from collections import Counter
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Any

Json = dict[str, Any]
Reply = tuple[int, Json]

STORES = ("postgres", "clickhouse")
PER_PAGE = 100  # lago-api's Pagination::PER_PAGE


# -- replies, shaped as lago-api's ApiErrors renders them ------------------------------------------


def validation_failed(details: Json) -> Reply:
    return 422, {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": details,
    }


def not_found(resource: str) -> Reply:
    return 404, {"status": 404, "error": "Not Found", "code": f"{resource}_not_found"}


def bad_request(message: str) -> Reply:
    return 400, {"status": 400, "error": f"BadRequest: {message}"}


def param_missing(name: str) -> Reply:
    """What Rails' `params.require(name)` answers for an absent or empty parameter."""
    return bad_request(f"param is missing or the value is empty: {name}")


def not_allowed(code: str) -> Reply:
    return 405, {"status": 405, "error": "Method Not Allowed", "code": code}


def unsupported(what: str) -> Reply:
    """Real Lago supports this, the fake does not: fail loudly rather than bill wrongly."""
    return 501, {"status": 501, "error": "Not Implemented", "code": "fake_lago_unsupported", "detail": what}


# -- values ------------------------------------------------------------------------------------------

# Plain decimal text only: no blanks, no "1_000", no ".5", no "NaN" (all of which Python's Decimal
# would take). Our sender writes digits, an optional fraction and at most an exponent.
_DECIMAL_TEXT = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?\Z")


def parse_decimal(value: Any) -> Decimal | None:
    """The exact value of a JSON number or numeric string, else None (booleans are not numbers).

    A JSON float goes through its shortest text, as Ruby's `BigDecimal(Float#to_s)` does.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(repr(value))
        return number if number.is_finite() else None  # JSON 1e400 parses as inf
    if isinstance(value, str) and _DECIMAL_TEXT.match(value):
        return Decimal(value)
    return None


def decimal_text(value: Decimal) -> str:
    """A decimal as Rails prints a BigDecimal: plain notation with a fraction ("1500.0", "0.25")."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


_YEAR_10000 = 253402300800  # Python's datetime stops at 9999


def _civil_from_days(days: int) -> tuple[int, int, int]:
    # Gregorian date of a day count since 1970-01-01, for any year (Python's datetime stops at 9999,
    # and a sender that sends milliseconds as seconds produces year ~58000, which Lago accepts).
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def iso8601(seconds: Decimal, digits: int = 0) -> str:
    """UTC ISO 8601 of Unix seconds, truncated to `digits` decimals, like Ruby's Time#iso8601(n)."""
    whole = int(seconds.to_integral_value(rounding=ROUND_FLOOR))
    if 0 <= whole < _YEAR_10000:
        text = datetime.fromtimestamp(whole, timezone.utc).isoformat()[:19]
    else:
        days, rest = divmod(whole, 86400)
        year, month, day = _civil_from_days(days)
        text = f"{year:04d}-{month:02d}-{day:02d}T{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    if digits:
        fraction = int(((seconds - whole) * 10**digits).to_integral_value(rounding=ROUND_FLOOR))
        text += f".{fraction:0{digits}d}"
    return text + "Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_iso8601(text: Any) -> Decimal | None:
    """Unix seconds of an ISO 8601 date or datetime (UTC when no offset is given), else None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)


_ids = itertools.count(1)


def new_id() -> str:
    """A unique UUID-shaped id for lago_id fields: a counter, so cheap and in creation order."""
    return f"00000000-0000-4000-8000-{next(_ids):012x}"


# -- one event ---------------------------------------------------------------------------------------

def _is_flat(properties: dict[str, Any]) -> bool:
    for value in properties.values():
        kind = type(value)
        if kind is not str and kind is not int and kind is not float:  # bool is not int here
            return False
    return True


def check_event(raw: Any, received_at: Decimal) -> tuple[Json, dict[str, list[str]]]:
    """Validate one event object as Lago does; return the event to store and errors by field.

    Only transaction_id, external_subscription_id, code, timestamp, properties and
    precise_total_amount_cents are kept (what lago-api permits); other keys are dropped silently.
    """
    if not isinstance(raw, dict):
        raw = {}  # Rails' permit keeps nothing of a non-object: both required fields are then missing
    errors: dict[str, list[str]] = {}

    stamp = raw.get("timestamp")
    if stamp is None:
        timestamp = received_at  # absent: time of receipt (a resend then gets a new timestamp)
    else:
        # Lago parses the timestamp first and, when it cannot, reports that error alone.
        # STRICT: Lago reads `false` as absent and drops an object; both are invalid_format here.
        parsed = parse_decimal(stamp)
        if parsed is None:
            return {}, {"timestamp": ["invalid_format"]}
        timestamp = parsed

    for field in ("transaction_id", "code"):
        value = raw.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[field] = ["value_is_mandatory"]
        elif not isinstance(value, str):
            errors[field] = ["value_is_invalid"]  # STRICT: Lago casts a number to a string

    subscription = raw.get("external_subscription_id")
    if subscription is not None and not isinstance(subscription, str):
        errors["external_subscription_id"] = ["value_is_invalid"]  # STRICT: Lago casts or drops it

    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict) or not _is_flat(properties):
        # STRICT: Lago keeps nested objects, arrays, booleans and nulls; the contract says flat
        # strings and numbers, and no billable metric can aggregate the others.
        errors["properties"] = ["value_is_invalid"]
        properties = {}

    amount_text = raw.get("precise_total_amount_cents")
    amount = None
    if amount_text is not None:
        amount = parse_decimal(amount_text) if isinstance(amount_text, str) else None
        if amount is None:
            errors["precise_total_amount_cents"] = ["value_is_invalid"]  # STRICT: a decimal string

    event = {
        "lago_id": new_id(),
        "transaction_id": raw.get("transaction_id"),
        "external_subscription_id": subscription,
        "code": raw.get("code"),
        "timestamp": timestamp,
        "properties": dict(properties),  # flat: a shallow copy is a full copy
        "precise_total_amount_cents": amount,
        "created_at": received_at,
    }
    return event, errors


def serialize_event(event: Json, created_at: str | None = None) -> Json:
    """An event as lago-api's V1::EventSerializer writes it (subscription links come later).
    `created_at`: its text when the caller has it (one receipt time for a whole batch)."""
    amount = event["precise_total_amount_cents"]
    return {
        "lago_id": event["lago_id"],
        "transaction_id": event["transaction_id"],
        "lago_customer_id": None,
        "code": event["code"],
        "timestamp": iso8601(event["timestamp"], 3),
        "precise_total_amount_cents": None if amount is None else decimal_text(amount),
        "properties": event["properties"],
        "lago_subscription_id": None,
        "external_subscription_id": event["external_subscription_id"],
        "created_at": created_at or iso8601(event["created_at"]),
    }


# -- the store ---------------------------------------------------------------------------------------


class EventStore:
    """Stored events under one of Lago's two duplicate rules; thread-safe.

    `changed` is the lock for everything here (billing reads events under it too) and is notified
    whenever an event is stored.
    """

    def __init__(self, store: str = "postgres", *, legacy_partial_batches: bool = False,
                 max_batch: int = 100) -> None:
        self.changed = threading.Condition(threading.RLock())
        self.store = store
        self.legacy_partial_batches = legacy_partial_batches
        self.max_batch = max_batch
        self.reset()

    def reset(self) -> None:
        with self.changed:
            self.events: list[Json] = []  # stored rows, in insertion order
            self.raw_events: list[Any] = []  # every event object received, as sent, dropped keys kept
            self._keys: dict[tuple[Any, ...], int] = {}  # duplicate key -> index in events

    @property
    def store(self) -> str:
        return self._store

    @store.setter
    def store(self, store: str) -> None:
        if store not in STORES:
            raise ValueError(f"store must be one of {STORES}, not {store!r}")
        with self.changed:
            self._store = store
            self.reindex()

    def reindex(self) -> None:
        """Rebuilds the duplicate-key index after `events` changed in place (lago_tamper.py)."""
        self._keys = {}
        for index, event in enumerate(getattr(self, "events", [])):
            key = self._key(event)
            if key is not None:
                self._keys.setdefault(key, index)

    def _key(self, event: Json) -> tuple[Any, ...] | None:
        subscription, transaction_id = event["external_subscription_id"], event["transaction_id"]
        if self._store == "clickhouse":
            # events_raw is a ReplacingMergeTree ordered by (organization, subscription, code,
            # transaction_id, timestamp); its timestamp is a DateTime64(3).
            millis = event["timestamp"].quantize(Decimal("0.001"), rounding=ROUND_FLOOR)
            return (subscription, event["code"], transaction_id, millis)
        if subscription is None:
            return None  # the unique index is on (org, subscription, transaction_id): NULLs never clash
        return (subscription, transaction_id)

    def _put(self, event: Json) -> None:
        key = self._key(event)
        index = self._keys.get(key) if key is not None else None
        if index is not None:  # ClickHouse only: the later row replaces the earlier one
            self.events[index] = event
        else:
            if key is not None:
                self._keys[key] = len(self.events)
            self.events.append(event)
        self.changed.notify_all()

    def ingest_one(self, raw: Any, received_at: Decimal) -> Reply:
        """POST /api/v1/events with a present `event` object."""
        with self.changed:
            self.raw_events.append(raw)  # parsed for us alone: copied when read, not here
            event, errors = check_event(raw, received_at)
            if errors:
                return validation_failed(errors)
            if self._store == "postgres" and self._key(event) in self._keys:
                return validation_failed({"transaction_id": ["value_already_exist"]})
            self._put(event)
            return 200, {"event": serialize_event(event)}

    def ingest_batch(self, raws: list[Any], received_at: Decimal) -> Reply:
        """POST /api/v1/events/batch with a non-empty list of at most `max_batch` events."""
        with self.changed:
            self.raw_events.extend(raws)
            checked = [check_event(raw, received_at) for raw in raws]
            errors: Json = {str(i): errs for i, (_, errs) in enumerate(checked) if errs}
            legacy = self.legacy_partial_batches and self._store == "postgres"
            if errors and not legacy:
                # Current Lago reports validation errors before it looks for duplicates.
                return validation_failed(errors)
            valid = [(i, event) for i, (event, errs) in enumerate(checked) if not errs]
            if self._store == "postgres":
                errors.update(self._duplicates(valid))
            if errors and not legacy:
                return validation_failed(errors)  # all-or-nothing: the insert is rolled back
            for i, event in valid:
                if str(i) not in errors:
                    self._put(event)
            if errors:  # Lago before Dec 2025: the good events stay stored
                return validation_failed(errors)
            created_at = iso8601(received_at)
            return 200, {"events": [serialize_event(event, created_at) for _, event in valid]}

    def _duplicates(self, valid: list[tuple[int, Json]]) -> Json:
        # lago-api bulk-inserts with ON CONFLICT DO NOTHING and maps the inserted rows back by
        # transaction_id alone, so inside one batch every later copy of a transaction_id is
        # flagged, whatever its subscription; against stored rows the (subscription, id) key counts.
        flagged: Json = {}
        seen: set[Any] = set()
        for i, event in valid:
            key = self._key(event)
            if (key is not None and key in self._keys) or event["transaction_id"] in seen:
                flagged[str(i)] = {"transaction_id": ["value_already_exist"]}
            seen.add(event["transaction_id"])
        return flagged

    # -- reading -------------------------------------------------------------------------------------

    def transaction_ids(self) -> list[str]:
        with self.changed:
            return [event["transaction_id"] for event in self.events]

    def count_by_transaction_id(self) -> Counter[str]:
        with self.changed:
            return Counter(event["transaction_id"] for event in self.events)

    def wait_for(self, count: int, timeout: float) -> list[Json]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.events) >= count, timeout):
                raise TimeoutError(f"{len(self.events)} events stored after {timeout}s, wanted {count}")
            return list(self.events)

    def find(self, transaction_id: str) -> Reply:
        """GET /api/v1/events/{transaction_id}."""
        with self.changed:
            for event in self.events:
                if event["transaction_id"] == transaction_id:
                    return 200, {"event": serialize_event(event)}
        return not_found("event")

    def list_events(self, query: dict[str, str]) -> Reply:
        """GET /api/v1/events: filters, newest first, Kaminari-style pages and meta."""
        bounds: dict[str, Decimal] = {}
        for name in ("timestamp_from", "timestamp_to"):
            if query.get(name):
                moment = parse_iso8601(query[name])
                if moment is None:
                    return validation_failed({name: ["invalid_date"]})
                bounds[name] = moment
        page = max(_int(query.get("page"), 1), 1)
        per_page = _int(query.get("per_page"), PER_PAGE)
        if per_page < 1:
            per_page = PER_PAGE  # STRICT-ish: Lago would divide by zero here
        with self.changed:
            rows = [
                event for event in self.events
                if ("code" not in query or event["code"] == query["code"])
                and ("external_subscription_id" not in query
                     or event["external_subscription_id"] == query["external_subscription_id"])
                and ("timestamp_from" not in bounds or event["timestamp"] >= bounds["timestamp_from"])
                and ("timestamp_to" not in bounds or event["timestamp"] <= bounds["timestamp_to"])
            ]
            # Postgres orders by timestamp, ClickHouse by ingestion; newest first, then id ascending.
            order = "timestamp" if self._store == "postgres" else "created_at"
            rows.sort(key=lambda event: event["transaction_id"] or "")
            rows.sort(key=lambda event: event[order], reverse=True)
            total = len(rows)
            chunk = rows[(page - 1) * per_page: page * per_page]
            body: Json = {"events": [serialize_event(event) for event in chunk]}
        pages = -(-total // per_page)
        body["meta"] = {
            "current_page": page if total else 0,
            "next_page": page + 1 if total and page < pages else None,
            "prev_page": page - 1 if total and page > 1 else None,
            "total_pages": pages,
            "total_count": total,
        }
        return 200, body


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
