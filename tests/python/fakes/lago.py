"""A fake Lago server that holds a sender to Lago's real events API contract (docs/lago-api.md).

Strict, not permissive: what real Lago rejects, this rejects the same way (the rules live in
`lago_store.py`, the billing side in `lago_billing.py`); this file is the HTTP layer, the fault
injection and the inspection API.

In-process (pytest)::

    with FakeLago(api_key="k") as lago:          # 127.0.0.1, a free port
        send_to(lago.url)                        # e.g. http://127.0.0.1:40123
        lago.fail_next(2)                        # the next 2 ingestion requests answer 500
        lago.wait_for(3)                         # block until 3 events are stored
        assert lago.count_by_transaction_id()["t1"] == 1

As a process (benchmarks, end-to-end tests)::

    python -m tests.python.fakes.lago --port 8089 --api-key k [--store clickhouse]
    python tests/python/fakes/lago.py ...        # the same

prints ``listening on http://127.0.0.1:8089`` and serves until SIGTERM. Another process drives it
through ``/_fake/...`` (no auth, not logged, never faulted): GET events, raw_events, requests,
stats, mode, ``wait?count=N&timeout=S``; POST mode with a JSON object of `configure()` keywords;
POST reset.

Armed faults (`fail_next`, `respond_next`, `rate_limit_next`, `commit_then_fail_next`,
`drop_next`) queue in call order and are consumed by event ingestion only (POST /api/v1/events and
/api/v1/events/batch), so a test can arm them and still set up billing. `down` and `delay_seconds`
apply to every API request.
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
import json
import os
import re
import signal
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

from .lago_billing import Billing
from .lago_store import (
    STORES,
    EventStore,
    Json,
    Reply,
    decimal_text,
    iso8601,
    param_missing,
    serialize_event,
    validation_failed,
)

INGESTION = ("/api/v1/events", "/api/v1/events/batch")

# (method, path pattern) -> (resource for 403 codes, handler name). Paths are matched exactly:
# STRICT: Rails would also take "//api/v1/events" or a trailing slash; the contract asks the sender
# to normalise LAGO_API_BASE, and the fake holds it to that.
_ROUTES = [
    ("POST", re.compile(r"/api/v1/events"), "event", "_events_create"),
    ("POST", re.compile(r"/api/v1/events/batch"), "event", "_events_batch"),
    ("GET", re.compile(r"/api/v1/events"), "event", "_events_index"),
    ("GET", re.compile(r"/api/v1/events/(?P<id>[^/]+)"), "event", "_events_show"),
    ("POST", re.compile(r"/api/v1/billable_metrics"), "billable_metric", "_metrics_create"),
    ("POST", re.compile(r"/api/v1/plans"), "plan", "_plans_create"),
    ("POST", re.compile(r"/api/v1/customers"), "customer", "_customers_upsert"),
    ("POST", re.compile(r"/api/v1/subscriptions"), "subscription", "_subscriptions_create"),
    ("GET", re.compile(r"/api/v1/customers/(?P<id>[^/]+)/current_usage"), "customer_usage", "_current_usage"),
]


def status_body(status: int) -> Json:
    """The body Lago gives with an HTTP status, for injected replies."""
    bodies: dict[int, Json] = {
        400: {"status": 400, "error": "BadRequest: injected by fake Lago"},
        401: {"status": 401, "error": "Unauthorized"},
        403: {"status": 403, "error": "Forbidden", "code": "write_action_not_allowed_for_event"},
        404: {"status": 404, "error": "Not Found", "code": "resource_not_found"},
        422: validation_failed({"events": ["injected_by_fake_lago"]})[1],
    }
    return bodies.get(status, {"status": status, "error": HTTPStatus(status).phrase})


@dataclass
class Fault:
    kind: str  # "respond" (before the store), "commit_then_fail" (after it) or "drop"
    status: int = 500
    body: Json | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass
class RecordedRequest:
    """One API request as received; `status` is None when the fake closed without replying."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # 1-based number of the TCP connection it came on
    status: int | None = None
    fault: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def to_json(self) -> Json:
        return {"method": self.method, "path": self.path, "query": self.query, "headers": self.headers,
                "body": self.body.decode("utf-8", "replace"), "connection": self.connection,
                "status": self.status, "fault": self.fault}


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 stalls concurrent clients for seconds
    daemon_threads = False  # stop() unblocks and joins every handler thread
    block_on_close = True
    fake: FakeLago

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's version does a reverse DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-reply is the client's business


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # else ~40 ms delayed-ACK stalls per keep-alive request
    wbufsize = 1 << 16  # headers and body leave in one write, on flush
    server_version = "FakeLago/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.number = self.server.fake._connected(self.connection)

    def finish(self) -> None:
        self.server.fake._disconnected(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_expect_100(self) -> bool:
        # libcurl sends "Expect: 100-continue" with bodies over 1 KiB and waits up to 1 s for it.
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        fake = self.server.fake
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(400, {"status": 400, "error": "Bad Request"})
            return
        path, _, query_text = self.path.partition("?")
        query = dict(parse_qsl(query_text, keep_blank_values=True))
        if path.startswith("/_fake/"):
            self._send(*fake._control(self.command, path, query, body))
            return
        record = RecordedRequest(self.command, path, query, {k.lower(): v for k, v in self.headers.items()},
                                 body, self.number)
        fake._record(record)
        if fake.down:
            record.fault = "down"
            self.close_connection = True  # close without a reply
            return
        if fake.delay_seconds:
            fake._wake.wait(fake.delay_seconds)
        fault = fake._take_fault() if self.command == "POST" and path in INGESTION else None
        if fault is not None:
            record.fault = fault.kind
        if fault is not None and fault.kind in ("respond", "drop"):
            reply: tuple[int, Json, dict[str, str]] = (fault.status, fault.body or status_body(fault.status),
                                                       fault.headers)
        else:
            status, answer = fake._handle(self.command, path, query, record.headers, body)
            reply = (status, answer, {})
            if fault is not None:  # commit_then_fail: stored above, now fail
                reply = (fault.status, fault.body or status_body(fault.status), fault.headers)
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        record.status = reply[0]
        self._send(*reply)

    def _send(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _decimal_clock() -> Decimal:
    return Decimal(time.time_ns()).scaleb(-9)


class FakeLago:
    """A Lago API server on 127.0.0.1 in a background thread: see the module docstring."""

    def __init__(self, api_key: str = "test-key", *, read_only_key: str | None = None,
                 store: str = "postgres", legacy_partial_batches: bool = False, max_batch: int = 100,
                 host: str = "127.0.0.1", port: int = 0, record_requests: bool = True) -> None:
        self.api_key = api_key
        self.read_only_key = read_only_key
        self.host, self.port = host, port
        self.record_requests = record_requests
        self.delay_seconds = 0.0
        self.now: Decimal | float | int | None = None  # a fixed clock; None: the real time
        self.down: bool | str = False
        self._store = EventStore(store, legacy_partial_batches=legacy_partial_batches, max_batch=max_batch)
        self._billing = Billing(self._store, self._clock)
        self._lock = threading.Lock()  # faults, request log, connections
        self._life = threading.RLock()  # start, stop, down/up
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self._connections = 0
        self._open: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # set when the server closes: cuts injected delays short

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeLago:
        with self._life:
            if self._server is None:
                self._open_server()
        return self

    def stop(self) -> None:
        with self._life:
            self._close_server()
            self.down = False

    def __enter__(self) -> FakeLago:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _open_server(self) -> None:
        deadline = time.monotonic() + 2
        while True:
            try:
                server = _Server((self.host, self.port), _Handler)
                break
            except OSError:  # reopening a fixed port after "refuse": retry a moment
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        server.fake = self
        self.port = server.server_address[1]
        self._wake = threading.Event()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-lago:{self.port}", daemon=True)
        self._thread.start()

    def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._wake.set()
        server.shutdown()
        assert self._thread is not None
        self._thread.join()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:  # wakes handlers blocked reading the next keep-alive request
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # joins the handler threads

    def set_down(self, how: bool | str) -> None:
        """False: serve. True or "drop": accept, then close without a reply. "refuse": close the
        listening socket (connections are refused) until `set_down(False)` reopens the same port."""
        if how not in (False, True, "drop", "refuse"):
            raise ValueError(f"down must be False, True, 'drop' or 'refuse', not {how!r}")
        with self._life:
            if how == "refuse":
                self._close_server()
            elif self.down == "refuse":
                self._open_server()
            self.down = "drop" if how is True else how

    # -- configuration and faults --------------------------------------------------------------------

    @property
    def store(self) -> str:
        return self._store.store

    @store.setter
    def store(self, store: str) -> None:
        self._store.store = store

    @property
    def legacy_partial_batches(self) -> bool:
        return self._store.legacy_partial_batches

    @legacy_partial_batches.setter
    def legacy_partial_batches(self, legacy: bool) -> None:
        self._store.legacy_partial_batches = legacy

    @property
    def max_batch(self) -> int:
        return self._store.max_batch

    @max_batch.setter
    def max_batch(self, size: int) -> None:
        self._store.max_batch = size

    def _arm(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend(Fault(fault.kind, fault.status, fault.body, dict(fault.headers), fault.drop)
                                for _ in range(n))

    def respond_next(self, n: int = 1, status: int = 500, body: Json | None = None,
                     headers: dict[str, str] | None = None) -> None:
        """The next n ingestion requests get `status` (any 4xx/5xx) with Lago's body; nothing stored."""
        self._arm(n, Fault("respond", status, body, headers or {}))

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        self.respond_next(n, status)

    def rate_limit_next(self, n: int = 1, reset_seconds: int = 1, limit: int = 500,
                        retry_after: bool = True) -> None:
        """The next n ingestion requests get Lago Cloud's 429 with its X-RateLimit headers."""
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": str(reset_seconds)}
        if retry_after:
            headers["Retry-After"] = str(reset_seconds)
        body = {"status": 429, "error": "Too Many Requests"}
        self._arm(n, Fault("respond", 429, body, headers))

    def commit_then_fail_next(self, n: int = 1, status: int = 500, drop: bool = False) -> None:
        """Store the next n ingestion requests' events as usual, then answer `status` or, with
        `drop`, close the connection without a reply: the sender must resend, Lago must dedupe."""
        self._arm(n, Fault("commit_then_fail", status, drop=drop))

    def drop_next(self, n: int = 1) -> None:
        """Close the next n ingestion connections without a reply and without storing."""
        self._arm(n, Fault("drop", drop=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.delay_seconds = 0.0
        self.set_down(False)

    def _take_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def configure(self, **mode: Any) -> Json:
        """Set modes and arm faults by name (what POST /_fake/mode takes); returns `mode()`.

        Keys: down, delay_seconds, store, legacy_partial_batches, max_batch, now, read_only_key,
        clear_faults; fail_next / rate_limit_next / commit_then_fail_next / respond_next / drop_next
        take an object of that method's keywords (or a plain n).
        """
        setters = {"delay_seconds": float, "store": str, "legacy_partial_batches": bool,
                   "max_batch": int, "read_only_key": lambda v: v, "now": lambda v: v}
        faults: dict[str, Callable[..., None]] = {
            "fail_next": self.fail_next, "respond_next": self.respond_next,
            "rate_limit_next": self.rate_limit_next, "commit_then_fail_next": self.commit_then_fail_next,
            "drop_next": self.drop_next}
        unknown = set(mode) - set(setters) - set(faults) - {"down", "clear_faults"}
        if unknown:
            raise ValueError(f"unknown mode keys: {sorted(unknown)}")
        if mode.get("clear_faults"):
            self.clear_faults()
        for name, convert in setters.items():
            if name in mode:
                setattr(self, name, convert(mode[name]))
        if "down" in mode:
            self.set_down(mode["down"])
        for name, arm in faults.items():
            if name in mode:
                args = mode[name]
                arm(**args) if isinstance(args, dict) else arm(int(args))
        return self.mode()

    def mode(self) -> Json:
        with self._lock:
            pending = [fault.kind if fault.kind != "respond" else f"respond {fault.status}" for fault in self._faults]
        return {"down": self.down, "delay_seconds": self.delay_seconds, "store": self.store,
                "legacy_partial_batches": self.legacy_partial_batches, "max_batch": self.max_batch,
                "now": None if self.now is None else str(self.now), "pending_faults": pending,
                "read_only_key": self.read_only_key}

    def reset(self) -> None:
        """Forget events, billing objects, requests, faults and the connection count; keep settings."""
        self._store.reset()
        self._billing.reset()
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._connections = 0
        self.delay_seconds = 0.0

    def _clock(self) -> Decimal:
        now = self.now
        return _decimal_clock() if now is None else Decimal(str(now))

    # -- inspection ----------------------------------------------------------------------------------

    @property
    def events(self) -> list[Json]:
        """Stored events in order: transaction_id, external_subscription_id, code, timestamp (Decimal
        seconds), properties, precise_total_amount_cents (Decimal or None), lago_id, created_at."""
        with self._store.changed:
            return [dict(event) for event in self._store.events]

    @property
    def raw_events(self) -> list[Any]:
        """Every event object received (stored or not), exactly as sent, dropped keys included."""
        with self._store.changed:
            return list(self._store.raw_events)

    def transaction_ids(self) -> list[str]:
        return self._store.transaction_ids()

    def count_by_transaction_id(self) -> Counter[str]:
        return self._store.count_by_transaction_id()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Json]:
        """Block until at least `count` events are stored; TimeoutError otherwise."""
        return self._store.wait_for(count, timeout)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._connections

    @property
    def billing(self) -> Billing:
        return self._billing

    def _record(self, record: RecordedRequest) -> None:
        if self.record_requests:
            with self._lock:
                self._requests.append(record)

    def _connected(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections += 1
            self._open.add(sock)
            return self._connections

    def _disconnected(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    # -- the API -------------------------------------------------------------------------------------

    def _handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                body: bytes) -> Reply:
        for route_method, pattern, resource, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                break
        else:
            if path == "/health" and method == "GET":  # lago-api's health check needs no key
                return 200, {"version": "fake", "github_url": "", "message": "Success"}
            return 404, {"status": 404, "error": "Not Found", "code": "resource_not_found"}
        params, error = _json_params(headers, body)
        if error is not None:
            return error
        authorization = headers.get("authorization")
        if authorization != f"Bearer {self.api_key}":
            # STRICT: lago-api takes the second word of any "<scheme> <key>"; the contract says Bearer.
            if self.read_only_key is None or authorization != f"Bearer {self.read_only_key}":
                return 401, {"status": 401, "error": "Unauthorized"}
            if method != "GET":
                return 403, {"status": 403, "error": "Forbidden", "code": f"write_action_not_allowed_for_{resource}"}
        handler: Callable[[Any, dict[str, str], dict[str, str]], Reply] = getattr(self, name)
        return handler(params, query, {k: unquote(v) for k, v in match.groupdict().items()})

    def _events_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        event = params.get("event")
        if not isinstance(event, dict) or not event:
            # Rails' params.require: absent or empty -> 400. STRICT: a non-object 500s in Lago.
            return param_missing("event")
        return self._store.ingest_one(event, self._clock())

    def _events_batch(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        events = params.get("events")
        # Rails' permit(events: [...]) keeps `events` only as an array: absent, null, a string or a
        # number all reach Lago as "no events" (an object makes lago-api fail with a 500; the fake
        # answers no_events too). A non-object element counts as an event with no fields.
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

    def _plans_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.create_plan(params)

    def _customers_upsert(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.upsert_customer(params)

    def _subscriptions_create(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.create_subscription(params)

    def _current_usage(self, params: Json, query: dict[str, str], ids: dict[str, str]) -> Reply:
        return self._billing.current_usage(ids["id"], query)

    # -- /_fake control API --------------------------------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> Reply:
        name = path[len("/_fake/"):]
        if method == "GET" and name == "events":
            return 200, {"events": [_event_json(event) for event in self.events]}
        if method == "GET" and name == "raw_events":
            return 200, {"raw_events": self.raw_events}
        if method == "GET" and name == "requests":
            return 200, {"requests": [request.to_json() for request in self.requests]}
        if method == "GET" and name == "stats":
            return 200, {"connections_accepted": self.connections_accepted, "requests": len(self.requests),
                         "events": len(self._store.events), "raw_events": len(self._store.raw_events)}
        if method == "GET" and name == "mode":
            return 200, self.mode()
        if method == "GET" and name == "wait":
            count, timeout = int(query.get("count", "1")), float(query.get("timeout", "5"))
            try:
                return 200, {"events": len(self.wait_for(count, timeout))}
            except TimeoutError as error:
                return 408, {"status": 408, "error": str(error)}
        if method == "POST" and name == "reset":
            self.reset()
            return 200, self.mode()
        if method == "POST" and name == "mode":
            try:
                mode = json.loads(body or b"{}")
                if not isinstance(mode, dict):
                    raise ValueError("the mode must be a JSON object")
                if mode.get("down") == "refuse":
                    return self._refuse_for(mode)
                return 200, self.configure(**mode)
            except (ValueError, TypeError) as error:
                return 400, {"status": 400, "error": str(error)}
        return 404, {"status": 404, "error": "Not Found", "code": "resource_not_found"}

    def _refuse_for(self, mode: Json) -> Reply:
        # Over HTTP, "refuse" needs "seconds": with the listener closed nobody could reopen it.
        seconds = float(mode.pop("seconds", 0))
        if seconds <= 0 or set(mode) != {"down"}:
            raise ValueError('{"down": "refuse"} takes "seconds" (> 0) and nothing else')

        def cycle() -> None:  # not on the handler thread: closing the server joins handler threads
            self.set_down("refuse")
            time.sleep(seconds)
            with self._life:
                if self.down == "refuse":
                    self.set_down(False)

        threading.Thread(target=cycle, daemon=True).start()
        return 200, {**self.mode(), "down": "refuse", "seconds": seconds}


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
    except ValueError:
        return {}, (400, {"status": 400, "error": "Bad Request"})
    return (value if isinstance(value, dict) else {"_json": value}), None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _event_json(event: Json) -> Json:
    """A stored event for /_fake/events: the API's shape plus exact timestamps as decimal text."""
    return {**serialize_event(event), "timestamp_seconds": decimal_text(event["timestamp"]),
            "timestamp": iso8601(event["timestamp"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.python.fakes.lago",
                                     description="A fake Lago API server for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--api-key", default=os.environ.get("LAGO_API_KEY", "test-key"))
    parser.add_argument("--read-only-key")
    parser.add_argument("--store", choices=STORES, default="postgres")
    parser.add_argument("--legacy-partial-batches", action="store_true")
    parser.add_argument("--max-batch", type=int, default=100)
    parser.add_argument("--no-request-log", action="store_true", help="for long benchmarks")
    args = parser.parse_args(argv)
    fake = FakeLago(args.api_key, read_only_key=args.read_only_key, store=args.store,
                    legacy_partial_batches=args.legacy_partial_batches, max_batch=args.max_batch,
                    host=args.host, port=args.port, record_requests=not args.no_request_log)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with fake:
        print(f"listening on {fake.url}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
