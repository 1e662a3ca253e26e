"""A fake Lago server that holds a sender to Lago's real events API contract (docs/lago-api.md).

Strict, not permissive: what real Lago rejects, this rejects the same way. The event rules and
the two stores live in `lago_store.py`, billing in `lago_billing.py`, faults in `lago_faults.py`,
the `/_fake` control API in `lago_control.py`, lost or changed data in `lago_tamper.py`, the HTTP
plumbing in `http_server.py`; this file routes the API and is the public face.

In-process (pytest)::

    with FakeLago(api_key="k") as lago:          # 127.0.0.1, a free port
        send_to(lago.url)                        # e.g. http://127.0.0.1:40123
        lago.fail_next(2)                        # the next 2 ingestion requests answer 500
        lago.wait_for(3)                         # block until 3 events are stored
        assert lago.count_by_transaction_id()["t1"] == 1

As a process (benchmarks, end-to-end tests)::

    python -m tests.python.fakes.lago --port 8089 --api-key k [--store clickhouse]
    python tests/python/fakes/lago.py ...        # the same

prints ``listening on http://127.0.0.1:8089`` and serves until SIGTERM; another process drives
and inspects it through ``/_fake/...`` (see lago_control.py).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: re-enter as a package module
    import pathlib
    import runpy
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    runpy.run_module("fakes.lago", run_name="__main__", alter_sys=True)
    raise SystemExit(0)

import argparse
import copy
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import unquote

from . import lago_tamper
from .http_server import Answer, BackgroundServer, RecordedRequest
from .lago_billing import Billing
from .lago_control import PREFIX, control
from .lago_faults import FaultInjection
from .lago_wallets import Wallets
from .lago_store import STORES, EventStore, Json, Reply, param_missing, validation_failed

INGESTION = ("/api/v1/events", "/api/v1/events/batch")
NOT_FOUND: Reply = (404, {"status": 404, "error": "Not Found", "code": "resource_not_found"})

# (method, path, resource named in 403 codes, handler). Paths match exactly. STRICT: Rails also
# takes "//api/v1//events/"; the contract asks the sender to normalise LAGO_API_BASE, and the fake
# holds it to that.
_ROUTES = [
    ("POST", re.compile(r"/api/v1/events"), "event", "_events_create"),
    ("POST", re.compile(r"/api/v1/events/batch"), "event", "_events_batch"),
    ("GET", re.compile(r"/api/v1/events"), "event", "_events_index"),
    ("GET", re.compile(r"/api/v1/events/(?P<id>[^/]+)"), "event", "_events_show"),
    ("POST", re.compile(r"/api/v1/billable_metrics"), "billable_metric", "_metrics_create"),
    ("GET", re.compile(r"/api/v1/billable_metrics/(?P<code>[^/]+)"), "billable_metric", "_metrics_show"),
    ("POST", re.compile(r"/api/v1/plans"), "plan", "_plans_create"),
    ("POST", re.compile(r"/api/v1/customers"), "customer", "_customers_upsert"),
    ("POST", re.compile(r"/api/v1/subscriptions"), "subscription", "_subscriptions_create"),
    ("GET", re.compile(r"/api/v1/subscriptions/(?P<id>[^/]+)"), "subscription", "_subscriptions_show"),
    ("GET", re.compile(r"/api/v1/customers/(?P<id>[^/]+)/current_usage"), "customer_usage", "_current_usage"),
    ("GET", re.compile(r"/api/v1/wallets"), "wallet", "_wallets_index"),
    ("POST", re.compile(r"/api/v1/wallets"), "wallet", "_wallets_create"),
    ("GET", re.compile(r"/api/v1/wallets/(?P<id>[^/]+)"), "wallet", "_wallets_show"),
    ("DELETE", re.compile(r"/api/v1/wallets/(?P<id>[^/]+)"), "wallet", "_wallets_terminate"),
    ("POST", re.compile(r"/api/v1/wallet_transactions"), "wallet_transaction", "_wallet_transactions_create"),
    ("GET", re.compile(r"/api/v1/wallets/(?P<id>[^/]+)/wallet_transactions"), "wallet_transaction",
     "_wallet_transactions_index"),
    ("PUT", re.compile(r"/api/v1/invoices/(?P<id>[^/]+)"), "invoice", "_invoices_update"),
    ("GET", re.compile(r"/api/v1/invoices"), "invoice", "_invoices_index"),
    ("GET", re.compile(r"/api/v1/invoices/(?P<id>[^/]+)"), "invoice", "_invoices_show"),
    ("GET", re.compile(r"/api/v1/webhooks/json_public_key"), "webhook", "_webhooks_public_key"),
]


class FakeLago(FaultInjection):
    """Lago's API on 127.0.0.1 (a free port unless `port` is given), served from a background thread.

    Settings (attributes, also settable through `configure()` and POST /_fake/mode): `store`
    ("postgres" rejects resends with value_already_exist; "clickhouse" answers 200 and collapses
    identical rows), `legacy_partial_batches` (Lago before Dec 2025: a rejected batch keeps its
    good events), `max_batch` (LAGO_EVENTS_BATCH_MAX_LENGTH), `read_only_key` (403 on writes),
    `delay_seconds` (every API reply waits), `now` (a fixed clock in Unix seconds, or None).
    Fault methods come from FaultInjection; `set_down()` and `refuse_for()` take it off the air.
    """

    def __init__(self, api_key: str = "test-key", *, read_only_key: str | None = None,
                 store: str = "postgres", legacy_partial_batches: bool = False, max_batch: int = 100,
                 host: str = "127.0.0.1", port: int = 0, record_requests: bool = True) -> None:
        super().__init__()
        self.api_key = api_key
        self.read_only_key = read_only_key
        self.record_requests = record_requests
        self.delay_seconds = 0.0
        self.now: Decimal | float | int | str | None = None
        self.down: bool | str = False  # False, "drop" or "refuse"
        self._store = EventStore(store, legacy_partial_batches=legacy_partial_batches, max_batch=max_batch)
        self._billing = Billing(self._store, self._clock)
        self._wallets = Wallets(self._store, lambda: self._billing.customers, self._clock,  # lago_wallets.py
                                billing=self._billing)
        self._http = BackgroundServer(self._serve, host, port)
        self._life = threading.RLock()  # start, stop, down and up
        self._generation = 0  # bumped by every start, stop and set_down: stale timers give up
        self._log_lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._wake = threading.Event()  # set on stop: cuts injected delays short

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeLago:
        with self._life:
            if not self._http.running:
                self._generation += 1
                self._wake = threading.Event()
                self._http.start()
        return self

    def stop(self) -> None:
        with self._life:
            self._generation += 1
            self._wake.set()
            self._http.close()
            self.down = False

    def __enter__(self) -> FakeLago:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123 (the API is under /api/v1)."""
        return f"http://{self._http.host}:{self._http.port}"

    @property
    def port(self) -> int:
        return self._http.port

    def set_down(self, how: bool | str) -> None:
        """False: serve. True or "drop": accept, then close without a reply. "refuse": close the
        listener and all connections (connection refused) until set_down(False) reopens the port."""
        if how not in (False, True, "drop", "refuse"):
            raise ValueError(f"down must be false, true, 'drop' or 'refuse', not {how!r}")
        with self._life:
            self._generation += 1
            if how == "refuse":
                self._wake.set()
                self._http.close()
            elif self.down == "refuse":
                self._http.close()  # after refuse_for's first phase the old server still lingers
                self._wake = threading.Event()
                self._http.start()
            self.down = "drop" if how is True else how

    def refuse_for(self, seconds: float) -> None:
        """Refuse connections now and for `seconds`, then serve again on the same port. Safe to
        call from a request handler (the /_fake/mode route uses it)."""
        with self._life:
            self._generation += 1
            generation = self._generation
            self._http.stop_accepting()  # refused from now on; open connections get dropped
            self.down = "refuse"

        def later() -> None:
            time.sleep(min(0.1, seconds))  # let a /_fake reply leave before its connection closes
            with self._life:
                if self._generation == generation:
                    self._wake.set()
                    self._http.close()
            time.sleep(max(seconds - 0.1, 0))
            with self._life:
                if self._generation == generation:
                    self.set_down(False)

        threading.Thread(target=later, name="fake-lago-refuse", daemon=True).start()

    # -- settings ------------------------------------------------------------------------------------

    store = property(lambda self: self._store.store, lambda self, v: setattr(self._store, "store", v))
    legacy_partial_batches = property(lambda self: self._store.legacy_partial_batches,
                                      lambda self, v: setattr(self._store, "legacy_partial_batches", bool(v)))
    max_batch = property(lambda self: self._store.max_batch,
                         lambda self, v: setattr(self._store, "max_batch", int(v)))

    def configure(self, **mode: Any) -> Json:
        """Set settings and arm faults by name, as POST /_fake/mode does; returns `mode()`.

        Keys: down, delay_seconds, store, legacy_partial_batches, max_batch, now, read_only_key,
        clear_faults (true); fail_next, respond_next, rate_limit_next, commit_then_fail_next and
        drop_next take an object of that method's keywords, or a plain n.
        """
        settings: dict[str, Callable[[Any], Any]] = {
            "delay_seconds": float, "store": str, "legacy_partial_batches": bool, "max_batch": int,
            "now": lambda v: None if v is None else Decimal(str(v)), "read_only_key": lambda v: v}
        faults: dict[str, Callable[..., None]] = {
            "fail_next": self.fail_next, "respond_next": self.respond_next, "drop_next": self.drop_next,
            "rate_limit_next": self.rate_limit_next, "commit_then_fail_next": self.commit_then_fail_next}
        unknown = set(mode) - set(settings) - set(faults) - {"down", "clear_faults"}
        if unknown:
            raise ValueError(f"unknown mode keys: {sorted(unknown)}")
        if mode.get("clear_faults"):
            self.clear_faults()
        for name, convert in settings.items():
            if name in mode:
                setattr(self, name, convert(mode[name]))
        if "down" in mode:
            self.set_down(mode["down"])
        for name, arm in faults.items():
            if name in mode:
                arm(**mode[name]) if isinstance(mode[name], dict) else arm(int(mode[name]))
        return self.mode()

    def mode(self) -> Json:
        return {"down": self.down, "delay_seconds": self.delay_seconds, "store": self.store,
                "legacy_partial_batches": self.legacy_partial_batches, "max_batch": self.max_batch,
                "now": None if self.now is None else str(self.now), "read_only_key": self.read_only_key,
                "pending_faults": self.pending_faults()}

    def clear_faults(self) -> None:
        """Disarm every fault, drop the delay and come back up."""
        self._clear_armed()
        self.delay_seconds = 0.0
        self.set_down(False)

    def reset(self) -> None:
        """Forget events, billing objects, requests, faults and the connection count; keep settings."""
        self._store.reset()
        self._billing.reset()
        self._wallets.reset()
        self._clear_armed()
        self.delay_seconds = 0.0
        with self._log_lock:
            self._requests.clear()
        self._http.reset_count()

    def _clock(self) -> Decimal:
        now = self.now
        return Decimal(time.time_ns()).scaleb(-9) if now is None else Decimal(str(now))

    # -- inspection ----------------------------------------------------------------------------------

    @property
    def events(self) -> list[Json]:
        """Stored events in order (a collapsed ClickHouse row keeps its place): transaction_id,
        external_subscription_id, code, timestamp (exact Decimal seconds), properties,
        precise_total_amount_cents (Decimal or None), lago_id, created_at."""
        with self._store.changed:
            return [dict(event) for event in self._store.events]

    @property
    def raw_events(self) -> list[Any]:
        """Every event object received, stored or not, exactly as sent (dropped keys included,
        e.g. external_customer_id)."""
        with self._store.changed:
            return copy.deepcopy(self._store.raw_events)

    def transaction_ids(self) -> list[str]:
        return self._store.transaction_ids()

    def count_by_transaction_id(self) -> Counter[str]:
        return self._store.count_by_transaction_id()

    def add_metric(self, code: str, field_name: str = "input_tokens") -> None:
        """A sum_agg billable metric with this code, as POST /api/v1/billable_metrics makes it."""
        status, body = self._billing.create_metric({"billable_metric": {
            "name": code, "code": code, "aggregation_type": "sum_agg", "field_name": field_name}})
        if status != 200:
            raise ValueError(f"metric {code!r} not created: {body}")

    def drop_events(self, transaction_ids: list[str]) -> int:
        """Play a Lago that lost data: forget the stored events with these transaction ids."""
        return lago_tamper.drop_events(self._store, transaction_ids)

    def alter_event(self, transaction_id: str, **changes: Any) -> Json:
        """Play a Lago whose copy differs: change one stored event (properties merged; timestamp,
        code, external_subscription_id replaced). KeyError when no such event is stored."""
        return lago_tamper.alter_event(self._store, transaction_id, **changes)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Json]:
        """Block until at least `count` events are stored and return them; TimeoutError if not."""
        return self._store.wait_for(count, timeout)

    @property
    def requests(self) -> list[RecordedRequest]:
        """API requests in arrival order (not /_fake ones): method, path, query, headers (lower-case
        names, e.g. "authorization", "connection"), body, connection number, status, fault."""
        with self._log_lock:
            return list(self._requests)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since start or reset: a keep-alive sender keeps this low."""
        return self._http.connections_accepted

    @property
    def wallets(self) -> Wallets:
        """Prepaid wallets (lago_wallets.py): webhook_url, webhook_algorithm, invoice(), refresh_ongoing()."""
        return self._wallets

    @property
    def billing(self) -> Billing:
        return self._billing

    # -- serving -------------------------------------------------------------------------------------

    def _serve(self, request: RecordedRequest) -> Answer | None:
        if request.path.startswith(PREFIX):
            return (*control(self, request), {})
        if self.record_requests:
            with self._log_lock:
                self._requests.append(request)
        if self.down:
            request.fault = "down"
            return None
        if self.delay_seconds:
            self._wake.wait(self.delay_seconds)
        fault = self._take_fault() if request.method == "POST" and request.path in INGESTION else None
        if fault is not None:
            request.fault = fault.describe()
            if fault.kind == "commit_then_fail":
                self._handle(request)  # stored; the sender never hears so
            if fault.drop:
                return None
            answer = fault.reply()
        else:
            answer = (*self._handle(request), {})
        request.status = answer[0]
        return answer

    def _handle(self, request: RecordedRequest) -> Reply:
        for method, pattern, resource, name in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                break
        else:
            if request.path == "/health" and request.method == "GET":  # needs no key in lago-api
                return 200, {"version": "fake", "github_url": "", "message": "Success"}
            return NOT_FOUND  # before auth, as lago-api's catch-all route
        params, error = _json_params(request.headers, request.body)
        if error is not None:
            return error
        authorization = request.headers.get("authorization")
        if authorization != f"Bearer {self.api_key}":
            # STRICT: lago-api takes the second word of any "<scheme> <key>"; the contract says Bearer.
            if self.read_only_key is None or authorization != f"Bearer {self.read_only_key}":
                return 401, {"status": 401, "error": "Unauthorized"}
            if request.method != "GET":
                code = f"write_action_not_allowed_for_{resource}"
                return 403, {"status": 403, "error": "Forbidden", "code": code}
        handler: Callable[[Json, dict[str, str], dict[str, str]], Reply] = getattr(self, name)
        return handler(params, request.query, {key: unquote(value) for key, value in match.groupdict().items()})

    def _events_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        event = params.get("event")
        if not isinstance(event, dict) or not event:
            return param_missing("event")  # Rails' params.require. STRICT: a non-object 500s in Lago
        return self._store.ingest_one(event, self._clock())

    def _events_batch(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        events = params.get("events")
        # Rails' permit(events: [...]) keeps `events` only as an array: absent, null, a string or a
        # number all reach Lago as "no events". (An object makes lago-api fail with a 500; the fake
        # answers no_events too.) A non-object element counts as an event without fields.
        if not isinstance(events, list) or not events:
            return validation_failed({"events": ["no_events"]})
        if len(events) > self.max_batch:
            return validation_failed({"events": ["too_many_events"]})
        return self._store.ingest_batch(events, self._clock())

    def _events_index(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._store.list_events(query)

    def _events_show(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._store.find(ids["id"])

    def _metrics_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.create_metric(params)

    def _metrics_show(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.find_metric(ids["code"])

    def _plans_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.create_plan(params)

    def _customers_upsert(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.upsert_customer(params)

    def _subscriptions_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        fresh = _external_id(params) not in self._billing.subscriptions
        status, body = self._billing.create_subscription(params)
        subscription = body.get("subscription") if status == 200 and isinstance(body, dict) else None
        if fresh and isinstance(subscription, dict) and subscription.get("status") == "active":
            # lago-api's CreateService: a subscription created active (today or in the past) sends
            # subscription.started after commit; a re-POST of the same one sends nothing.
            self._wallets.send_webhook("subscription.started", "subscription", subscription)
        return status, body

    def _subscriptions_show(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.find_subscription(ids["id"])

    def _current_usage(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.current_usage(ids["id"], query)

    def _wallets_index(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.index(query)

    def _wallets_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.create(params)

    def _wallets_show(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.show(ids["id"])

    def _wallets_terminate(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.terminate(ids["id"])

    def _wallet_transactions_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.transact(params)

    def _wallet_transactions_index(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.transactions_index(ids["id"], query)

    def _invoices_update(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.pay_invoice(ids["id"], params)

    def _invoices_index(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.book.index(query)

    def _invoices_show(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.book.show(ids["id"])

    def _webhooks_public_key(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._wallets.public_key()


def _external_id(params: Json) -> str | None:
    """The subscription's external_id as create_subscription reads it (None: Lago makes one up)."""
    sub = params.get("subscription")
    ident = sub.get("external_id") if isinstance(sub, dict) else None
    return ident.strip() if isinstance(ident, str) and ident.strip() else None


