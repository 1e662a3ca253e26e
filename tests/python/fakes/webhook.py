"""A webhook receiver for the spend webhook tests: records every POST; can fail the next ones.

    with WebhookReceiver() as hook:       # hook.url
        hook.fail_next(2)                 # answer 500 twice (the sender must retry)
        hook.wait_for(3)                  # bodies of the first 3 deliveries
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .http_server import Answer, BackgroundServer, RecordedRequest


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[RecordedRequest] = []
        self._fail = 0
        self._lock = threading.Condition()
        self._server = BackgroundServer(self._app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/hook"

    def _app(self, request: RecordedRequest) -> Answer | None:
        with self._lock:
            if self._fail:
                self._fail -= 1
                request.status = 500
                return 500, {"error": "try again"}, {}
            self.received.append(request)
            self._lock.notify_all()
        return 200, {"ok": True}, {}

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._fail += n

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} webhook deliveries, expected {count}")
                self._lock.wait(left)
            return [r.json for r in self.received]

    def __enter__(self) -> WebhookReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
