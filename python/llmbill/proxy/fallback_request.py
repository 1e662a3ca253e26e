"""What a request body says about fallbacks, as LiteLLM's proxy reads it (checked; a bad shape is a
400 naming the field, never a field silently dropped):

- `fallbacks`: `["gpt-4", ...]`, or `[{"model": "gpt-4", "messages": [...], ...}]` (a fallback with
  parameters of its own), or the config's shape `[{"<model>": ["gpt-4", ...]}]`. It replaces the
  config's general list (and default_fallbacks) for this call.
- `context_window_fallbacks`, `content_policy_fallbacks`: the config's shape (or a list of names);
  `context_window_fallback_dict: {"<model>": "<bigger model>"}` (the SDK's form).
- `disable_fallbacks: true` (also in the key's metadata): no fallback for this call.
- `mock_testing_fallbacks` / `mock_testing_context_window_fallbacks` (`…_context_fallbacks`) /
  `mock_testing_content_policy_fallbacks: true`: the model is not called; it fails as if the provider
  had refused it that way, so an operator can see the fallbacks work.

A fallback's own parameters may not change who is billed or how the reply is shaped (`user`,
`metadata`, `stream`, ...): the call was admitted for that customer, with those tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..billing import ConfigError
from .errors import ProxyError, bad_request
from .fallback_rules import (CONTENT_POLICY, CONTEXT_WINDOW, GENERAL, LISTS, MAX_NAMES, REQUEST_FIELDS,
                             parse_lists)
from .ids import check_id
from .request_fields import PROXY_ONLY

Fallback = tuple[str, Mapping[str, Any]]  # a model name, and the body fields it is sent with instead
# Fields a fallback's own parameters may not set: the caller, the customer and tags the call was
# admitted and is billed for, and the reply's shape the client is waiting for.
FIXED = frozenset({"model", "user", "metadata", "litellm_metadata", "tags", "stream", *REQUEST_FIELDS})
MOCKS = {"mock_testing_fallbacks": GENERAL, "mock_testing_context_window_fallbacks": CONTEXT_WINDOW,
         "mock_testing_context_fallbacks": CONTEXT_WINDOW, "mock_testing_content_policy_fallbacks": CONTENT_POLICY}


@dataclass(frozen=True)
class Asked:
    body: dict[str, Any]  # the body without the fallback fields: what the model is sent
    by_kind: Mapping[str, Mapping[str, tuple[Fallback, ...]]] = field(default_factory=dict)  # the request's own lists
    disabled: bool = False
    mock: str | None = None  # the failure kind a mock_testing field asks for

    def lists(self, kind: str) -> Mapping[str, tuple[Fallback, ...]] | None:
        return self.by_kind.get(kind)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{where}' must be a model name (a non-empty string)", where.split("[")[0])
    return check_id(value, where.split("[")[0])


def _from_config_shape(value: list[Any], name: str) -> dict[str, tuple[Fallback, ...]]:
    try:
        lists = parse_lists(value, name)
    except ConfigError as exc:
        raise bad_request(str(exc), name) from None
    return {model: tuple((_name(n, name), {}) for n in names) for model, names in lists.items()}


def _general(value: Any, validate: Callable[[dict[str, Any]], object],
             body: dict[str, Any]) -> dict[str, tuple[Fallback, ...]]:
    """`fallbacks`: names, names with parameters, or the config's shape."""
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise bad_request(f"'fallbacks' must be a list of at most {MAX_NAMES} model names", "fallbacks")
    if all(isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v.values())), list) for v in value) and value:
        return _from_config_shape(value, "fallbacks")
    out: list[Fallback] = []
    for i, item in enumerate(value):
        where = f"fallbacks[{i}]"
        if isinstance(item, str):
            out.append((_name(item, where), {}))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("model"), str):
            raise bad_request(f"'{where}' must be a model name, or an object with 'model' and its own "
                              "parameters", "fallbacks")
        fixed = sorted(k for k in item if (k in FIXED or k in PROXY_ONLY) and k != "model")
        if fixed:
            raise bad_request(f"'{where}' may not set {', '.join(fixed)}: a fallback is billed to the caller, "
                              "customer and tags the call was admitted for, answers in the same shape, and is "
                              "sent as the call's own proxy fields say", "fallbacks")
        overrides = {k: v for k, v in item.items() if k != "model"}
        try:
            validate({**body, **overrides})
        except ProxyError as exc:
            raise bad_request(f"'{where}': {exc.message}", "fallbacks") from None
        out.append((_name(item["model"], where), overrides))
    return {"*": tuple(out)}


def _specific(value: Any, name: str) -> dict[str, tuple[Fallback, ...]]:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > MAX_NAMES:
            raise bad_request(f"'{name}' lists more than {MAX_NAMES} models", name)
        return {"*": tuple((_name(v, f"{name}[{i}]"), {}) for i, v in enumerate(value))}
    if not isinstance(value, list):
        raise bad_request(f"'{name}' must be a list like [{{\"gpt-4\": [\"gpt-4-32k\"]}}]", name)
    return _from_config_shape(value, name)


def _window_dict(value: Any) -> dict[str, tuple[Fallback, ...]]:
    name = "context_window_fallback_dict"
    if not isinstance(value, dict) or len(value) > MAX_NAMES:
        raise bad_request(f"'{name}' must be an object mapping a model to its larger one", name)
    out: dict[str, tuple[Fallback, ...]] = {}
    for model, bigger in value.items():
        out[_name(model, name)] = ((_name(bigger, name), {}),)
    return out


def read(body: dict[str, Any], key: Mapping[str, Any] | None,
         validate: Callable[[dict[str, Any]], object]) -> Asked:
    """The request's fallback fields, checked, and the body without them."""
    if REQUEST_FIELDS.isdisjoint(body):
        return Asked(body, disabled=_key_disables(key))
    clean = {k: v for k, v in body.items() if k not in REQUEST_FIELDS}
    by_kind: dict[str, Mapping[str, tuple[Fallback, ...]]] = {}
    if body.get("fallbacks") is not None:
        by_kind[GENERAL] = _general(body["fallbacks"], validate, clean)
    for name, kind in LISTS.items():
        if kind != GENERAL and body.get(name) is not None:
            by_kind[kind] = _specific(body[name], name)
    if body.get("context_window_fallback_dict") is not None:
        by_kind[CONTEXT_WINDOW] = {**_window_dict(body["context_window_fallback_dict"]),
                                   **by_kind.get(CONTEXT_WINDOW, {})}
    disabled = body.get("disable_fallbacks", False)
    if not isinstance(disabled, bool):
        raise bad_request("'disable_fallbacks' must be true or false", "disable_fallbacks")
    mock = None
    for name, kind in MOCKS.items():
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise bad_request(f"'{name}' must be true or false", name)
        if body.get(name):
            mock = mock or kind
    return Asked(clean, by_kind, disabled or _key_disables(key), mock)


def _key_disables(key: Mapping[str, Any] | None) -> bool:
    meta = (key or {}).get("metadata")
    return isinstance(meta, dict) and meta.get("disable_fallbacks") is True
