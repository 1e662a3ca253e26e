"""Where a call's fields become its Lago event: the one spelling of a billed call's record, shared by
every path that bills — the proxy (`proxy/settle.py` adds ledger, spend log, webhook and metrics
around it) and the library (`llmbill.track`, `LagoLogger`).

>>> from llmbill.calls import BilledCall
>>> call = BilledCall.priced("gpt-4o-mini", {"usage": {"prompt_tokens": 10, "completion_tokens": 5}})
>>> event_fields(call)["cost"]
Decimal('0.0000045')
"""

from __future__ import annotations

from typing import Any

from ._native import core
from .calls import BilledCall


def event_fields(call: BilledCall) -> dict[str, Any]:
    """The keyword arguments of `Pipeline.submit` for this call (the exact cost breakdown when the
    call carries one: the binding reads its integer total without a Decimal round trip)."""
    return {
        "call_id": call.call_id,
        "timestamp_ms": call.timestamp_ms,
        "model": call.model,
        "usage": call.usage,
        "cost": call.cost_detail if call.cost_detail is not None else call.cost,
        "unpriced": call.unpriced,
        "key_alias": call.key_alias,
        "user_id": call.user_id,
        "team_id": call.team_id,
        "end_user_id": call.end_user_id,
        "billed_amount": call.billed_amount,  # None: not in the event (byte-identical to one without margins)
    }


def spool(pipeline: core.Pipeline, call: BilledCall) -> list[str]:
    """Appends the call's Lago event(s) to the durable spool before returning (raises core.Error when
    the spool cannot take it); the pipeline's sender thread delivers them."""
    return pipeline.submit(**event_fields(call))
