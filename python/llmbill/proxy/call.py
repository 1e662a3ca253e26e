"""One LLM call in flight through the proxy: who calls, which deployment, for which customer, when
it started, and what the guards reserved for it. Routes make it; settle.py bills it."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from .. import redact
from .._native import core
from .auth import Principal
from .deployments import Deployment
from .ids import new_id

if TYPE_CHECKING:
    from .guards import Admission
    from .state import ProxyState

CALL_TYPES = {"chat": "chat_completion", "completion": "completion", "embedding": "embedding"}


@functools.lru_cache(maxsize=1024)
def _public_base(api_base: str) -> str:
    """The deployment's base as clients may see it (no password or key in it); computed once per base."""
    return redact.url(api_base) if api_base else "mock"


@functools.lru_cache(maxsize=1024)
def _public_base_bytes(api_base: str) -> bytes:
    return _public_base(api_base).encode()


class Call:
    def __init__(self, state: ProxyState, principal: Principal, route: str, model: str, d: Deployment,
                 customer: str, started: float, admission: Admission, call_type: str | None = None) -> None:
        self.state, self.principal, self.route, self.model, self.d = state, principal, route, model, d
        self.customer = customer
        self.admission = admission
        self.started = started  # perf_counter at arrival
        self.start_wall = datetime.now(timezone.utc)
        # The Lago event's transaction_id, unique across processes (ids.py): the id the admission
        # already named its hold with, when it has one (one id made a call, not two).
        self.call_id = admission.call_id or new_id()
        self.upstream_seconds = 0.0
        self.price: core.ModelPrice | None = d.price  # the deployment's; an Azure call without base_model is priced by its reply
        self._call_type = call_type  # the spend log's call_type when the route is not the chat shape
        # The reply's own `id` (chatcmpl-…, msg_…, resp_…), kept with the spend log row so that
        # /spend/logs?request_id= finds a call by what the client saw, as LiteLLM's does.
        self.response_id = ""

    def fallback(self, model: str, d: Deployment, admission: Admission) -> Call:
        """The same client call sent on to a fallback model (fallbacks.py): its own deployment, price
        and admission; the same call id, caller, customer and start time (its overhead counts from
        now: the failed attempt's wait was the provider's, not the proxy's)."""
        call = Call(self.state, self.principal, self.route, model, d, self.customer, time.perf_counter(), admission,
                    self._call_type)
        call.call_id, call.start_wall = self.call_id, self.start_wall
        return call

    def note_reply(self, reply: Mapping[str, Any]) -> None:
        """Remembers the id of a reply object, or of a stream event's (Anthropic's message_start
        carries it in `message`, the Responses API's response.created in `response`)."""
        if self.response_id:
            return
        for obj in (reply, reply.get("message"), reply.get("response")):
            if isinstance(obj, Mapping) and isinstance(obj.get("id"), str) and obj["id"]:
                self.response_id = obj["id"]
                return

    def note_event(self, event: bytes) -> None:
        """note_reply for one SSE event (its `data:` line); a no-op once the id is known."""
        if self.response_id:
            return
        for line in event.splitlines():
            if line.startswith(b"data:") and b'"id"' in line:
                try:
                    data = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    return
                if isinstance(data, dict):
                    self.note_reply(data)
                return

    @property
    def call_type(self) -> str:
        return self._call_type or CALL_TYPES.get(self.route, self.route)

    def reply_headers(self, cost: Decimal | None,
                      first: Sequence[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
        """The reply's own headers after `first`, as LiteLLM's proxy names them: the call id, the
        proxy's overhead, the deployment's base (no credentials in it) and, once billed, the cost."""
        overhead = (time.perf_counter() - self.started - self.upstream_seconds) * 1000
        pairs = [*first, (b"x-litellm-call-id", self.call_id.encode()),
                 (b"x-litellm-overhead-duration-ms", b"%.3f" % overhead),
                 (b"x-litellm-model-api-base", _public_base_bytes(self.d.api_base))]
        if cost is not None:
            pairs.append((b"x-litellm-response-cost", format(cost, "f").encode() if cost else b"0"))
        return pairs
