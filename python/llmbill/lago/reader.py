"""Reading what Lago holds: its stored events (for reconciliation) and whether a code is a billable
metric. Synchronous, standard library only (`import llmbill` loads no HTTP SDK), one request at a time.

Writes never go through here: every event reaches Lago through the durable pipeline.

>>> LagoReader("http://localhost:3000/api/v1/", "key").base
'http://localhost:3000/api/v1'
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import Error

PER_PAGE = 100  # Lago's page size (Pagination::PER_PAGE)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class LagoReadError(Error):
    """Lago could not be read: unreachable, refused the key, or answered something unexpected."""


@dataclass(frozen=True)
class StoredEvent:
    """One event as Lago stores it: `timestamp_ms` exact (Lago keeps milliseconds), properties as sent."""

    transaction_id: str
    code: str
    subscription: str  # external_subscription_id ("" when Lago has none)
    timestamp_ms: int
    properties: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_api(raw: Any) -> StoredEvent:
        if not isinstance(raw, dict) or not isinstance(raw.get("transaction_id"), str):
            raise LagoReadError(f"Lago listed an event without a transaction_id: {str(raw)[:200]}")
        properties = raw.get("properties")
        return StoredEvent(
            transaction_id=raw["transaction_id"],
            code=str(raw.get("code") or ""),
            subscription=str(raw.get("external_subscription_id") or ""),
            timestamp_ms=iso_to_ms(raw.get("timestamp")),
            properties=dict(properties) if isinstance(properties, dict) else {},
        )


def iso_to_ms(text: Any) -> int:
    """Unix milliseconds of Lago's ISO 8601 timestamp ("2026-08-06T07:06:40.123Z"), exactly."""
    if not isinstance(text, str):
        raise LagoReadError(f"Lago listed an event with an unreadable timestamp: {text!r}")
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise LagoReadError(f"Lago listed an event with an unreadable timestamp: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_to_iso(ms: int) -> str:
    """Unix milliseconds as the ISO 8601 text Lago's filters take (UTC, millisecond precision)."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def decimal_or_none(value: Any) -> Decimal | None:
    """A property's exact value (numbers and numeric strings), None when absent or not numeric."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


class LagoReader:
    """GET requests to Lago's API with the events pipeline's own base URL and key."""

    def __init__(self, api_base: str, api_key: str, timeout: float = 30.0) -> None:
        base = api_base.strip().rstrip("/")
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")].rstrip("/")
        if not base:
            raise LagoReadError("LAGO_API_BASE is not set: there is no Lago to read")
        self.base = base + "/api/v1"
        self.api_key = api_key
        self.timeout = timeout

    def _get(self, path: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_key}",
                                                       "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                status, body = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LagoReadError(f"Lago at {self.base} is unreachable: {reason}") from None
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = body[:200].decode("utf-8", "replace")
        if status in (401, 403):
            raise LagoReadError(f"Lago refused the API key (HTTP {status}) for GET {path}: check LAGO_API_KEY")
        return status, data

    def get(self, path: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
        """One GET under /api/v1: (HTTP status, parsed JSON); LagoReadError when Lago is out of reach
        or refuses the key."""
        return self._get(path, query)

    def listing(self, path: str, key: str, query: dict[str, str] | None = None, *,
                absent: str | None = None) -> list[dict[str, Any]]:
        """Every row of a paged Lago list (`{key: [...], "meta": {"next_page": ...}}`), in Lago's order.
        A 404 whose code is `absent` (e.g. "customer_not_found") is an empty list; any other reply
        is a LagoReadError."""
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            status, data = self._get(path, {**(query or {}), "page": str(page), "per_page": str(PER_PAGE)})
            if status == 404 and absent is not None and isinstance(data, dict) and data.get("code") == absent:
                return []
            if status != 200 or not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise LagoReadError(f"Lago answered HTTP {status} to GET {path}: {str(data)[:200]}")
            rows += [row for row in data[key] if isinstance(row, dict)]
            meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
            next_page = meta.get("next_page") if isinstance(meta, dict) else None
            if not next_page or not data[key] or int(next_page) <= page:
                return rows
            page = int(next_page)

    def billable_metric_exists(self, code: str) -> bool:
        """Whether `code` is a billable metric in Lago (GET /billable_metrics/{code})."""
        status, data = self._get("/billable_metrics/" + urllib.parse.quote(code, safe=""))
        if status == 200:
            return True
        if status == 404 and isinstance(data, dict) and data.get("code") == "billable_metric_not_found":
            return False
        raise LagoReadError(f"Lago answered HTTP {status} to GET /billable_metrics/{code}: {str(data)[:200]}")

    def unknown_codes(self, codes: tuple[str, ...] | list[str]) -> list[str]:
        """The codes that are not billable metrics in Lago (events with them are never billed)."""
        return [code for code in codes if not self.billable_metric_exists(code)]

    def event(self, transaction_id: str) -> StoredEvent | None:
        """The stored event with this transaction_id, wherever it is dated (GET /events/{id}); None
        when Lago has none."""
        status, data = self._get("/events/" + urllib.parse.quote(transaction_id, safe=""))
        if status == 200 and isinstance(data, dict):
            return StoredEvent.from_api(data.get("event"))
        if status == 404 and isinstance(data, dict) and data.get("code") == "event_not_found":
            return None
        raise LagoReadError(f"Lago answered HTTP {status} to GET /events/{transaction_id}: {str(data)[:200]}")

    def pages(self, start_ms: int, end_ms: int, per_page: int = PER_PAGE) -> Iterator[tuple[list[StoredEvent], int]]:
        """Pages of GET /events with timestamp_from/to (both inclusive in Lago), newest first; each
        with Lago's total_count at the time of that page."""
        page = 1
        while True:
            query = {"timestamp_from": ms_to_iso(start_ms), "timestamp_to": ms_to_iso(end_ms),
                     "page": str(page), "per_page": str(per_page)}
            status, data = self._get("/events", query)
            if status != 200 or not isinstance(data, dict) or not isinstance(data.get("events"), list):
                raise LagoReadError(f"Lago answered HTTP {status} to GET /events: {str(data)[:200]}")
            meta: dict[str, Any] = data["meta"] if isinstance(data.get("meta"), dict) else {}
            yield [StoredEvent.from_api(e) for e in data["events"]], int(meta.get("total_count") or 0)
            next_page = meta.get("next_page")
            if not next_page or not data["events"]:
                return
            page = int(next_page)

    def events(self, start_ms: int, end_ms: int, attempts: int = 3) -> tuple[list[StoredEvent], list[str]]:
        """Every event Lago holds dated in [start_ms, end_ms] (all codes), and warnings.

        Pages shift when events arrive or go while we read (newest first), so rows seen twice are
        kept once and the listing is repeated, up to `attempts` times, until what was read adds up
        to Lago's own count; a window that keeps changing is returned with a warning.
        """
        warnings: list[str] = []
        for attempt in range(1, attempts + 1):
            seen: dict[tuple[str, str, str, int], StoredEvent] = {}
            total = 0
            for rows, total in self.pages(start_ms, end_ms):
                for event in rows:
                    seen.setdefault((event.subscription, event.transaction_id, event.code, event.timestamp_ms), event)
            if len(seen) == total:
                return list(seen.values()), warnings
            note = f"Lago's event list changed while it was read ({len(seen)} read, {total} counted)"
            if attempt == attempts:
                warnings.append(note + f"; gave up after {attempts} readings: the window may still be receiving events")
        return list(seen.values()), warnings
