"""Which models a key may call: its `models` lists read as LiteLLM's proxy reads them.

A list is empty (no restriction) or names entries, each one of:
- a model name, deployed or not yet (it grants nothing until a deployment serves that name);
- an access group (`model_info.access_groups` of deployments): every model of the group;
- `*` or `all-proxy-models`: every model;
- a wildcard (`openai/*`, `gpt-4*`): a model whose name matches it, or every deployment of which
  sends to an upstream `provider/model` that matches it (`openai/*` grants `my-gpt` deployed as
  `openai/gpt-4o`, as LiteLLM grants names whose provider is OpenAI);
- `all-team-models`: on a key, its team's list (every model when the key has no team); on a team,
  every model;
- `no-default-models`: on a user, its personal keys (keys without a team) may call nothing.

A key's call needs every list that governs it: the key's own, then its team's — or, for a key without
a team, its user's (LiteLLM's rule: a user's models are that user's default, personal access; in a
team the team's list decides).

>>> from .config import load_config_dict
>>> cfg = load_config_dict({"model_list": [
...     {"model_name": "gpt-4o", "litellm_params": {"model": "mock/gpt-4o"}},
...     {"model_name": "my-gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "k"},
...      "model_info": {"access_groups": ["beta"]}}]})
>>> grants(cfg, ["beta"], "my-gpt"), grants(cfg, ["beta"], "gpt-4o"), grants(cfg, ["openai/*"], "my-gpt")
(True, False, True)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import ProxyConfig

ALL_PROXY_MODELS = "all-proxy-models"
ALL_TEAM_MODELS = "all-team-models"
NO_DEFAULT_MODELS = "no-default-models"
SPECIAL_NAMES = frozenset({ALL_PROXY_MODELS, ALL_TEAM_MODELS, NO_DEFAULT_MODELS})
_EVERY_MODEL = frozenset({"*", ALL_PROXY_MODELS})


@functools.lru_cache(maxsize=256)
def _pattern(entry: str) -> re.Pattern[str]:
    """`*` matches any run of characters; everything else literally (LiteLLM leaves `.` a regex dot)."""
    return re.compile(".*".join(re.escape(part) for part in entry.split("*")))


def _upstreams(config: ProxyConfig, model: str) -> list[str]:
    """`provider/upstream model` of each deployment that would serve `model` (the wildcard's, when
    no deployment is named so)."""
    named = [f"{d.provider}/{d.upstream_model}" for d in config.deployments if d.model_name == model]
    if named:
        return named
    return [f"{d.provider}/{model if d.upstream_model == '*' else d.upstream_model}"
            for d in config.deployments if d.model_name == "*"]


def grants(config: ProxyConfig, models: Sequence[str], model: str) -> bool:
    """Whether one `models` list lets `model` be called."""
    if not models:
        return True
    groups = config.access_groups
    for entry in models:
        if entry in _EVERY_MODEL or entry == model:
            return True
        members = groups.get(entry)
        if members is not None:
            # A wildcard deployment in the group brings every name that no deployment is named after.
            if model in members or ("*" in members and model not in config.model_names):
                return True
        elif "*" in entry:
            pattern = _pattern(entry)
            if pattern.fullmatch(model):
                return True
            upstreams = _upstreams(config, model)
            if upstreams and all(pattern.fullmatch(u) for u in upstreams):
                return True
    return False


@dataclass(frozen=True)
class Governing:
    """The lists a key's call must pass, each with the kind of record it came from."""

    lists: tuple[tuple[str, tuple[str, ...]], ...]
    denied_by: str | None = None  # a kind that refuses every model (a user's no-default-models)


def governing(key: dict[str, Any], team: dict[str, Any] | None, user: dict[str, Any] | None) -> Governing:
    key_models = tuple(key.get("models") or ())
    if ALL_TEAM_MODELS in key_models:  # the team's list, checked next; without a team, no limit
        key_models = ()
    lists: list[tuple[str, tuple[str, ...]]] = [("key", key_models)]
    if key.get("team_id"):
        team_models = list((team or {}).get("models") or [])
        lists.append(("team", (ALL_PROXY_MODELS,) if ALL_TEAM_MODELS in team_models else tuple(team_models)))
    elif user is not None:
        user_models = tuple(user.get("models") or [])
        if NO_DEFAULT_MODELS in user_models:
            return Governing(tuple(lists), denied_by="user")
        lists.append(("user", user_models))
    for i, (kind, models) in enumerate(lists):  # a team's all-team-models reached through the key
        if ALL_TEAM_MODELS in models:
            lists[i] = (kind, (ALL_PROXY_MODELS,))
    return Governing(tuple(lists))


def refusing(config: ProxyConfig, rules: Governing, model: str) -> str | None:
    """The kind of the first list that refuses `model` (None: allowed)."""
    if rules.denied_by is not None:
        return rules.denied_by
    return next((kind for kind, models in rules.lists if not grants(config, models, model)), None)


def listed(config: ProxyConfig, rules: Governing) -> list[str]:
    """The models `/v1/models` shows: deployed names the lists allow, in config order, then names the
    lists spell out that only a wildcard deployment serves."""
    if rules.denied_by is not None:
        return []
    deployed = [n for n in config.model_names if n != "*"]
    candidates = dict.fromkeys(deployed)
    if "*" in config.model_names:
        groups = config.access_groups
        for _, models in rules.lists:
            for entry in models:
                if entry not in SPECIAL_NAMES and entry not in groups and "*" not in entry:
                    candidates.setdefault(entry, None)
    return [m for m in candidates if refusing(config, rules, m) is None]
