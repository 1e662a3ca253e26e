"""How calls are routed and retried, from LiteLLM's keys: every one honoured or refused at start.

- `litellm_settings.request_timeout` (or `router_settings.timeout`): a deployment's timeout when its
  `litellm_params.timeout` is unset. `litellm_params.stream_timeout`: the longest wait for a stream's next
  chunk (default: the timeout).
- `litellm_settings.num_retries` (or `router_settings.num_retries`), `litellm_params.max_retries`: how
  many more times a call is sent when the provider answers 429 or 5xx (it did not bill a refused call)
  or the connection is refused before a byte is written — never after the request may have reached the
  provider and failed on the way back, which it may have billed. Backoff 0.25 s doubling (at most 4 s),
  or the provider's Retry-After when it is shorter than 10 s.
- `litellm_params.rpm` / `tpm`: a deployment's own limits. A model with several deployments is
  load-balanced as LiteLLM's simple-shuffle does (random, weighted by `weight`, else rpm, else tpm) and a
  deployment over its rpm or tpm in the current minute is skipped; when all are, the call gets 429.
  Counted per process (documented; the entity limits are what Redis shares).
- `router_settings.routing_strategy`: `simple-shuffle` only.
- `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks`, `default_fallbacks` (either
  section) and `router_settings.max_fallbacks`: read by fallback_rules.py, followed by fallbacks.py
  once a call's deployment failed (after its retries) in a way the provider did not bill
  (failures.py) — after the model's other deployments, for a 429/5xx/refused connection. Each fallback is admitted as a call of its own — the caller's access to it, its
  upper bound against every budget and credit, its per-model limits — and the call is billed once,
  as the model that answered. The request body's `fallbacks` (and `context_window_fallbacks`,
  `content_policy_fallbacks`, `context_window_fallback_dict`, `disable_fallbacks`,
  `mock_testing_*fallbacks`) follow the same rules.

>>> parse_router({"litellm_settings": {"num_retries": 2}}).num_retries
2
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..billing import ConfigError
from .fallback_rules import KEYS as FALLBACK_KEYS
from .fallback_rules import FallbackRules, parse_rules

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
ROUTER_KEYS = {"routing_strategy", "num_retries", "timeout", *FALLBACK_KEYS}


@dataclass(frozen=True)
class RouterSettings:
    num_retries: int = 0
    request_timeout: float = 600.0
    fallbacks: FallbackRules = field(default_factory=FallbackRules)


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise ConfigError(f"{key}: expected an integer from 0 to 10, got {value!r}")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86_400:
        raise ConfigError(f"{key}: expected a number of seconds (0 < s ≤ 86400), got {value!r}")
    return float(value)


def parse_router(raw: Mapping[str, Any]) -> RouterSettings:
    """The routing keys of `litellm_settings` and `router_settings` (ConfigError names a bad or refused one)."""
    litellm = raw.get("litellm_settings") or {}
    router = raw.get("router_settings") or {}
    if not isinstance(router, dict):
        raise ConfigError(f"router_settings: expected a mapping, got {type(router).__name__}")
    for name in router:
        if name not in ROUTER_KEYS:
            raise ConfigError(f"router_settings.{name}: not supported by llmbill (supported: "
                              f"{', '.join(sorted(ROUTER_KEYS))})")
    strategy = router.get("routing_strategy", "simple-shuffle")
    if strategy != "simple-shuffle":
        raise ConfigError(f"router_settings.routing_strategy: only 'simple-shuffle' is supported, got {strategy!r}")
    retries = 0
    for section, values in (("router_settings", router), ("litellm_settings", litellm)):
        if values.get("num_retries") is not None:
            retries = _count(values["num_retries"], f"{section}.num_retries")
            break
    timeout = 600.0
    for key, value in (("litellm_settings.request_timeout", litellm.get("request_timeout")),
                       ("router_settings.timeout", router.get("timeout"))):
        if value is not None:
            timeout = _seconds(value, key)
            break
    return RouterSettings(retries, timeout, parse_rules(litellm, router))


def deployment_retries(params: Mapping[str, Any], key: str, default: int) -> int:
    return default if params.get("max_retries") is None else _count(params["max_retries"], f"{key}.max_retries")


def optional_seconds(params: Mapping[str, Any], name: str, key: str) -> float | None:
    return None if params.get(name) is None else _seconds(params[name], f"{key}.{name}")


def optional_limit(params: Mapping[str, Any], name: str, key: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}.{name}: expected a positive integer, got {value!r}")
    return value


def shuffle_order(weights: Sequence[float], rng: random.Random | None = None) -> list[int]:
    """Indexes in a weighted random order (simple-shuffle: each pick in proportion to its weight).

    >>> sorted(shuffle_order([1.0, 1.0, 1.0]))
    [0, 1, 2]
    """
    r = rng or random
    left = list(range(len(weights)))
    order: list[int] = []
    while left:
        total = sum(weights[i] for i in left)
        pick = r.uniform(0, total) if total > 0 else 0.0
        for i in left:
            pick -= weights[i]
            if pick <= 0 or i == left[-1]:
                order.append(i)
                left.remove(i)
                break
    return order


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before retry `attempt` (1-based): the provider's Retry-After when short, else doubling."""
    if retry_after:
        try:
            asked = float(retry_after)
            if 0 <= asked < 10:
                return asked
        except ValueError:
            pass
    return float(min(4.0, 0.25 * 2 ** (attempt - 1)))


def deployment_entity(d: Any) -> tuple[str, str]:
    """The limiter's name for one deployment's own rpm/tpm counters (per process)."""
    return "deployment", f"{d.model_name}#{id(d)}"
