"""`LagoLogger`: bills each successful call in Lago through the C++ pipeline (spool → batches).

Shaped like LiteLLM's `CustomLogger` (same method names and signatures), so both work:

    llmbill.callbacks = ["lago"]                 # llmbill's own registry
    litellm.callbacks = [llmbill.LagoLogger()]   # inside a LiteLLM program

llmbill never imports litellm. When the program has already imported it, a LagoLogger is created as
a subclass of LiteLLM's CustomLogger too, because LiteLLM dispatches on isinstance.
Failed calls are never billed: the failure hooks only count.

Margins (library_margin.py): `LagoLogger(cost_margin_config=..., cost_discount_config=...)`, spelled
as LiteLLM spells them, beat `llmbill.cost_margin_config` / `cost_discount_config`; for a call
LiteLLM hands over, LiteLLM's own settings apply when neither is set. The event then carries the
exact `billed_amount` beside `response_cost` (the provider's cost).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from .. import billing, settle
from .._native import core
from ..calls import BilledCall, from_litellm
from ..library_margin import litellm_rules, module_rules, rules_of, with_margin
from ..margin import CostDiscountConfig, CostMarginConfig

_flavours: dict[type, type] = {}
_flavours_lock = threading.Lock()


def _litellm_flavour(cls: type) -> type:
    """cls, or a subclass of (cls, litellm's CustomLogger) when litellm is loaded."""
    module = sys.modules.get("litellm.integrations.custom_logger")
    base = getattr(module, "CustomLogger", None)
    if base is None or issubclass(cls, base):
        return cls
    with _flavours_lock:
        if cls not in _flavours:
            _flavours[cls] = type(cls.__name__, (cls, base), {"__module__": cls.__module__})
        return _flavours[cls]


class LagoLogger:
    """Sends one Lago event per successful call (per code), charged by LAGO_API_CHARGE_BY.

    >>> logger = LagoLogger()
    >>> callable(logger.log_success_event)
    True
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> LagoLogger:
        instance: LagoLogger = object.__new__(_litellm_flavour(cls))
        return instance

    def __init__(self, pipeline: core.Pipeline | None = None, *, cost_margin_config: CostMarginConfig | None = None,
                 cost_discount_config: CostDiscountConfig | None = None) -> None:
        self._pipeline = pipeline
        # Parsed now: a wrong value stops the program where the logger is made, naming it.
        self._rules = rules_of(cost_margin_config, cost_discount_config, "LagoLogger")
        self.failures_seen = 0
        # Read by LiteLLM on its CustomLogger instances.
        self.message_logging = True
        self.turn_off_message_logging = False

    @property
    def pipeline(self) -> core.Pipeline:
        return self._pipeline if self._pipeline is not None else billing.get_pipeline()

    def bill(self, call: BilledCall) -> None:
        """Spools the call's event(s). The logger's own margins re-price it; otherwise a call that
        carries no billed_amount yet gets the module settings' (`llmbill.track` applied them already)."""
        if self._rules is not None:
            call = with_margin(call, self._rules)
        elif call.billed_amount is None:
            call = with_margin(call, module_rules())
        settle.spool(self.pipeline, call)

    # LiteLLM's CustomLogger hooks -------------------------------------------------------------
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        pass

    def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        call = from_litellm(_provider_cost(kwargs), response_obj, start_time)
        self.bill(with_margin(call, self._rules or module_rules() or litellm_rules()))

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # submit() only appends to the spool (microseconds, GIL released): no need for a thread.
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.failures_seen += 1  # a failed call is never billed

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)


def _provider_cost(kwargs: Any) -> Any:
    """LiteLLM's kwargs with `response_cost` (used only for a model llmbill cannot price) set back to
    the provider's cost: LiteLLM folds its discount and margin into it, and llmbill applies them once,
    itself, into billed_amount."""
    slo = kwargs.get("standard_logging_object") if isinstance(kwargs, Mapping) else None
    breakdown = slo.get("cost_breakdown") if isinstance(slo, Mapping) else None
    original = breakdown.get("original_cost") if isinstance(breakdown, Mapping) else None
    if isinstance(original, (int, float)) and not isinstance(original, bool):
        return {**kwargs, "response_cost": original}
    return kwargs
