"""The proxy's config, in LiteLLM's shape: model_list, litellm_settings, general_settings,
environment_variables, router_settings. Owns ProxyConfig (what the proxy runs with) and the loading
that assembles it from the sections, whose readers live beside it: deployments.py (model_list),
config_prices.py (prices), general_settings.py, litellm_settings.py, routing.py and
fallback_rules.py (routing and fallbacks), keygen_settings.py, credits/settings.py — all reading
through config_values.py. Every mistake stops start-up with one line naming the key (ConfigError).

>>> cfg = load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
>>> cfg.deployments[0].provider
'mock'
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..billing import ConfigError
from ..margin import MarginRules
from . import general_settings, litellm_settings
from .config_prices import unpriced_fallback
from .config_values import expect, warn_unknown, within
from .credits.settings import CreditSettings, parse as credit_settings
from .deployments import Deployment, parse_deployment
from .errors import BUDGET_EXCEEDED_STATUS
from .fallback_rules import FallbackRules, check_names
from .idle_poll import DEFAULT_IDLE_POLL_US
from .keygen_settings import KeyGenerationSettings, parse_key_generation
from .routing import parse_router

KNOWN_TOP = {"model_list", "litellm_settings", "general_settings", "environment_variables", "router_settings"}

# The built-in defaults: a mock model priced like gpt-3.5-turbo, and one with explicit prices.
EMBEDDED: dict[str, Any] = {
    "model_list": [
        {"model_name": "gpt-3.5-turbo", "litellm_params": {"model": "mock/gpt-3.5-turbo"}},
        {"model_name": "mock-gpt", "litellm_params": {"model": "mock/mock-gpt", "input_cost_per_token": 1e-06,
                                                      "output_cost_per_token": 2e-06}},
        {"model_name": "text-embedding-3-small", "litellm_params": {"model": "mock/text-embedding-3-small"}},
    ],
    "litellm_settings": {"callbacks": ["lago"]},
    "general_settings": {"master_key": "sk-1234"},
}


@dataclass(frozen=True)
class ProxyConfig:
    deployments: tuple[Deployment, ...]
    master_key: str | None = field(repr=False)
    database_url: str = field(repr=False)
    callbacks: tuple[str, ...]
    alerting: tuple[str, ...]
    webhook_url: str | None
    require_prices: bool
    max_request_bytes: int
    spend_flush_interval: float
    cache_refresh_interval: float
    max_end_user_budget_id: str | None
    timezone: str
    source: str  # the config file, or "embedded defaults"
    warnings: tuple[str, ...] = field(default_factory=tuple)
    metrics_open: bool = False  # GET /metrics without the master key
    key_generation: KeyGenerationSettings = field(default_factory=KeyGenerationSettings)  # keygen_settings.py
    drop_params: bool = False  # litellm_settings.drop_params: a parameter a provider cannot take is dropped, not refused
    verbose: bool = False  # litellm_settings.set_verbose: llmbill's loggers at debug level
    # general_settings.unpriced_model_fallback: the price of a model that has none (None: refused under budgets)
    unpriced_fallback: tuple[tuple[str, Any], ...] | None = None
    # litellm_settings.budget_exceeded_status_code: the status of a budget refusal (LiteLLM 1.108's 422)
    budget_exceeded_status_code: int = BUDGET_EXCEEDED_STATUS
    billing_failure_policy: str = "fail_closed"  # when billing events cannot be made durable
    credits: CreditSettings = field(default_factory=CreditSettings)  # prepaid credits (proxy/credits)
    # general_settings.redis_url (or REDIS_URL, or REDIS_HOST/PORT/PASSWORD): shared limits (redis_limits.py)
    redis_url: str | None = field(default=None, repr=False)
    redis_failure_policy: str = "fail_closed"  # when Redis does not answer: refuse, or limit per process
    fallbacks: FallbackRules = field(default_factory=FallbackRules)  # fallback_rules.py; followed by fallbacks.py

    @property
    def longest_timeout(self) -> float:
        return max((d.timeout for d in self.deployments), default=600.0)
    # litellm_settings.cost_margin_config / cost_discount_config (margin.py): what calls are billed
    margins: MarginRules = field(default_factory=MarginRules)
    cache_max_entries: int = 50_000  # records per kind a process holds (proxy/cache.py)
    cache_sync_interval: float = 0.25  # seconds between reads of the change log (SQLite; PostgreSQL pushes)
    # general_settings.idle_poll_us: the event loop may poll this long after a write (idle_poll.py)
    idle_poll_us: int = DEFAULT_IDLE_POLL_US

    @property
    def model_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for d in self.deployments:
            seen.setdefault(d.model_name, None)
        return list(seen)

    @functools.cached_property  # read on every call's model check; the config never changes
    def access_groups(self) -> dict[str, list[str]]:
        """Access group → the model names whose deployments name it, in config order."""
        groups: dict[str, dict[str, None]] = {}
        for d in self.deployments:
            for g in d.access_groups:
                groups.setdefault(g, {}).setdefault(d.model_name, None)
        return {g: list(names) for g, names in groups.items()}

    @property
    def lago_enabled(self) -> bool:
        return "lago" in self.callbacks



def load_config_dict(raw: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> ProxyConfig:
    """Validates a parsed config; raises ConfigError (one line, naming the key) on the first mistake.
    The sections are read in a fixed order, so that config's first mistake is always the one reported."""
    if raw is None:
        raw = {}
    expect(raw, dict, "config")
    notes: list[str] = []
    base_dir = base_dir or Path.cwd()
    if "model_name" in raw and "model_list" not in raw and isinstance(raw["model_name"], list):
        # LiteLLM's billing page shows `model_name:` where `model_list:` is meant; accept it.
        notes.append("model_name: read as model_list (the top-level key is model_list)")
        raw = {**raw, "model_list": raw["model_name"]}
        raw.pop("model_name")
    warn_unknown(raw, KNOWN_TOP, "", notes)

    env = raw.get("environment_variables") or {}
    expect(env, dict, "environment_variables")
    for k, v in env.items():
        expect(v, (str, int, float), f"environment_variables.{k}")
        os.environ[str(k)] = str(v)

    general = raw.get("general_settings") or {}
    expect(general, dict, "general_settings")
    warn_unknown(general, general_settings.KNOWN_GENERAL, "general_settings.", notes)
    litellm = raw.get("litellm_settings") or {}
    expect(litellm, dict, "litellm_settings")
    warn_unknown(litellm, litellm_settings.KNOWN_LITELLM, "litellm_settings.", notes)

    require_prices = expect(general.get("require_prices", False), bool, "general_settings.require_prices")
    fallback = unpriced_fallback(general, require_prices)
    models = raw.get("model_list") or []
    expect(models, list, "model_list")
    router = parse_router(raw)
    deployments = tuple(parse_deployment(e, i, require_prices, fallback, notes, router)
                        for i, e in enumerate(models))

    master_key = general_settings.master_key(general, notes)
    db = general_settings.database_url(general, base_dir)
    callbacks = litellm_settings.billing_callbacks(litellm, notes)
    alerting, webhook_url = general_settings.alerting(general, notes)
    max_mb = within(expect(general.get("max_request_size_mb", 32), (int, float), "general_settings.max_request_size_mb"),
                    4096, "general_settings.max_request_size_mb", "MB")
    flush = within(expect(general.get("spend_flush_interval", 0.5), (int, float), "general_settings.spend_flush_interval"),
                   3600, "general_settings.spend_flush_interval", "seconds")
    refresh = within(expect(general.get("cache_refresh_interval", 1.0), (int, float),
                            "general_settings.cache_refresh_interval"), 3600, "general_settings.cache_refresh_interval",
                     "seconds")
    cache_max = general_settings.cache_max_entries(general)
    sync = general_settings.cache_sync_interval(general)
    idle_poll_us = general_settings.idle_poll_us(general)
    tier = litellm_settings.max_end_user_budget_id(litellm)
    tz = expect(litellm.get("timezone", "UTC"), str, "litellm_settings.timezone")
    metrics_open = expect(general.get("metrics_open", False), bool, "general_settings.metrics_open")
    budget_status = litellm_settings.budget_exceeded_status_code(litellm)
    policy = general_settings.failure_policy(general, "billing_failure_policy")
    redis_url = general_settings.redis_url(general)
    redis_policy = general_settings.failure_policy(general, "redis_failure_policy")
    margins = litellm_settings.margins(litellm)
    return ProxyConfig(
        deployments=deployments,
        master_key=master_key,
        database_url=db,
        callbacks=callbacks,
        alerting=alerting,
        webhook_url=webhook_url,
        require_prices=require_prices,
        max_request_bytes=int(max_mb * 1024 * 1024),
        spend_flush_interval=float(flush),
        cache_refresh_interval=float(refresh),
        max_end_user_budget_id=tier,
        timezone=tz,
        source=source,
        warnings=tuple(notes),
        metrics_open=metrics_open,
        key_generation=parse_key_generation(litellm),
        drop_params=expect(litellm.get("drop_params", False), bool, "litellm_settings.drop_params"),
        verbose=expect(litellm.get("set_verbose", False), bool, "litellm_settings.set_verbose"),
        unpriced_fallback=tuple(fallback.items()) if fallback else None,
        budget_exceeded_status_code=budget_status,
        billing_failure_policy=policy,
        credits=credit_settings(general.get("credits", litellm.get("credits")), general.get("credits_settings")),
        redis_url=redis_url,
        redis_failure_policy=redis_policy,
        margins=margins,
        cache_max_entries=cache_max,
        cache_sync_interval=sync,
        idle_poll_us=idle_poll_us,
        fallbacks=check_names(router.fallbacks, [d.model_name for d in deployments]),
    )


def load_config(path: str | os.PathLike[str] | None) -> ProxyConfig:
    """Reads a YAML config file; None → the embedded defaults."""
    if path is None:
        return load_config_dict(EMBEDDED, source="embedded defaults")
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {p}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config: {p}{where}: not valid YAML") from None
    return load_config_dict(raw, source=str(p), base_dir=p.parent.resolve())

