"""One deployment of the config's `model_list` — the name clients call, the provider and upstream
model it forwards to, its price, token limits, timeouts, retries and rate limits — and how a list
entry becomes one (`parse_deployment`), with the notes it earns (unpriced, a wildcard, no output limit).

>>> notes: list[str] = []
>>> d = parse_deployment({"model_name": "m", "litellm_params": {"model": "mock/gpt-4o-mini"}}, 0, False, None, notes)
>>> (d.provider, d.upstream_model, d.price is not None)
('mock', 'gpt-4o-mini', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..billing import ConfigError
from ..pricing import default_prices
from .._native import core
from .config_prices import PRICE_FIELDS, custom_prices
from .config_values import env_ref, expect, str_list, warn_unknown
from .providers.base import ChatAdapter, ProviderParams
from .providers.openai_compatible import ProviderConfigError
from .providers.registry import EXTRA_PARAMS, PROVIDERS, resolve
from .routing import RouterSettings, deployment_retries, optional_limit, optional_seconds

KNOWN_PARAMS = {"model", "api_base", "api_key", *PRICE_FIELDS,
                "timeout", "stream_timeout", "max_retries", "rpm", "tpm", "weight", "mock_response",
                *EXTRA_PARAMS}
LIMIT_FIELDS = ("max_input_tokens", "max_output_tokens")  # model_info keys the budget bound reads
UNKNOWN_OUTPUT_TOKENS = 131_072  # a call's completion bound when neither it nor the model's limit says


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


def _limits(entry: Mapping[str, Any], key: str, price: core.ModelPrice | None) -> tuple[int, int]:
    """(max_input_tokens, max_output_tokens): model_info's, else the table's; 0 when unknown."""
    info = entry.get("model_info") or {}
    expect(info, dict, f"{key}.model_info")
    out = []
    for name in LIMIT_FIELDS:
        v = info.get(name)
        if v is not None:
            expect(v, int, f"{key}.model_info.{name}")
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


def parse_deployment(entry: Any, i: int, require_prices: bool, fallback: dict[str, Any] | None,
                     notes: list[str], router: RouterSettings = RouterSettings()) -> Deployment:
    """`model_list[i]` → its Deployment; ConfigError naming the key on a mistake, `notes` for what
    start-up should warn about. `fallback`: general_settings.unpriced_model_fallback's prices."""
    key = f"model_list[{i}]"
    expect(entry, dict, key)
    name = expect(entry.get("model_name"), str, f"{key}.model_name")
    params = expect(entry.get("litellm_params"), dict, f"{key}.litellm_params")
    pkey = f"{key}.litellm_params"
    warn_unknown(params, KNOWN_PARAMS, f"{pkey}.", notes)
    model = expect(params.get("model"), str, f"{pkey}.model")
    provider, sep, upstream = model.partition("/")
    if not sep or not upstream:
        raise ConfigError(f"{pkey}.model: {model!r} needs a provider prefix ({', '.join(p + '/<name>' for p in PROVIDERS)})")
    if provider not in PROVIDERS:
        raise ConfigError(f"{pkey}.model: unknown provider {provider!r} in {model!r} (supported: {', '.join(PROVIDERS)})")
    resolved_params: dict[str, Any] = {}
    for param in ("api_base", "api_key", *EXTRA_PARAMS):
        if params.get(param) is not None:
            value = env_ref(params[param], f"{pkey}.{param}")
            if param != "vertex_credentials":  # a key file's path, its JSON text, or the parsed object
                expect(value, (str, int) if param == "max_output_tokens" else str, f"{pkey}.{param}")
            resolved_params[param] = value
    try:
        route = resolve(provider, upstream, resolved_params)
    except ProviderConfigError as exc:
        raise ConfigError(f"{pkey}.{exc.key or 'model'}: {exc}") from None
    api_base, api_key = route.api_base, route.api_key
    timeout = expect(params.get("timeout", router.request_timeout), (int, float), f"{pkey}.timeout")
    rpm, tpm = optional_limit(params, "rpm", pkey), optional_limit(params, "tpm", pkey)
    weight = params.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0):
        raise ConfigError(f"{pkey}.weight: expected a positive number, got {weight!r}")
    mock_response = params.get("mock_response")
    if mock_response is not None:
        expect(mock_response, str, f"{pkey}.mock_response")
    custom = custom_prices(params, pkey)
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
        access_groups=str_list((entry.get("model_info") or {}).get("access_groups"),
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
