"""The spend webhook (`general_settings.alerting: ["webhook"]`, `WEBHOOK_URL`): one `spend_tracked`
event per customer call, and `soft_budget_crossed` / `budget_crossed` when a call's cost carries an
entity across a limit.

Off the request path: events go to a bounded in-memory queue, and a few sender tasks POST them with
retries and backoff; each POST carries `x-llmbill-event-id`, stable across retries, so a receiver can
deduplicate. A receiver that stays down loses events once the queue is full (counted): the webhook
informs, it does not bill — Lago's pipeline is the durable record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from .. import redact

log = logging.getLogger("llmbill.proxy")

QUEUE_SIZE = 10_000
SENDERS = 4
ATTEMPTS = 6  # 0.2 s, 0.4 s, ... 6.4 s between them: about 12 s before giving up


def _num(x: Decimal | None) -> float | None:
    return None if x is None else float(x)


def spend_tracked(*, cost: Decimal, total_spend: Decimal, max_budget: Decimal | None, token: str, customer: str,
                  user_id: str, team_id: str, user_email: str | None, key_alias: str | None) -> dict[str, Any]:
    return {"spend": _num(cost), "total_spend": _num(total_spend), "max_budget": _num(max_budget),
            "token": token or None, "customer_id": customer, "user_id": user_id or None, "team_id": team_id or None,
            "user_email": user_email, "key_alias": key_alias, "projected_exceeded_date": None,
            "projected_spend": None, "event": "spend_tracked", "event_group": "customer",
            "event_message": f"Customer spend tracked. Customer={customer}, spend={_num(cost)}"}


def crossed(*, event: str, group: str, ident: str, spend: Decimal, limit: Decimal, token: str, customer: str,
            user_id: str, team_id: str, user_email: str | None, key_alias: str | None) -> dict[str, Any]:
    what = "soft budget" if event == "soft_budget_crossed" else "budget"
    return {"spend": _num(spend), "max_budget": _num(limit), "token": token or None, "customer_id": customer or None,
            "user_id": user_id or None, "team_id": team_id or None, "user_email": user_email, "key_alias": key_alias,
            "projected_exceeded_date": None, "projected_spend": None, "event": event, "event_group": group,
            "event_message": f"{group.capitalize()}={ident} crossed its {what}: spend={_num(spend)}, "
                             f"limit={_num(limit)}"}


class Webhook:
    def __init__(self, url: str) -> None:
        self.url = url
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_SIZE)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def emit(self, payload: dict[str, Any]) -> None:
        """Queues an event; never blocks or raises into the call."""
        try:
            self.queue.put_nowait((uuid.uuid4().hex, orjson.dumps(payload)))
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(SENDERS)]

    async def stop(self, drain_seconds: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), drain_seconds)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._session is not None:
            await self._session.close()

    async def _sender(self) -> None:
        while True:
            event_id, body = await self.queue.get()
            try:
                await self._deliver(event_id, body)
            finally:
                self.queue.task_done()

    async def _deliver(self, event_id: str, body: bytes) -> None:
        assert self._session is not None
        headers = {"content-type": "application/json", "x-llmbill-event-id": event_id}
        for attempt in range(ATTEMPTS):
            try:
                async with self._session.post(self.url, data=body, headers=headers) as resp:
                    if resp.status < 300:
                        self.delivered += 1
                        return
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        break  # the receiver refuses it; a resend would be refused too
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2 * 2 ** attempt)
        self.failed += 1
        # Only the origin: chat webhooks carry their secret token in the URL's path.
        log.warning("webhook event %s not delivered to %s", event_id, redact.origin(self.url))
