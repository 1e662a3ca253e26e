"""Fields several routes share (LiteLLM's GenerateRequestBase, budget and limit fields), declared once.

Each is declared with what llmbill does with it; a route that treats one differently replaces it
(`Body.plus`). Names and defaults follow LiteLLM 1.108's request models.
"""

from __future__ import annotations

from typing import Any

from ..errors import bad_request
from ..validate import Fields
from .kinds import (DURATION, FLAG, INT_MAP, INTEGER, JSON, MAPPING, MODEL_BUDGETS, MONEY, TEXT, TEXT_MAP, TEXTS,
                    Kind, choice)
from .spec import Field, honoured, refused, stored


def _object_permission(f: Fields, name: str) -> dict[str, Any] | None:
    """MCP servers, vector stores, agents... llmbill has none of them, so they are stored; but its
    `models` would restrict model access, which llmbill does not read from here."""
    v = f.mapping(name)
    if v is not None and v.get("models"):
        raise bad_request(f"'{name}.models' is not supported by llmbill (restrict models with 'models'): "
                          "leave it out or send null", f"{name}.models")
    return v


OBJECT_PERMISSION = Kind("object_permission", _object_permission, {"type": "object"})

# Budget, window and rate limits: honoured wherever an entity has them.
MAX_BUDGET = honoured("max_budget", MONEY, "the budget in USD; calls are refused once spend reaches it")
SOFT_BUDGET = honoured("soft_budget", MONEY, "crossing it sends a soft_budget_crossed webhook alert")
BUDGET_DURATION = honoured("budget_duration", DURATION, "the budget's window: spend restarts at 0 each window")
TPM = honoured("tpm_limit", INTEGER, "tokens per minute")
RPM = honoured("rpm_limit", INTEGER, "requests per minute")
TPD = honoured("tpd_limit", INTEGER, "tokens per day (UTC days)")
PARALLEL = honoured("max_parallel_requests", INTEGER, "calls in flight at once")
MODEL_MAX_BUDGET = honoured("model_max_budget", MODEL_BUDGETS,
                            "per-model budgets {model: {budget_limit, time_period}}: calls to that model are refused "
                            "once its spend in the window reaches the limit")
MODEL_RPM = honoured("model_rpm_limit", INT_MAP, "requests per minute per model {model: n}")
MODEL_TPM = honoured("model_tpm_limit", INT_MAP, "tokens per minute per model {model: n}")
METADATA = honoured("metadata", MAPPING, "free-form; kept and shown back (tags inside it tag spend logs)")
TAGS = honoured("tags", TEXTS, "tags written on every spend log of its calls (GET /spend/logs?tags=)")
BLOCKED = honoured("blocked", FLAG, "a blocked entity's calls are refused")
MODELS = honoured("models", TEXTS, "the models it may call (empty: any)")
SPEND = honoured("spend", MONEY, "sets the spend (an update resets or corrects it; audited)")

BUDGET_LIMITS = refused("budget_limits", JSON, "llmbill keeps one budget window per record; use max_budget with "
                                                "budget_duration")
# Honoured on keys (fields/keys.py); on /user/* LiteLLM has no use for it either.
BUDGET_FALLBACKS = refused("budget_fallbacks", JSON, "budget fallbacks follow a key's model_max_budget: set them with "
                                                      "/key/generate or /key/update")
TAG_RPM = refused("tag_rpm_limit", JSON, "llmbill counts rate limits per key, user, team, member, customer and model, "
                                         "not per tag")
_LIMIT_TYPE_WHY = "llmbill's rate limits are caps, not throughput reserved for a key across others"
RPM_TYPE = refused("rpm_limit_type", TEXT, _LIMIT_TYPE_WHY)
TPM_TYPE = refused("tpm_limit_type", TEXT, _LIMIT_TYPE_WHY)
_ESTIMATE_WHY = ("llmbill reserves the most a call can cost (from max_tokens and the model's limits), never an "
                 "estimate that would let spend pass a budget")