def _json_params(headers: dict[str, str], body: bytes) -> tuple[Json, Reply | None]:
    """The request's JSON parameters as Rails sees them.

    Rails parses the body only under Content-Type application/json: without it (curl's default is
    form-urlencoded) the JSON arrives as nothing, so `event` is missing (400) and `events` empty
    (422 no_events). Unparseable JSON is a 400; a JSON array or scalar lands under `_json`.
    """
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" or not body.strip():
        return {}, None
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except ValueError:  # includes UnicodeDecodeError
        return {}, (400, {"status": 400, "error": "Bad Request"})
    return (value if isinstance(value, dict) else {"_json": value}), None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.python.fakes.lago",
                                     description="A fake Lago API server for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port, printed")
    parser.add_argument("--api-key", default=os.environ.get("LAGO_API_KEY", "test-key"))
    parser.add_argument("--read-only-key")
    parser.add_argument("--store", choices=STORES, default="postgres")
    parser.add_argument("--legacy-partial-batches", action="store_true")
    parser.add_argument("--max-batch", type=int, default=100)
    parser.add_argument("--no-request-log", action="store_true", help="keep no request log (long benchmarks)")
    args = parser.parse_args(argv)
    fake = FakeLago(args.api_key, read_only_key=args.read_only_key, store=args.store,
                    legacy_partial_batches=args.legacy_partial_batches, max_batch=args.max_batch,
                    host=args.host, port=args.port, record_requests=not args.no_request_log)
    # Block the stop signals before any thread starts (threads inherit the mask), then wait for
    # one synchronously: no handler runs in the middle of a lock.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with fake:
        print(f"listening on {fake.url}", flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
