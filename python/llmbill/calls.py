"""One billed call, as the callbacks see it, and how it is read out of LiteLLM's callback arguments.

>>> call = BilledCall.priced("gpt-4o-mini", {"usage": {"prompt_tokens": 2000, "completion_tokens": 1000}},
...                         end_user_id="cust-1")
>>> str(call.cost)
'0.0009'
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ._native import core
from .errors import UnknownModelError
from .pricing import default_prices


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def call_start_us(start: datetime) -> int:
    """A call's start as Unix microseconds (the spend log's start time, exactly)."""
    if start.tzinfo is None:
        raise ValueError(f"a call's start time must be timezone-aware: {start!r}")
    return (start - EPOCH) // _US


def call_timestamp_ms(start: datetime) -> int:
    """The Lago timestamp (Unix ms, floored) of a call that started at `start`: integer arithmetic,
    so the spend log's start time gives back exactly the timestamp its event was sent with."""
    return call_start_us(start) // 1000


@dataclass(frozen=True)
class BilledCall:
    """A successful call, priced: what every billing callback receives."""

    call_id: str
    timestamp_ms: int
    model: str
    usage: core.Usage
    cost: Decimal
    unpriced: bool = False
    key_alias: str = ""
    user_id: str = ""
    team_id: str = ""
    end_user_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    cost_detail: core.Cost | None = None  # the itemised cost when priced here (cost == cost_detail.total)
    # What the customer is billed when a discount or margin applies (margin.py), exact to 1e-19 USD;
    # None: billed at cost (and the event carries no billed_amount).
    billed_amount: Decimal | None = None
    provider: str = ""  # LiteLLM's custom_llm_provider when known: which cost_margin_config entry applies

    @property
    def billed(self) -> Decimal:
        """What the customer pays for this call: billed_amount when a margin applies, else cost.
        Spend, budgets (and prepaid credits) count this."""
        return self.cost if self.billed_amount is None else self.billed_amount

    @classmethod
    def priced(
        cls,
        model: str,
        response: Any,
        *,
        call_id: str | None = None,
        timestamp_ms: int | None = None,
        fallback_cost: float | Decimal | None = None,
        table: core.PriceTable | None = None,
        key_alias: str = "",
        user_id: str = "",
        team_id: str = "",
        end_user_id: str = "",
        provider: str = "",
    ) -> BilledCall:
        """Reads the usage out of `response`, prices it exactly; an unknown model uses
        `fallback_cost` when given, else is billed by its tokens with cost 0 and flagged unpriced."""
        usage = usage_of(response)
        unpriced = False
        detail: core.Cost | None = None
        try:
            detail = (table or default_prices()).cost(model, usage)
            cost = detail.total
        except UnknownModelError:
            if fallback_cost is None:
                cost, unpriced = Decimal(0), True
            else:
                cost = Decimal(repr(fallback_cost)) if isinstance(fallback_cost, float) else Decimal(fallback_cost)
        return cls(
            call_id=call_id or _response_id(response) or uuid.uuid4().hex,
            timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            model=model,
            usage=usage,
            cost=cost,
            unpriced=unpriced,
            key_alias=key_alias,
            user_id=user_id,
            team_id=team_id,
            end_user_id=end_user_id,
            cost_detail=detail,
            provider=provider,
        )


_new = object.__new__


def billed_call(*, call_id: str, timestamp_ms: int, model: str, usage: core.Usage, cost: Decimal,
                cost_detail: core.Cost | None, unpriced: bool, key_alias: str, user_id: str, team_id: str,
                end_user_id: str, billed_amount: Decimal | None, provider: str = "") -> BilledCall:
    """BilledCall(...) on the proxy's request path: the same frozen record, its fields set at once
    instead of one `object.__setattr__` each (a frozen dataclass's __init__): 1.4 → 0.4 µs a call,
    about 2.5x that at concurrency 1, where the request path runs on cold caches (bench/README.md).
    Every field is given (no defaults to run, no __post_init__ to skip): test_calls.py holds this to
    the dataclass's own fields."""
    call = _new(BilledCall)
    call.__dict__.update(call_id=call_id, timestamp_ms=timestamp_ms, model=model, usage=usage, cost=cost,
                         unpriced=unpriced, key_alias=key_alias, user_id=user_id, team_id=team_id,
                         end_user_id=end_user_id, extra={}, cost_detail=cost_detail, billed_amount=billed_amount,
                         provider=provider)
    return call


def as_plain(value: Any) -> Any:
    """A LiteLLM/OpenAI response object (pydantic model, dict-like) as plain dicts and lists."""
    if isinstance(value, (dict, list, str, bytes, int, float, bool)) or value is None:
        return value
    dump = getattr(value, "model_dump", None) or getattr(value, "dict", None)
    if callable(dump):
        return dump()
    if isinstance(value, Mapping):
        return dict(value)
    return value


def usage_of(response: Any) -> core.Usage:
    if isinstance(response, core.Usage):
        return response
    return core.Usage.from_response(_plain_deep(as_plain(response)))


def _plain_deep(value: Any) -> Any:
    value = as_plain(value)
    if isinstance(value, dict):
        return {str(k): _plain_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_deep(v) for v in value]
    return value


def _response_id(response: Any) -> str:
    rid = response.get("id") if isinstance(response, Mapping) else getattr(response, "id", None)
    return rid if isinstance(rid, str) else ""


def timestamp_ms_of(moment: Any) -> int:
    """datetime, Unix seconds, or None (now) → Unix milliseconds."""
    if isinstance(moment, datetime):
        return int(moment.timestamp() * 1000)
    if isinstance(moment, (int, float)):
        return int(moment * 1000)
    return int(time.time() * 1000)


def _first(*values: Any) -> str:
    for v in values:
        if isinstance(v, str) and v:
            return v
    return ""


def from_litellm(kwargs: Mapping[str, Any], response_obj: Any, start_time: Any) -> BilledCall:
    """A BilledCall from the arguments LiteLLM passes to CustomLogger.log_success_event."""
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata") or {}
    body = (params.get("proxy_server_request") or {}).get("body") or {}
    optional = kwargs.get("optional_params") or {}
    slo = kwargs.get("standard_logging_object") or {}
    model = _first(kwargs.get("model"), slo.get("model"))
    provider = _first(kwargs.get("custom_llm_provider"), params.get("custom_llm_provider"))
    table = default_prices()
    if model not in table and provider and f"{provider}/{model}" in table:
        model = f"{provider}/{model}"
    return BilledCall.priced(
        model,
        response_obj,
        call_id=_first(kwargs.get("litellm_call_id"), slo.get("id")) or None,
        timestamp_ms=timestamp_ms_of(start_time),
        fallback_cost=kwargs.get("response_cost"),
        table=table,
        key_alias=_first(metadata.get("user_api_key_alias")),
        user_id=_first(metadata.get("user_api_key_user_id")),
        team_id=_first(metadata.get("user_api_key_team_id")),
        end_user_id=_first(
            body.get("user"),
            slo.get("end_user"),
            metadata.get("user_api_key_end_user_id"),
            kwargs.get("user"),
            optional.get("user"),
        ),
        provider=provider,
    )
