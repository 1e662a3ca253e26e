"""Request bodies of the /key/* routes (LiteLLM 1.108's GenerateKeyRequest / UpdateKeyRequest, plus
llmbill's customer binding)."""

from __future__ import annotations

from .common import (ACCESS_GROUP_IDS, ESTIMATED, ESTIMATED_PER_MODEL, NO_GLOBAL_GUARDRAILS, ORGANIZATION_ID,
                     PASSTHROUGH_ALLOWED, PASSTHROUGH_DENIED, ROUTER_SETTINGS, RPM_TYPE, SOFT_BUDGET, TAGS, TPD,
                     TPM_TYPE, VECTOR_STORES, generate_base)
from .kinds import DATETIME, FLAG, INTEGER, MONEY, TEXT, TEXTS, TEXTS_MAP, choice
from .spec import Body, honoured, refused, stored

KEY_TYPES = ("default", "llm_api", "management", "read_only")

_KEY_ONLY = (
    honoured("key", TEXT, "a custom key (sk-...); generated when absent"),
    TPD, ESTIMATED, ESTIMATED_PER_MODEL,
    honoured("budget_id", TEXT, "a budget tier (/budget/new): the key takes its limits where it has none of its own"),
    refused("end_user_budget_id", TEXT, "llmbill sets customers' default tier for the whole proxy or per customer: "
                                        "litellm_settings.max_end_user_budget_id or the customer's budget_id"),
    TAGS, NO_GLOBAL_GUARDRAILS,
    stored("enable_prompt_caching", FLAG, "stored; llmbill forwards requests as sent"),
    refused("throttle_on_budget_exceeded", FLAG, "llmbill refuses a call over budget rather than slowing it down"),
    honoured("enforced_params", TEXTS, "body fields every call must send, e.g. 'user' or 'metadata.generation_name'"),
    honoured("allowed_routes", TEXTS, "the routes the key may call: paths (a path also allows those under it) or "
                                      "LiteLLM's groups llm_api_routes, info_routes, management_routes"),
    PASSTHROUGH_ALLOWED, PASSTHROUGH_DENIED, VECTOR_STORES, RPM_TYPE, TPM_TYPE, ROUTER_SETTINGS, ACCESS_GROUP_IDS,
    SOFT_BUDGET,
    stored("send_invite_email", FLAG, "stored; llmbill sends no email"),
    honoured("key_type", choice(*KEY_TYPES), "llm_api, management, read_only: sets allowed_routes to that group"),
    refused("auto_rotate", FLAG, "llmbill does not rotate keys on a schedule; rotate with /key/regenerate",
            default=False),
    stored("rotation_interval", TEXT, "stored; llmbill does not rotate keys on a schedule"),
    ORGANIZATION_ID,
    stored("project_id", TEXT, "stored; llmbill has no projects"),
    honoured("customer_id", TEXT, "llmbill: the one customer this key bills"),
    honoured("allowed_customer_ids", TEXTS, "llmbill: the customers this key may bill"),
)

# LiteLLM 1.92+: a key's setting (on /user/* it stays refused: common.BUDGET_FALLBACKS).
BUDGET_FALLBACKS = honoured("budget_fallbacks", TEXTS_MAP,
                            "{model: [fallback, ...]}: a call its key's model_max_budget refuses goes to the first "
                            "fallback a direct call would be admitted for, billed as that model")

KEY_GENERATE = Body(generate_base("the key's internal user (created if unknown)",
                                  "the key's team (created if unknown)") + _KEY_ONLY,
                    "Make a virtual key; the reply carries the raw key, shown only here.").plus(BUDGET_FALLBACKS)

KEY_UPDATE = KEY_GENERATE.but("send_invite_email", "key_type").plus(
    honoured("key", TEXT, "the key to change (raw or its hash)", required=True),
    honoured("temp_budget_increase", MONEY, "added to max_budget until temp_budget_expiry"),
    honoured("temp_budget_expiry", DATETIME, "when temp_budget_increase stops counting (ISO-8601)"),
    summary="Change a key's fields; only those sent change.")

KEY_DELETE = Body((honoured("keys", TEXTS, "keys to delete (raw or hashed)"),
                   honoured("key_aliases", TEXTS, "or their aliases")), "Delete keys.")
KEY_REGENERATE = Body((honoured("key", TEXT, "the key to re-issue", required=True),
                       honoured("new_key", TEXT, "a custom new secret; generated when absent")),
                      "A new secret for the same key record; the old one stops working.")
KEY_ONE = Body((honoured("key", TEXT, "the key (raw or hashed)", required=True),), "Block or unblock a key.")

KEY_INFO_QUERY = (honoured("key", TEXT, "the key (raw or hashed); a virtual key reads itself when absent"),)
KEY_LIST_QUERY = (honoured("team_id", TEXT, "only this team's keys"), honoured("user_id", TEXT, "only this user's"),
                  honoured("key_alias", TEXT, "only keys with this alias"), honoured("page", INTEGER, "from 1"),
                  honoured("size", INTEGER, "keys per page (at most 1000)"))
