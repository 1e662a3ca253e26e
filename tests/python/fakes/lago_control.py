"""The fake Lago's `/_fake/...` control and inspection API, for tests in another process.

No auth, not in the request log, never faulted, served even while the fake is "down":

    GET  /_fake/events        stored events (API shape + "timestamp_seconds" as exact decimal text)
    GET  /_fake/raw_events    every event object received, as sent (dropped keys included)
    GET  /_fake/requests      the request log (method, path, query, headers, body, connection, status)
    GET  /_fake/stats         connections_accepted, requests, events, raw_events
    GET  /_fake/mode          current modes and pending faults
    GET  /_fake/wait?count=N&timeout=S   200 once N events are stored, 408 on timeout
    POST /_fake/mode {...}    FakeLago.configure(**body), e.g. {"fail_next": {"n": 2, "status": 503}},
                              {"rate_limit_next": 1}, {"delay_seconds": 0.5}, {"down": true},
                              {"down": "refuse", "seconds": 2}, {"store": "clickhouse"}
    POST /_fake/reset         forget events, billing objects, requests, faults, connection count
    POST /_fake/wallets/webhooks {"url", "algorithm": "hmac"|"jwt", "hmac_key"?, "issuer"?}   where
                              wallet webhooks go ("url": null stops them); GET it: the delivery log
    POST /_fake/wallets/invoice {"customer"}          apply credits to the customer's uninvoiced usage
    POST /_fake/wallets/refresh_ongoing {"customer"}  recompute the ongoing_* fields (never otherwise)
    POST /_fake/drop_events {"transaction_ids": [...]}   a Lago that lost data: {"dropped": n}
    POST /_fake/alter_event {"transaction_id", "properties"?, "timestamp"?, "code"?,
                             "external_subscription_id"?}   a Lago whose copy differs: {"event": ...}
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .http_server import RecordedRequest
from .lago_store import Json, Reply, decimal_text, serialize_event

if TYPE_CHECKING:
    from .lago import FakeLago

PREFIX = "/_fake/"


def event_json(event: Json) -> Json:
    """A stored event in the API's shape plus its exact timestamp as decimal text."""
    return {**serialize_event(event), "timestamp_seconds": decimal_text(event["timestamp"])}


def control(fake: FakeLago, request: RecordedRequest) -> Reply:
    name, method = request.path[len(PREFIX):], request.method
    if method == "GET" and name == "events":
        return 200, {"events": [event_json(event) for event in fake.events]}
    if method == "GET" and name == "raw_events":
        return 200, {"raw_events": fake.raw_events}
    if method == "GET" and name == "requests":
        return 200, {"requests": [recorded.to_json() for recorded in fake.requests]}
    if method == "GET" and name == "stats":
        return 200, {"connections_accepted": fake.connections_accepted, "requests": len(fake.requests),
                     "events": len(fake.events), "raw_events": len(fake.raw_events)}
    if method == "GET" and name == "mode":
        return 200, fake.mode()
    if method == "GET" and name == "wait":
        try:
            count, timeout = int(request.query.get("count", "1")), float(request.query.get("timeout", "5"))
            return 200, {"events": len(fake.wait_for(count, timeout))}
        except ValueError as error:
            return 400, {"status": 400, "error": str(error)}
        except TimeoutError as error:
            return 408, {"status": 408, "error": str(error)}
    if method == "POST" and fake.down == "refuse":
        # Only a connection opened before the refusal can get here, in its last 0.1 s; reopening
        # from a request handler would deadlock (closing the server joins the handler threads).
        return 409, {"status": 409, "error": "refusing connections; back up by itself when its time is up"}
    if method == "POST" and name == "reset":
        fake.reset()
        return 200, fake.mode()
    if name.startswith("wallets/"):
        return _wallets(fake, method, name.removeprefix("wallets/"), request.body)
    if method == "POST" and name in ("drop_events", "alter_event"):
        return _change_events(fake, name, request.body)
    if method == "POST" and name == "mode":
        try:
            mode = json.loads(request.body or b"{}")
            if not isinstance(mode, dict):
                raise ValueError("the mode must be a JSON object")
            if mode.get("down") == "refuse":
                return _refuse_for(fake, mode)
            return 200, fake.configure(**mode)
        except (ValueError, TypeError, ArithmeticError) as error:
            return 400, {"status": 400, "error": str(error)}
    return 404, {"status": 404, "error": "Not Found", "code": "resource_not_found"}


def _refuse_for(fake: FakeLago, mode: dict[str, Any]) -> Reply:
    # Over HTTP, "refuse" needs "seconds": with the listener closed, nobody could reopen it.
    seconds = mode.pop("seconds", None)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0 or set(mode) != {"down"}:
        raise ValueError('{"down": "refuse"} takes "seconds" (> 0) and nothing else')
    fake.refuse_for(float(seconds))
    return 200, {**fake.mode(), "seconds": seconds}


def _change_events(fake: FakeLago, name: str, body: bytes) -> Reply:
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        return 400, {"status": 400, "error": "the body must be JSON"}
    if not isinstance(params, dict):
        return 400, {"status": 400, "error": "the body must be a JSON object"}
    if name == "drop_events":
        ids = params.get("transaction_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return 400, {"status": 400, "error": '"transaction_ids" must be a list of strings'}
        return 200, {"dropped": fake.drop_events(ids)}
    changes = {k: v for k, v in params.items() if k != "transaction_id"}
    unknown = set(changes) - {"properties", "timestamp", "code", "external_subscription_id"}
    if unknown or not isinstance(params.get("transaction_id"), str):
        return 400, {"status": 400, "error": f"alter_event takes transaction_id and properties, timestamp, code, "
                                             f"external_subscription_id (unknown: {sorted(unknown)})"}
    try:
        return 200, {"event": event_json(fake.alter_event(params["transaction_id"], **changes))}
    except KeyError:
        return 404, {"status": 404, "error": f"no stored event {params['transaction_id']!r}"}
    except ValueError as error:
        return 400, {"status": 400, "error": str(error)}


def _wallets(fake: FakeLago, method: str, name: str, body: bytes) -> Reply:
    wallets = fake.wallets
    if method == "GET" and name == "webhooks":
        return 200, {"webhooks": wallets.wait_webhooks()}
    try:
        params = json.loads(body or b"{}")
        if not isinstance(params, dict):
            raise ValueError("expected a JSON object")
    except ValueError as error:
        return 400, {"status": 400, "error": str(error)}
    if method == "POST" and name == "webhooks":
        wallets.webhook_url = params.get("url")
        wallets.webhook_algorithm = params.get("algorithm", wallets.webhook_algorithm)
        wallets.hmac_key = params.get("hmac_key", wallets.hmac_key)
        wallets.issuer = params.get("issuer", wallets.issuer)
        return 200, {"url": wallets.webhook_url, "algorithm": wallets.webhook_algorithm}
    if method == "POST" and name == "invoice":
        return 200, {"paid_cents": wallets.invoice(str(params.get("customer") or ""))}
    if method == "POST" and name == "refresh_ongoing":
        wallets.refresh_ongoing(str(params.get("customer") or ""))
        return 200, {}
    return 404, {"status": 404, "error": "Not Found", "code": "resource_not_found"}
