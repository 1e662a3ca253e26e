"""Fault injection for the fake Lago: what a sender must survive on the way to a real Lago.

Armed faults queue in call order and are consumed one per event-ingestion request (POST
/api/v1/events and /api/v1/events/batch), so a test can arm them and still set up billing.
`down` and `delay_seconds` (on FakeLago) apply to every API request.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus

from .lago_store import Json, validation_failed


def status_body(status: int) -> Json:
    """The body Lago gives with an HTTP status, for injected replies."""
    bodies: dict[int, Json] = {
        400: {"status": 400, "error": "BadRequest: injected by fake Lago"},
        401: {"status": 401, "error": "Unauthorized"},
        403: {"status": 403, "error": "Forbidden", "code": "write_action_not_allowed_for_event"},
        404: {"status": 404, "error": "Not Found", "code": "resource_not_found"},
        422: validation_failed({"events": ["injected_by_fake_lago"]})[1],
        429: {"status": 429, "error": "Too Many Requests"},
    }
    return bodies.get(status, {"status": status, "error": HTTPStatus(status).phrase})


@dataclass
class Fault:
    """One armed fault. `respond`: answer instead of Lago, store nothing. `commit_then_fail`: store
    as usual, then answer `status` (or drop). `drop`: close without a reply, store nothing."""

    kind: str
    status: int = 500
    body: Json | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    def reply(self) -> tuple[int, Json, dict[str, str]]:
        return self.status, self.body or status_body(self.status), self.headers

    def describe(self) -> str:
        return f"{self.kind} {self.status}" if not self.drop else f"{self.kind} drop"


class FaultInjection:
    """The fault-arming half of FakeLago (a mixin; thread-safe)."""

    def __init__(self) -> None:
        self._fault_lock = threading.Lock()
        self._faults: deque[Fault] = deque()

    def _arm(self, n: int, kind: str, status: int = 500, body: Json | None = None,
             headers: dict[str, str] | None = None, drop: bool = False) -> None:
        if n < 0 or not 100 <= status <= 599:
            raise ValueError(f"bad fault: n={n}, status={status}")
        with self._fault_lock:
            self._faults.extend(Fault(kind, status, body, dict(headers or {}), drop) for _ in range(n))

    def respond_next(self, n: int = 1, status: int = 500, body: Json | None = None,
                     headers: dict[str, str] | None = None) -> None:
        """The next n ingestion requests get `status` (any 4xx or 5xx) with Lago's body for it, or
        `body`; nothing is stored. E.g. respond_next(1, 401) for a revoked key, 503 for a proxy."""
        self._arm(n, "respond", status, body, headers)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next n ingestion requests answer `status` (500 by default) and store nothing."""
        self._arm(n, "respond", status)

    def rate_limit_next(self, n: int = 1, reset_seconds: int = 1, limit: int = 500,
                        retry_after: bool = True) -> None:
        """The next n ingestion requests get Lago Cloud's 429 with X-RateLimit-Limit, -Remaining
        (0) and -Reset (seconds), and Retry-After unless `retry_after` is False."""
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": str(reset_seconds)}
        if retry_after:
            headers["Retry-After"] = str(reset_seconds)
        self._arm(n, "respond", 429, None, headers)

    def commit_then_fail_next(self, n: int = 1, status: int = 500, drop: bool = False) -> None:
        """Store the next n ingestion requests' events as usual, then answer `status` or, with
        `drop`, close the connection without a reply: the sender resends, Lago must dedupe."""
        self._arm(n, "commit_then_fail", status, drop=drop)

    def drop_next(self, n: int = 1) -> None:
        """Close the next n ingestion connections without a reply and without storing."""
        self._arm(n, "drop", drop=True)

    def pending_faults(self) -> list[str]:
        with self._fault_lock:
            return [fault.describe() for fault in self._faults]

    def _clear_armed(self) -> None:
        with self._fault_lock:
            self._faults.clear()

    def _take_fault(self) -> Fault | None:
        with self._fault_lock:
            return self._faults.popleft() if self._faults else None
