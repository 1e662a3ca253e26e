"""`llmbill.track`: bill a call made directly to a provider, through `llmbill.callbacks`."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

from .callbacks import resolve_callbacks
from .calls import BilledCall, timestamp_ms_of
from .errors import UsageError
from .library_margin import module_rules, with_margin


def track(
    response: Any,
    *,
    model: str | None = None,
    user: str = "",
    user_id: str = "",
    team_id: str = "",
    key_alias: str = "",
    call_id: str | None = None,
    start_time: Any = None,
    fallback_cost: float | Decimal | None = None,
    provider: str = "",
) -> BilledCall | None:
    """Prices `response` (an OpenAI/Anthropic reply: object, dict or JSON) and hands it to every
    callback in `llmbill.callbacks`. `user` is the customer (OpenAI's `user` field). A failed call
    (an exception, or a reply carrying `error`) is not billed: returns None.

    With `llmbill.cost_margin_config` / `llmbill.cost_discount_config` set (as LiteLLM spells them),
    the call carries `billed_amount`, exact: what the customer pays. `provider` picks the entry
    (LiteLLM's `custom_llm_provider`); by default the model's prefix, else its price table entry's.

    >>> import llmbill
    >>> llmbill.callbacks = []
    >>> track({"model": "gpt-4o", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).cost
    Decimal('0.0000125')
    """
    if isinstance(response, BaseException):
        return None
    if isinstance(response, (str, bytes, bytearray)):
        try:
            response = json.loads(response)
        except ValueError:
            raise UsageError("track: the reply is not JSON") from None
    plain = response if isinstance(response, dict) else None
    if (plain.get("error") if plain is not None else getattr(response, "error", None)):
        return None  # a failed call is never billed
    name = model or (plain.get("model") if plain is not None else getattr(response, "model", None))
    if not isinstance(name, str) or not name:
        raise ValueError("track: the model is unknown; pass model=")
    call = BilledCall.priced(
        name,
        response,
        call_id=call_id,
        timestamp_ms=timestamp_ms_of(start_time),
        fallback_cost=fallback_cost,
        key_alias=key_alias,
        user_id=user_id,
        team_id=team_id,
        end_user_id=user,
        provider=provider,
    )
    call = with_margin(call, module_rules())
    # `llmbill.callbacks` is an attribute users set on the package: read it there at call time (a
    # lookup, not an import — the package imports this module).
    for callback in resolve_callbacks(getattr(sys.modules["llmbill"], "callbacks", [])):
        callback.bill(call)
    return call
