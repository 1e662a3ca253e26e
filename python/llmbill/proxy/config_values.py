"""Reading one config value: its type checked with an error that names the key, an `os.environ/NAME`
reference resolved, a list of strings, a section's unknown keys noted. Every section's parser
(deployments, general_settings, litellm_settings) reads through these, so a mistake reads the same
wherever it is made.

>>> expect(3, int, "general_settings.cache_max_entries")
3
>>> try:
...     expect("3", int, "general_settings.cache_max_entries")
... except ConfigError as exc:
...     print(exc)
general_settings.cache_max_entries: expected an integer, got str '3'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..billing import ConfigError

SECRET_KEYS = ("master_key", "api_key", "database_url")  # values config errors never echo


def _type_name(value: Any) -> str:
    return type(value).__name__ if value is not None else "null"


def _names(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    words = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a mapping", bool: "true/false"}
    return " or ".join(words.get(t, t.__name__) for t in ts)


def expect(value: Any, types: type | tuple[type, ...], key: str) -> Any:
    """`value` when it is of `types` (a bool is not an int here); else ConfigError naming `key`."""
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{key}: expected {_names(types)}, got bool")
    if not isinstance(value, types):
        shown = "" if key.lower().endswith(SECRET_KEYS) else f" {value!r}"  # a mistyped key is still a key
        raise ConfigError(f"{key}: expected {_names(types)}, got {_type_name(value)}{shown}")
    return value


def env_ref(value: Any, key: str) -> Any:
    """`os.environ/NAME` → the variable's value (a missing variable is a ConfigError)."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value[len("os.environ/"):]
        if name not in os.environ:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        return os.environ[name]
    return value


def warn_unknown(section: Mapping[str, Any], known: set[str], where: str, out: list[str]) -> None:
    """Notes each key of `section` llmbill does not read: ignored, never an error (LiteLLM has many)."""
    for k in section:
        if k not in known:
            out.append(f"{where}{k}: unknown key, ignored")


def str_list(value: Any, key: str) -> tuple[str, ...]:
    """A list of strings (None: empty)."""
    if value is None:
        return ()
    expect(value, list, key)
    for i, v in enumerate(value):
        expect(v, str, f"{key}[{i}]")
    return tuple(value)


def within(value: float, most: float, key: str, unit: str) -> float:
    """A positive, finite number no larger than `most` (YAML's .inf and .nan included: refused).

    >>> within(0.5, 60, "general_settings.spend_flush_interval", "seconds")
    0.5
    """
    if isinstance(value, bool) or not 0 < value <= most:
        raise ConfigError(f"{key}: must be a number of {unit} above 0 and at most {most:g}")
    return value
