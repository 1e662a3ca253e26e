"""Whether a billed id can be billed in Lago, and making it so.

Lago answers 200 to an event for a subscription it does not have (or dated before it starts) and
never bills it. So the proxy asks, once per billed id, whether an active subscription with that
`external_id` exists (GET /api/v1/subscriptions/{external_id}); with LAGO_AUTO_PROVISION_PLAN it
creates the customer (POST /customers, an upsert) and the subscription (POST /subscriptions,
idempotent on external_id), started no later than the id's first event.

Synchronous, standard library only, like reader.py; these are the only writes besides events, and
they are idempotent, so a retry after a lost reply is harmless.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .reader import LagoReader, LagoReadError, iso_to_ms, ms_to_iso

ACTIVE = "active"


def missing_reason(external_id: str) -> str:
    return (f"Lago has no active subscription with external_id {external_id!r}: it would store these events and "
            "never bill them (create the subscription, or set LAGO_AUTO_PROVISION_PLAN, then run "
            "`llmbill deadletters replay --all`)")


def started_ms(subscription: dict[str, Any]) -> int | None:
    """When the subscription started billing (Unix ms): `started_at`, else `subscription_at`; None
    when Lago gives neither. Lago never bills an event dated before it."""
    for field in ("started_at", "subscription_at"):
        value = subscription.get(field)
        if isinstance(value, str) and value:
            try:
                return iso_to_ms(value)
            except LagoReadError:
                return None
    return None


class LagoSubscriptions:
    def __init__(self, reader: LagoReader) -> None:
        self.reader = reader

    def find(self, external_id: str) -> dict[str, Any] | None:
        """The subscription object (GET /subscriptions/{external_id}), None when Lago has none."""
        status, data = self.reader._get("/subscriptions/" + urllib.parse.quote(external_id, safe=""))
        if status == 200 and isinstance(data, dict) and isinstance(data.get("subscription"), dict):
            return dict(data["subscription"])
        if status == 404 and isinstance(data, dict) and data.get("code") == "subscription_not_found":
            return None
        raise LagoReadError(f"Lago answered HTTP {status} to GET /subscriptions/{external_id}: {str(data)[:200]}")

    def status(self, external_id: str) -> str | None:
        """The subscription's status ("active", "pending", "terminated", ...), None when Lago has none."""
        found = self.find(external_id)
        return None if found is None else str(found.get("status") or "")

    def active(self, external_id: str) -> bool:
        return self.status(external_id) == ACTIVE

    def provision(self, external_id: str, plan_code: str, start_ms: int) -> None:
        """The customer and its subscription on `plan_code`, both with this external id, the
        subscription starting at `start_ms` floored to the second (not after the first event)."""
        self._post("/customers", {"customer": {"external_id": external_id, "name": external_id}})
        start = ms_to_iso(start_ms - start_ms % 1000).replace(".000Z", "Z")
        self._post("/subscriptions", {"subscription": {"external_customer_id": external_id, "plan_code": plan_code,
                                                       "external_id": external_id, "subscription_at": start}})

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        reader = self.reader
        request = urllib.request.Request(reader.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {reader.api_key}",
                                                  "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=reader.timeout) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read()[:200].decode("utf-8", "replace")
            exc.close()
            raise LagoReadError(f"Lago answered HTTP {exc.code} to POST {path}: {text}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LagoReadError(f"POST {path} to Lago at {reader.base} failed: {getattr(exc, 'reason', exc)}") from None
