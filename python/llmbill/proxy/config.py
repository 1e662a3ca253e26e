"""The proxy's config, in LiteLLM's shape: model_list, litellm_settings, general_settings,
environment_variables. Every mistake stops start-up with one line naming the key (ConfigError).

>>> cfg = load_config_dict({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
>>> cfg.deployments[0].provider
'mock'
"""

from __future__ import annotations

import functools
import os
from decimal import Decimal, InvalidOperation
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import redact
from ..billing import ConfigError
from .credits.settings import CreditSettings, parse as credit_settings
from ..margin import MarginError, MarginRules
from ..pricing import default_prices
from .._native import core
from .errors import BUDGET_EXCEEDED_STATUS
from .keygen_settings import KeyGenerationSettings, parse_key_generation
from .providers.base import ChatAdapter, ProviderParams
from .providers.openai_compatible import ProviderConfigError
from .providers.registry import EXTRA_PARAMS, PROVIDERS, resolve
from .routing import RouterSettings, deployment_retries, optional_limit, optional_seconds, parse_router
from .fallback_rules import KEYS as FALLBACK_KEYS
from .fallback_rules import FallbackRules, check_names

KNOWN_TOP = {"model_list", "litellm_settings", "general_settings", "environment_variables", "router_settings"}
KNOWN_PARAMS = {"model", "api_base", "api_key", "input_cost_per_token", "output_cost_per_token",
                "cache_read_input_token_cost", "cache_creation_input_token_cost", "input_cost_per_request",
                "timeout", "stream_timeout", "max_retries", "rpm", "tpm", "weight", "mock_response",
                *EXTRA_PARAMS}
KNOWN_GENERAL = {"master_key", "database_url", "alerting", "require_prices", "max_request_size_mb",
                 "spend_flush_interval", "cache_refresh_interval", "metrics_open", "unpriced_model_fallback",
                 "billing_failure_policy", "credits", "credits_settings", "redis_url", "redis_failure_policy",
                 "cache_max_entries", "cache_sync_interval"}
PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                "cache_creation_input_token_cost", "input_cost_per_request")
LIMIT_FIELDS = ("max_input_tokens", "max_output_tokens")  # model_info keys the budget bound reads
BILLING_FAILURE_POLICIES = ("fail_closed", "fail_open")  # proxy/billing_gate.py
KNOWN_LITELLM = {"callbacks", "success_callback", "failure_callback", "max_end_user_budget_id", "timezone",
                 "drop_params", "set_verbose", "num_retries", "request_timeout", "key_generation_settings",
                 "upperbound_key_generate_params", "budget_exceeded_status_code", "credits", "cost_margin_config",
                 "cost_discount_config", *FALLBACK_KEYS}
_SECRET_KEYS = ("master_key", "api_key", "database_url")  # values config errors never echo
SAMPLE_KEYS = {"sk-1234", "sk-12345", "sk-test", "sk-master", "changeme"}

UNKNOWN_OUTPUT_TOKENS = 131_072  # a call's completion bound when neither it nor the model's limit says

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
class Deployment:
    model_name: str  # the name clients call
    provider: str  # openai | mock
    upstream_model: str  # the name sent upstream
    api_base: str
    api_key: str = field(repr=False)  # secrets stay out of reprs (tracebacks, debug output)
    price: core.ModelPrice | None  # None: unpriced (billed by tokens, cost 0, flagged; refused under budgets)
    timeout: float
    max_input_tokens: int  # 0: unknown (model_info, else the table)
    max_output_tokens: int
    mock_response: str | None = None
    custom_prices: tuple[tuple[str, Any], ...] = ()  # litellm_params prices: a wildcard prices each name with them
    # A provider that is not OpenAI-shaped: its adapter (providers/) and parameters. None: the OpenAI
    # byte pass-through (openai/, the OpenAI-compatible hosts, mock/).
    adapter: ChatAdapter | None = None
    params: ProviderParams | None = None
    stream_timeout: float | None = None  # litellm_params.stream_timeout: the wait for a stream's next chunk
    max_retries: int = 0  # more sends after a 429/5xx or a refused connection (routing.py)
    rpm: int | None = None  # the deployment's own limits: a saturated deployment is skipped
    tpm: int | None = None
    weight: float = 1.0  # simple-shuffle's weight (litellm_params.weight, else rpm, else tpm)
    access_groups: tuple[str, ...] = ()  # model_info.access_groups: names a `models` list may grant it by


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


def _type_name(value: Any) -> str:
    return type(value).__name__ if value is not None else "null"


