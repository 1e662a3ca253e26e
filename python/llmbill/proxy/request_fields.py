"""The fields of an LLM call's body that speak to a LiteLLM-style proxy, not to the model: each one
honoured, refused with a 400 naming it, or without effect by design — never sent to a provider (a
provider refuses what it does not know, so a client written for LiteLLM would fail on them).

Honoured:
- `num_retries` (or `max_retries`, the SDK's name; `num_retries` wins): how many more times this call
  is sent after the provider refused it (429/5xx) or the connection was refused — in place of the
  deployment's `max_retries`, for every deployment and fallback the call reaches. An integer from 0 to
  MAX_RETRIES (10, as the config allows): each retry waits (routing.backoff), so a larger number only
  holds a connection longer. The rule of routing.py stands: never after the provider may have billed.
- `drop_params`: this call's `litellm_settings.drop_params` (a parameter its provider cannot take is
  left out rather than refused).
- `tags`, `metadata.tags`, `litellm_metadata.tags`: tags on the call's spend log (call_limits.call_tags);
  `metadata.user_id` names the customer (guards.customer_id); `enforced_params` may require metadata
  entries. Other metadata entries are for LiteLLM's loggers: llmbill keeps none of them.
- the fallback fields (fallback_request.py).

Refused (REFUSED: the reason is the 400's message): anything that would send the call elsewhere, price
it otherwise or answer it with something the provider did not serve — client-side credentials and
endpoints, `base_model`, `mock_response`, a stored prompt, guardrails, and per-call timeouts (a call
the proxy cuts short may still have been billed by the provider, and could not be billed to the caller).

No effect by design (NO_EFFECT): response caching (llmbill has no response cache: every call reaches
the provider and is billed as such) and LiteLLM's logging ids.

>>> options = read({"model": "m", "num_retries": 3, "tags": ["a"]})
>>> options.retries, sorted(options.body)
(3, ['model'])
>>> with applied(options):
...     retries(0)
3
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .fallback_rules import REQUEST_FIELDS

MAX_RETRIES = 10  # the most retries one call may ask for (and the config's own bound, routing.py)

HONOURED = frozenset({"num_retries", "max_retries", "drop_params", "tags", "metadata", "litellm_metadata",
                      *REQUEST_FIELDS})
_CREDENTIALS = ("the deployment's endpoint and credentials come from the proxy's config (LiteLLM, too, refuses "
                "client-side credentials unless allow_client_side_credentials is set)")
_TIMEOUT = ("per-call timeouts: a call the proxy cut short may still be billed by the provider and could not be "
            "billed to the caller; the deployment's litellm_params.timeout applies")
REFUSED: dict[str, str] = {
    "api_base": _CREDENTIALS, "base_url": _CREDENTIALS, "api_key": _CREDENTIALS, "api_version": _CREDENTIALS,
    "user_config": "a client-supplied model list and credentials: llmbill serves the deployments of its config",
    "base_model": "a call is priced by its deployment's config, never by what the caller says",
    "mock_response": "a mocked reply is not the provider's answer and llmbill bills only what a provider served; "
                     "configure a mock deployment (litellm_params.model: mock/...) instead",
    "prompt_id": "llmbill has no prompt management: the call would be sent without the stored prompt it names",
    "prompt_variables": "llmbill has no prompt management: the call would be sent without the stored prompt it names",
    "guardrails": "llmbill runs no guardrails: the call would be sent unchecked",
    "timeout": _TIMEOUT, "request_timeout": _TIMEOUT, "stream_timeout": _TIMEOUT,
}
NO_EFFECT: dict[str, str] = {
    "caching": "llmbill has no response cache: every call reaches the provider and is billed as such",
    "cache": "llmbill has no response cache: every call reaches the provider and is billed as such",
    "litellm_session_id": "a logging id for LiteLLM's loggers; the call is identified by x-litellm-call-id",
    "litellm_trace_id": "a logging id for LiteLLM's loggers; the call is identified by x-litellm-call-id",
}
PROXY_ONLY = frozenset({*HONOURED, *REFUSED, *NO_EFFECT})
# What no provider takes, left out of the body every route forwards. `metadata` stays: it is an
# Anthropic and Responses API field too (the chat route leaves it out: forward.provider_body); the
# fallback fields are read and left out by fallback_request.py.
STEERING = PROXY_ONLY - {"metadata"} - REQUEST_FIELDS


@dataclass(frozen=True)
class Options:
    body: dict[str, Any]  # the body without the steering fields (the fallback fields kept)
    retries: int | None = None  # None: the deployment's max_retries
    drop_params: bool | None = None  # None: litellm_settings.drop_params


def _unset(value: Any) -> bool:
    return value is None or value is False or value in ([], {}, "")


def _count(body: dict[str, Any], name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_RETRIES:
        raise bad_request(f"'{name}' must be an integer from 0 to {MAX_RETRIES}, got {v!r}", name)
    return v


def read(body: dict[str, Any]) -> Options:
    """The body's steering fields checked: a refused one with a value is a 400 naming it and why."""
    if not REFUSED.keys().isdisjoint(body):  # the common call names none: one set test, not a loop
        for name, why in REFUSED.items():
            if name in body and not _unset(body[name]):
                raise bad_request(f"'{name}' is not supported by llmbill ({why}): leave it out or send null", name)
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise bad_request("'tags' must be a list of strings", "tags")
    drop = body.get("drop_params")
    if drop is not None and not isinstance(drop, bool):
        raise bad_request("'drop_params' must be true or false", "drop_params")
    asked = _count(body, "num_retries")
    retries = asked if asked is not None else _count(body, "max_retries")
    if STEERING.isdisjoint(body):
        return Options(body, retries, drop)
    return Options({k: v for k, v in body.items() if k not in STEERING}, retries, drop)


_options: ContextVar[Options | None] = ContextVar("llmbill_call_options", default=None)


@contextmanager
def applied(options: Options) -> Iterator[None]:
    """The call's options for everything sent while it is served (its retries, its drop_params)."""
    token = _options.set(options)
    try:
        yield
    finally:
        _options.reset(token)


def apply(options: Options) -> Token[Options | None]:
    """applied() without a generator a call (fallbacks.serve): restore(the token) when served."""
    return _options.set(options)


def restore(token: Token[Options | None]) -> None:
    _options.reset(token)


def retries(deployment_default: int) -> int:
    """The retries of the call being served: its own num_retries, else the deployment's."""
    options = _options.get()
    return deployment_default if options is None or options.retries is None else options.retries


def drop_params(configured: bool) -> bool:
    options = _options.get()
    return configured if options is None or options.drop_params is None else options.drop_params
