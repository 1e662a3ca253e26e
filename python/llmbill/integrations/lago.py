"""`LagoLogger`: bills each successful call in Lago through the C++ pipeline (spool → batches).

Shaped like LiteLLM's `CustomLogger` (same method names and signatures), so both work:

    llmbill.callbacks = ["lago"]                 # llmbill's own registry
    litellm.callbacks = [llmbill.LagoLogger()]   # inside a LiteLLM program

llmbill never imports litellm. When the program has already imported it, a LagoLogger is created as
a subclass of LiteLLM's CustomLogger too, because LiteLLM dispatches on isinstance.
Failed calls are never billed: the failure hooks only count.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .. import billing, settle
from .._native import core
from ..calls import BilledCall, from_litellm

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

    def __init__(self, pipeline: core.Pipeline | None = None) -> None:
        self._pipeline = pipeline
        self.failures_seen = 0
        # Read by LiteLLM on its CustomLogger instances.
        self.message_logging = True
        self.turn_off_message_logging = False

    @property
    def pipeline(self) -> core.Pipeline:
        return self._pipeline if self._pipeline is not None else billing.get_pipeline()

    def bill(self, call: BilledCall) -> None:
        settle.spool(self.pipeline, call)

    # LiteLLM's CustomLogger hooks -------------------------------------------------------------
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        pass

    def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.bill(from_litellm(kwargs, response_obj, start_time))

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # submit() only appends to the spool (microseconds, GIL released): no need for a thread.
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.failures_seen += 1  # a failed call is never billed

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)