def _expect(value: Any, types: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{key}: expected {_names(types)}, got bool")
    if not isinstance(value, types):
        shown = "" if key.lower().endswith(_SECRET_KEYS) else f" {value!r}"  # a mistyped key is still a key
        raise ConfigError(f"{key}: expected {_names(types)}, got {_type_name(value)}{shown}")
    return value


def _names(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    words = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a mapping", bool: "true/false"}
    return " or ".join(words.get(t, t.__name__) for t in ts)


def _env_ref(value: Any, key: str) -> Any:
    """`os.environ/NAME` → the variable's value (a missing variable is a ConfigError)."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value[len("os.environ/"):]
        if name not in os.environ:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        return os.environ[name]
    return value


def _warn_unknown(section: Mapping[str, Any], known: set[str], where: str, out: list[str]) -> None:
    for k in section:
        if k not in known:
            out.append(f"{where}{k}: unknown key, ignored")


def _price(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PRICE_FIELDS:
        if name in params and params[name] is not None:
            v = _env_ref(params[name], f"{key}.{name}")
            if isinstance(v, str):
                # YAML reads `3e-07` (no dot) as a string, and the core takes plain decimals only:
                # written out, else the deployment would silently go unpriced.
                try:
                    amount = Decimal(v.strip())
                except InvalidOperation:
                    amount = Decimal("NaN")
                if not amount.is_finite():
                    raise ConfigError(f"{key}.{name}: expected a number, got {v!r}")
                v = format(amount, "f")
            else:
                _expect(v, (int, float), f"{key}.{name}")
            if float(v) < 0:
                raise ConfigError(f"{key}.{name}: must not be negative, got {v!r}")
            try:  # the core's own check: finite, and exact in its 1e-19 USD unit
                default_prices().resolve_with("price-check", **{name: v})
            except core.Error as exc:
                raise ConfigError(f"{key}.{name}: {exc}") from None
            out[name] = v
    return out


def _fallback(general: Mapping[str, Any], require_prices: bool) -> dict[str, Any] | None:
    """general_settings.unpriced_model_fallback: prices (litellm_params' price fields) for models with none."""
    raw = general.get("unpriced_model_fallback")
    if raw is None:
        return None
    key = "general_settings.unpriced_model_fallback"
    _expect(raw, dict, key)
    unknown = sorted(set(raw) - set(PRICE_FIELDS))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: not a price field (use {', '.join(PRICE_FIELDS)})")
    prices = _price(raw, key)
    if not any(prices.get(f) is not None for f in ("input_cost_per_token", "output_cost_per_token",
                                                    "input_cost_per_request")):
        raise ConfigError(f"{key}: needs input_cost_per_token, output_cost_per_token or input_cost_per_request")
    if require_prices:
        raise ConfigError(f"{key}: contradicts general_settings.require_prices (which refuses unpriced models); "
                          "set one of them")
    return prices


def _limits(entry: Mapping[str, Any], key: str, price: core.ModelPrice | None) -> tuple[int, int]:
    """(max_input_tokens, max_output_tokens): model_info's, else the table's; 0 when unknown."""
    info = entry.get("model_info") or {}
    _expect(info, dict, f"{key}.model_info")
    out = []
    for name in LIMIT_FIELDS:
        v = info.get(name)
        if v is not None:
            _expect(v, int, f"{key}.model_info.{name}")
            if v <= 0:
                raise ConfigError(f"{key}.model_info.{name}: must be a positive integer, got {v!r}")
        out.append(v if v is not None else getattr(price, name) if price is not None else 0)
    return out[0], out[1]


def wildcard_price(template: Deployment, upstream: str, fallback: Mapping[str, Any] | None) -> core.ModelPrice | None:
    """The price of one name a wildcard deployment forwards: the deployment's own prices (explicit
    config wins, as for a named deployment), else the table's, else the fallback; None: unpriced."""
    model = f"{template.provider}/{upstream}"
    table = default_prices()
    if template.custom_prices:
        own = table.resolve_with(model, **dict(template.custom_prices))
        if own.priced:
            return own
    found = table.find(model)
    if found is not None and found.priced:
        return found
    return table.resolve_with(model, **fallback) if fallback else None


def _deployment(entry: Any, i: int, base_dir: Path, require_prices: bool, fallback: dict[str, Any] | None,
                notes: list[str], router: RouterSettings = RouterSettings()) -> Deployment:
    key = f"model_list[{i}]"
    _expect(entry, dict, key)
    name = _expect(entry.get("model_name"), str, f"{key}.model_name")
    params = _expect(entry.get("litellm_params"), dict, f"{key}.litellm_params")
    pkey = f"{key}.litellm_params"
    _warn_unknown(params, KNOWN_PARAMS, f"{pkey}.", notes)
    model = _expect(params.get("model"), str, f"{pkey}.model")
    provider, sep, upstream = model.partition("/")
    if not sep or not upstream:
        raise ConfigError(f"{pkey}.model: {model!r} needs a provider prefix ({', '.join(p + '/<name>' for p in PROVIDERS)})")
    if provider not in PROVIDERS:
        raise ConfigError(f"{pkey}.model: unknown provider {provider!r} in {model!r} (supported: {', '.join(PROVIDERS)})")
    resolved_params: dict[str, Any] = {}
    for param in ("api_base", "api_key", *EXTRA_PARAMS):
        if params.get(param) is not None:
            value = _env_ref(params[param], f"{pkey}.{param}")
            if param != "vertex_credentials":  # a key file's path, its JSON text, or the parsed object
                _expect(value, (str, int) if param == "max_output_tokens" else str, f"{pkey}.{param}")
            resolved_params[param] = value
    try:
        route = resolve(provider, upstream, resolved_params)
    except ProviderConfigError as exc:
        raise ConfigError(f"{pkey}.{exc.key or 'model'}: {exc}") from None
    api_base, api_key = route.api_base, route.api_key
    timeout = _expect(params.get("timeout", router.request_timeout), (int, float), f"{pkey}.timeout")
    rpm, tpm = optional_limit(params, "rpm", pkey), optional_limit(params, "tpm", pkey)
    weight = params.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0):
        raise ConfigError(f"{pkey}.weight: expected a positive number, got {weight!r}")
    mock_response = params.get("mock_response")
    if mock_response is not None:
        _expect(mock_response, str, f"{pkey}.mock_response")
    custom = _price(params, pkey)
    table = default_prices()
    price: core.ModelPrice | None
    try:
        price = (table.resolve_with(_price_name(provider, upstream, model, entry), **custom) if custom
                 else None if upstream == "*" else table.find(_price_name(provider, upstream, model, entry)))
    except core.Error as exc:  # a custom price llmbill cannot hold exactly: never silently unpriced
        raise ConfigError(f"{pkey}: {exc}") from None
    if price is not None and not price.priced:
        price = None
    if upstream == "*":
        price = None  # each name is priced at call time (wildcard_price)
        unpriced = ("billed at general_settings.unpriced_model_fallback" if fallback
                    else "refused (general_settings.require_prices)" if require_prices
                    else "refused where a budget applies, else billed with response_cost 0, flagged unpriced")
        by = "this deployment's prices" if custom else "the table"
        notes.append(f"{pkey}.model: {model!r} is a wildcard: each model name is priced by {by} at call time; "
                     f"names without a price are {unpriced}")
    elif price is None:
        msg = f"{pkey}.model: {model!r} has no price in the table and no custom price"
        if require_prices:
            raise ConfigError(msg + " (general_settings.require_prices is true)")
        if fallback:
            price = table.resolve_with(model, **fallback)
            notes.append(msg + ": billed at general_settings.unpriced_model_fallback")
        else:
            notes.append(msg + ": its calls are refused where a budget applies (a key, user, team or customer "
                         "max_budget; set a price or general_settings.unpriced_model_fallback), else billed "
                         "by tokens with response_cost 0, flagged unpriced")
    max_input, max_output = _limits(entry, key, price)
    if price is not None and not max_output:
        notes.append(f"{pkey}.model: {model!r} has no known output limit: a call without max_tokens reserves "
                     f"{UNKNOWN_OUTPUT_TOKENS} completion tokens against budgets (set {key}.model_info.max_output_tokens)")
    return Deployment(
        model_name=name,
        provider=provider,
        upstream_model=upstream,
        api_base=api_base.rstrip("/"),
        api_key=api_key,
        price=price,
        timeout=float(timeout),
        max_input_tokens=max_input,
        max_output_tokens=max_output,
        mock_response=mock_response,
        custom_prices=tuple(custom.items()),
        adapter=route.adapter,
        params=route.params if route.adapter is not None else None,
        stream_timeout=optional_seconds(params, "stream_timeout", pkey),
        max_retries=deployment_retries(params, pkey, router.num_retries),
        rpm=rpm, tpm=tpm, weight=float(weight if weight is not None else rpm or tpm or 1),
        access_groups=_str_list((entry.get("model_info") or {}).get("access_groups"),
                                f"{key}.model_info.access_groups"),
    )


def _price_name(provider: str, upstream: str, model: str, entry: Mapping[str, Any]) -> str:
    """The price table's name for a deployment: mock/<name> is priced as <name> (a stand-in for that
    model); bedrock/converse/<id> as bedrock/<id>; an Azure deployment by `model_info.base_model` (its
    deployment name says nothing of the model); everything else as <provider>/<name>, which the table
    resolves through each entry's litellm_provider (anthropic/claude-… finds claude-…)."""
    if provider == "mock":
        return upstream
    if provider == "bedrock" and upstream.startswith("converse/"):
        return "bedrock/" + upstream[len("converse/"):]
    info = entry.get("model_info")
    base_model = info.get("base_model") if isinstance(info, dict) else None
    if provider == "azure" and isinstance(base_model, str) and base_model:
        return base_model if "/" in base_model else f"azure/{base_model}"
    return model


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    _expect(value, list, key)
    for i, v in enumerate(value):
        _expect(v, str, f"{key}[{i}]")
    return tuple(value)


def load_config_dict(raw: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> ProxyConfig:
    """Validates a parsed config; raises ConfigError (one line, naming the key) on the first mistake."""
    if raw is None:
        raw = {}
    _expect(raw, dict, "config")
    notes: list[str] = []
    base_dir = base_dir or Path.cwd()
    if "model_name" in raw and "model_list" not in raw and isinstance(raw["model_name"], list):
        # LiteLLM's billing page shows `model_name:` where `model_list:` is meant; accept it.
        notes.append("model_name: read as model_list (the top-level key is model_list)")
        raw = {**raw, "model_list": raw["model_name"]}
        raw.pop("model_name")
    _warn_unknown(raw, KNOWN_TOP, "", notes)

    env = raw.get("environment_variables") or {}
    _expect(env, dict, "environment_variables")
    for k, v in env.items():
        _expect(v, (str, int, float), f"environment_variables.{k}")
        os.environ[str(k)] = str(v)

    general = raw.get("general_settings") or {}
    _expect(general, dict, "general_settings")
    _warn_unknown(general, KNOWN_GENERAL, "general_settings.", notes)
    litellm = raw.get("litellm_settings") or {}
    _expect(litellm, dict, "litellm_settings")
    _warn_unknown(litellm, KNOWN_LITELLM, "litellm_settings.", notes)

    require_prices = _expect(general.get("require_prices", False), bool, "general_settings.require_prices")
    fallback = _fallback(general, require_prices)
    models = raw.get("model_list") or []
    _expect(models, list, "model_list")
    router = parse_router(raw)
    deployments = tuple(_deployment(e, i, base_dir, require_prices, fallback, notes, router)
                        for i, e in enumerate(models))

    master_key = _env_ref(general.get("master_key"), "general_settings.master_key")
    if master_key is not None:
        _expect(master_key, str, "general_settings.master_key")
        if len(master_key) < 16 or master_key in SAMPLE_KEYS:
            notes.append("general_settings.master_key: a short or sample key; anyone who guesses it "
                         "administers the proxy (use 16+ random characters)")
    else:
        notes.append("general_settings.master_key: not set; every route is open to anyone who can reach the proxy")

    db = _env_ref(general.get("database_url"), "general_settings.database_url") or os.environ.get("DATABASE_URL")
    if db is not None:
        _expect(db, str, "general_settings.database_url")
        if not db.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(f"general_settings.database_url: {redact.url(db)!r} is neither sqlite:///path "
                              "nor postgresql://...")
    else:
        db = f"sqlite:///{(base_dir / 'llmbill.db').resolve()}"

    callbacks = _str_list(litellm.get("callbacks"), "litellm_settings.callbacks")
    callbacks += tuple(c for c in _str_list(litellm.get("success_callback"), "litellm_settings.success_callback")
                       if c not in callbacks)
    for i, c in enumerate(callbacks):
        if c != "lago":
            notes.append(f"litellm_settings.callbacks[{i}]: {c!r} is not a billing sink llmbill has; ignored")
    alerting = _str_list(general.get("alerting"), "general_settings.alerting")
    webhook_url = None
    if "webhook" in alerting:
        webhook_url = os.environ.get("WEBHOOK_URL")
        if not webhook_url or not webhook_url.startswith(("http://", "https://")):
            raise ConfigError("general_settings.alerting: 'webhook' needs WEBHOOK_URL set to an http(s) URL")
    for i, a in enumerate(alerting):
        if a != "webhook":
            notes.append(f"general_settings.alerting[{i}]: {a!r} is not supported (only 'webhook'); ignored")
    max_mb = _expect(general.get("max_request_size_mb", 32), (int, float), "general_settings.max_request_size_mb")
    flush = _expect(general.get("spend_flush_interval", 0.5), (int, float), "general_settings.spend_flush_interval")
    refresh = _expect(general.get("cache_refresh_interval", 1.0), (int, float), "general_settings.cache_refresh_interval")
    cache_max = _expect(general.get("cache_max_entries", 50_000), int, "general_settings.cache_max_entries")
    if isinstance(cache_max, bool) or not 100 <= cache_max <= 100_000_000:
        raise ConfigError("general_settings.cache_max_entries: must be an integer from 100 to 100000000 "
                          "(records of each kind one process holds in memory)")
    sync = _expect(general.get("cache_sync_interval", 0.25), (int, float), "general_settings.cache_sync_interval")
    if not 0.01 <= sync <= 60:
        raise ConfigError("general_settings.cache_sync_interval: must be between 0.01 and 60 seconds")
    tier = litellm.get("max_end_user_budget_id")
    if tier is not None:
        _expect(tier, str, "litellm_settings.max_end_user_budget_id")
    tz = _expect(litellm.get("timezone", "UTC"), str, "litellm_settings.timezone")
    metrics_open = _expect(general.get("metrics_open", False), bool, "general_settings.metrics_open")
    budget_status = _expect(litellm.get("budget_exceeded_status_code", BUDGET_EXCEEDED_STATUS), int,
                            "litellm_settings.budget_exceeded_status_code")
    if not 400 <= budget_status <= 599:
        raise ConfigError(f"litellm_settings.budget_exceeded_status_code: an HTTP error status (400-599), "
                          f"got {budget_status}")
    policy = _expect(general.get("billing_failure_policy", "fail_closed"), str, "general_settings.billing_failure_policy")
    if policy not in BILLING_FAILURE_POLICIES:
        raise ConfigError(f"general_settings.billing_failure_policy: {policy!r} is not one of fail_closed, fail_open")
    redis_url = _redis_url(general)
    redis_policy = _expect(general.get("redis_failure_policy", "fail_closed"), str,
                           "general_settings.redis_failure_policy")
    if redis_policy not in BILLING_FAILURE_POLICIES:
        raise ConfigError(f"general_settings.redis_failure_policy: {redis_policy!r} is not one of fail_closed, fail_open")
    try:
        margins = MarginRules.parse(litellm.get("cost_margin_config"), litellm.get("cost_discount_config"))
    except MarginError as exc:
        raise ConfigError(str(exc)) from None
    return ProxyConfig(
        deployments=deployments,
        master_key=master_key,
        database_url=db,
        callbacks=tuple(c for c in callbacks if c == "lago"),
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
        drop_params=_expect(litellm.get("drop_params", False), bool, "litellm_settings.drop_params"),
        verbose=_expect(litellm.get("set_verbose", False), bool, "litellm_settings.set_verbose"),
        unpriced_fallback=tuple(fallback.items()) if fallback else None,
        budget_exceeded_status_code=budget_status,
        billing_failure_policy=policy,
        credits=credit_settings(general.get("credits", litellm.get("credits")), general.get("credits_settings")),
        redis_url=redis_url,
        redis_failure_policy=redis_policy,
        margins=margins,
        cache_max_entries=cache_max,
        cache_sync_interval=float(sync),
        fallbacks=check_names(router.fallbacks, [d.model_name for d in deployments]),
    )


def _redis_url(general: Mapping[str, Any]) -> str | None:
    """general_settings.redis_url, else LiteLLM's variables: REDIS_URL, or REDIS_HOST (+ REDIS_PORT,
    REDIS_PASSWORD)."""
    url = _env_ref(general.get("redis_url"), "general_settings.redis_url")
    if url is not None:
        _expect(url, str, "general_settings.redis_url")
    url = url or os.environ.get("REDIS_URL")
    if not url and os.environ.get("REDIS_HOST"):
        from urllib.parse import quote

        password = os.environ.get("REDIS_PASSWORD")
        auth = f":{quote(password, safe='')}@" if password else ""
        url = f"redis://{auth}{os.environ['REDIS_HOST']}:{os.environ.get('REDIS_PORT') or 6379}"
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("general_settings.redis_url: not a redis://, rediss:// or unix:// URL")
    return url or None


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

