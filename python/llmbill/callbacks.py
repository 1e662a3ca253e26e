"""Billing callbacks by name, the way LiteLLM's are: `llmbill.callbacks = ["lago"]`.

A callback is any object with `bill(call: BilledCall) -> None`; names map to factories here so more
sinks can be added by name (`register_callback("mysink", MySink)`). Instances are created once per
name and shared.

>>> from llmbill.callbacks import resolve_callbacks
>>> type(resolve_callbacks(["lago"])[0]).__name__
'LagoLogger'
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol, Union

from .calls import BilledCall
from .errors import Error


class BillingCallback(Protocol):
    def bill(self, call: BilledCall) -> None: ...


CallbackEntry = Union[str, BillingCallback]

_factories: dict[str, Callable[[], BillingCallback]] = {}
_instances: dict[str, BillingCallback] = {}
_lock = threading.Lock()


def register_callback(name: str, factory: Callable[[], BillingCallback]) -> None:
    with _lock:
        _factories[name] = factory
        _instances.pop(name, None)


def resolve_callbacks(entries: Sequence[CallbackEntry]) -> list[BillingCallback]:
    """Names → shared instances; objects pass through. An unknown name is an Error naming it."""
    out: list[BillingCallback] = []
    for entry in entries:
        if not isinstance(entry, str):
            out.append(entry)
            continue
        with _lock:
            instance = _instances.get(entry)
            if instance is None:
                factory = _factories.get(entry)
                if factory is None:
                    known = ", ".join(sorted(_factories)) or "none"
                    raise Error(f"callbacks: unknown callback {entry!r} (known: {known})")
                instance = _instances[entry] = factory()
        out.append(instance)
    return out


def _lago() -> BillingCallback:
    from .integrations.lago import LagoLogger

    return LagoLogger()


register_callback("lago", _lago)