ESTIMATED = refused("default_estimated_output_tokens", INTEGER, _ESTIMATE_WHY)
ESTIMATED_PER_MODEL = refused("default_estimated_output_tokens_per_model", JSON, _ESTIMATE_WHY)
ACCESS_GROUP_IDS = refused("access_group_ids", TEXTS, "llmbill keeps no access group objects; name the config's access "
                                                      "groups (model_info.access_groups) in 'models'")

# Features llmbill does not have: kept on the record.
AGENT_ID = stored("agent_id", TEXT)
CACHE_CONTROLS = stored("allowed_cache_controls", JSON)
CONFIG = stored("config", MAPPING)
MCP_RPM = stored("mcp_rpm_limit", JSON, "stored; llmbill has no MCP servers")
GUARDRAILS = stored("guardrails", TEXTS, "stored; llmbill has no guardrails")
POLICIES = stored("policies", TEXTS, "stored; llmbill has no guardrail policies")
PROMPTS = stored("prompts", TEXTS, "stored; llmbill has no prompt management")
OBJECT_PERM = Field("object_permission", OBJECT_PERMISSION, "stored",
                    "stored (MCP servers, vector stores, agents: llmbill has none); 'models' inside it is refused")
ROUTER_SETTINGS = stored("router_settings", MAPPING, "stored; llmbill routes round-robin")
PASSTHROUGH_ALLOWED = stored("allowed_passthrough_routes", JSON, "stored; llmbill has no pass-through routes")
PASSTHROUGH_DENIED = stored("denied_passthrough_routes", JSON, "stored; llmbill has no pass-through routes")
VECTOR_STORES = stored("allowed_vector_store_indexes", JSON, "stored; llmbill has no vector stores")
NO_GLOBAL_GUARDRAILS = stored("disable_global_guardrails", FLAG, "stored; llmbill has no guardrails")
ORGANIZATION_ID = stored("organization_id", TEXT, "stored; llmbill has no organizations")
ALIASES = honoured("aliases", TEXT_MAP, "model aliases {alias: model}: a call to the alias is checked and billed as "
                                        "the model it names")
KEY_ALIAS = honoured("key_alias", TEXT, "a name for the key (GET /key/list?key_alias=)")
DURATION_FIELD = honoured("duration", DURATION, "the key expires this long after it is made (30s, 1h, 30d, 1mo)")
PERMISSIONS = honoured("permissions", MAPPING, "{'get_spend_routes': true} lets the key read the /global/spend "
                                               "routes; other entries are stored")


def generate_base(user_id_doc: str, team_id_doc: str) -> tuple[Field, ...]:
    """LiteLLM's GenerateRequestBase: the fields /key/* and /user/* share."""
    return (KEY_ALIAS, DURATION_FIELD, MODELS, SPEND, MAX_BUDGET, honoured("user_id", TEXT, user_id_doc),
            honoured("team_id", TEXT, team_id_doc), AGENT_ID, PARALLEL, METADATA, TPM, RPM, BUDGET_DURATION,
            BUDGET_LIMITS, CACHE_CONTROLS, CONFIG, PERMISSIONS, MODEL_MAX_BUDGET, BUDGET_FALLBACKS, MODEL_RPM,
            MODEL_TPM, MCP_RPM, TAG_RPM, GUARDRAILS, POLICIES, PROMPTS, BLOCKED, ALIASES, OBJECT_PERM)
# Prepaid credits (proxy/credits): on customers, tiers and teams — whichever LAGO_API_CHARGE_BY bills.
CREDITS = honoured("credits", choice("lago", "off"),
                   "prepaid credits: 'lago' makes the Lago wallets of the billed id a limit (beside max_budget), "
                   "'off' exempts it; unset: a customer's tier's, else general_settings.credits")
