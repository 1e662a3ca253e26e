"""LiteLLM's fallback lists, read from the config (either `litellm_settings` or `router_settings`,
as LiteLLM reads them; set in both → refused, one would silently lose):

- `fallbacks: [{"gpt-4": ["gpt-3.5-turbo", ...]}, ...]`: the models a call falls back to, in order,
  when its model failed with a retryable error (failures.GENERAL); `"*"` as the model: any model
  without a list of its own.
- `context_window_fallbacks`, `content_policy_fallbacks`: the same shape, for a prompt too long for
  the model and for a content-filter refusal. With neither list configured (nor asked by the
  request) such a failure goes to the general list, as LiteLLM's router does.
- `default_fallbacks: ["claude-opus", ...]`: the general list of every model without its own.
- `router_settings.max_fallbacks` (LiteLLM's default 5): the most fallbacks one call tries.

Every name must be a `model_name` of `model_list` (any name, with a `"*"` deployment): a typo would
otherwise surface only when the primary fails, in production. What a call may actually reach is
decided per call (fallbacks.py: the caller's access, prices under budgets, the route).

>>> parse_rules({"fallbacks": [{"a": ["b"]}]}, {}).chain(GENERAL, "a")
('b',)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..billing import ConfigError

GENERAL, CONTEXT_WINDOW, CONTENT_POLICY = "general", "context_window", "content_policy"
LISTS = {"fallbacks": GENERAL, "context_window_fallbacks": CONTEXT_WINDOW,
         "content_policy_fallbacks": CONTENT_POLICY}
KEYS = (*LISTS, "default_fallbacks", "max_fallbacks")
DEFAULT_MAX_FALLBACKS = 5  # LiteLLM's router default
MAX_NAMES = 64  # names in one list: far more than any sane chain, and a bound on a request's work
# What a request body may say about fallbacks (fallbacks.py reads them; never sent to a provider).
REQUEST_FIELDS = frozenset({*LISTS, "context_window_fallback_dict", "disable_fallbacks", "mock_testing_fallbacks",
                            "mock_testing_context_window_fallbacks", "mock_testing_context_fallbacks",
                            "mock_testing_content_policy_fallbacks"})

Lists = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class FallbackRules:
    by_kind: Mapping[str, Lists] = field(default_factory=dict)  # kind → model ("*" too) → fallbacks
    default: tuple[str, ...] = ()
    max_fallbacks: int = DEFAULT_MAX_FALLBACKS
    sources: Mapping[str, str] = field(default_factory=dict)  # kind or "default" → the config key, for errors

    def has(self, kind: str) -> bool:
        return bool(self.by_kind.get(kind))

    def chain(self, kind: str, model: str) -> tuple[str, ...]:
        """`model`'s fallbacks for a failure of `kind`: its own list, else the "*" list, else (general
        failures) default_fallbacks."""
        lists = self.by_kind.get(kind) or {}
        found = lists.get(model, lists.get("*"))
        if found is None and kind == GENERAL:
            return self.default
        return found or ()


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of model names, got {type(value).__name__}")
    if len(value) > MAX_NAMES:
        raise ConfigError(f"{where}: at most {MAX_NAMES} models, got {len(value)}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}[{i}]: expected a model name (a non-empty string), got {name!r}")
    return tuple(dict.fromkeys(value))


def parse_lists(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    """`[{"<model>": ["<fallback>", ...]}, ...]` → {model: fallbacks}; a bad shape is a ConfigError naming it."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ConfigError(f'{where}: expected a list like [{{"gpt-4": ["gpt-3.5-turbo"]}}], '
                          f"got {type(value).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not item:
            raise ConfigError(f'{where}[{i}]: expected a mapping of a model to its fallbacks, like '
                              f'{{"gpt-4": ["gpt-3.5-turbo"]}}, got {item!r}'[:300])
        for model, names in item.items():
            if not isinstance(model, str) or not model.strip():
                raise ConfigError(f"{where}[{i}]: a model name must be a non-empty string, got {model!r}")
            if model in out:
                raise ConfigError(f"{where}[{i}].{model}: listed twice (the first list would win)")
            fallbacks = _names(names, f"{where}[{i}].{model}")
            if model in fallbacks:
                raise ConfigError(f"{where}[{i}].{model}: lists the model itself as its fallback")
            out[model] = fallbacks
    return out


def _one(litellm: Mapping[str, Any], router: Mapping[str, Any], key: str) -> tuple[Any, str]:
    """A key's value and where it is set; set differently in both sections → ConfigError."""
    a, b = litellm.get(key), router.get(key)
    if a is not None and b is not None and a != b:
        raise ConfigError(f"router_settings.{key}: also set, differently, in litellm_settings.{key}; keep one")
    return (b, f"router_settings.{key}") if b is not None else (a, f"litellm_settings.{key}")


def parse_rules(litellm: Mapping[str, Any], router: Mapping[str, Any]) -> FallbackRules:
    by_kind: dict[str, Lists] = {}
    sources: dict[str, str] = {}
    for key, kind in LISTS.items():
        value, where = _one(litellm, router, key)
        lists = parse_lists(value, where)
        if lists:
            by_kind[kind], sources[kind] = lists, where
    value, where = _one(litellm, router, "default_fallbacks")
    default = () if value is None else _names(value, where)
    if default:
        sources["default"] = where
    most, where = _one(litellm, router, "max_fallbacks")
    if most is None:
        most = DEFAULT_MAX_FALLBACKS
    elif isinstance(most, bool) or not isinstance(most, int) or not 0 <= most <= MAX_NAMES:
        raise ConfigError(f"{where}: expected an integer from 0 to {MAX_NAMES}, got {most!r}")
    return FallbackRules(by_kind, default, most, sources)


def check_names(rules: FallbackRules, model_names: Sequence[str]) -> FallbackRules:
    """Every model a list names (and every model it is for) is served here; else a ConfigError
    naming the key. A `"*"` deployment serves any name, so then anything goes."""
    served = set(model_names)
    if "*" in served:
        return rules
    for kind, lists in rules.by_kind.items():
        where = rules.sources[kind]
        for model, names in lists.items():
            if model != "*" and model not in served:
                raise ConfigError(f"{where}: {model!r} is not a model_name of model_list")
            for name in names:
                if name not in served:
                    raise ConfigError(f"{where}.{model}: fallback {name!r} is not a model_name of model_list "
                                      "(fallbacks name model groups; a model_info.id is not supported)")
    for name in rules.default:
        if name not in served:
            raise ConfigError(f"{rules.sources['default']}: {name!r} is not a model_name of model_list")
    return rules
