"""Request bodies of the /team/* routes (LiteLLM 1.108's NewTeamRequest / UpdateTeamRequest)."""

from __future__ import annotations

from .common import (ACCESS_GROUP_IDS, BLOCKED, CREDITS, BUDGET_DURATION, BUDGET_LIMITS, ESTIMATED, ESTIMATED_PER_MODEL,
                     GUARDRAILS, MAX_BUDGET, MCP_RPM, METADATA, MODEL_MAX_BUDGET, MODEL_RPM, MODEL_TPM, MODELS,
                     NO_GLOBAL_GUARDRAILS, OBJECT_PERM, ORGANIZATION_ID, PARALLEL, PASSTHROUGH_ALLOWED,
                     PASSTHROUGH_DENIED, POLICIES, PROMPTS, ROUTER_SETTINGS, RPM, RPM_TYPE, SOFT_BUDGET, TAGS, TPD, TPM,
                     TPM_TYPE, VECTOR_STORES)
from .kinds import DURATION, FLAG, INTEGER, JSON, MAPPING, MONEY, OBJECTS, TEXT, TEXT_MAP, TEXTS
from .spec import Body, honoured, refused, stored

TEAM_NEW = Body((
    honoured("team_alias", TEXT, "a display name"),
    honoured("team_id", TEXT, "the team's id; generated when absent"),
    ORGANIZATION_ID,
    honoured("admins", TEXTS, "user ids added as team admins (LiteLLM's older form of members_with_roles)"),
    honoured("members", TEXTS, "user ids added as members (LiteLLM's older form of members_with_roles)"),
    honoured("members_with_roles", OBJECTS, "[{role: admin|user, user_id | user_email}]; unknown users are created"),
    refused("team_member_permissions", TEXTS, "llmbill's roles are fixed: a team member manages only its own keys, "
                                              "a team admin the team"),
    METADATA, TPM, RPM, TPD, MAX_BUDGET, SOFT_BUDGET, BUDGET_DURATION, BUDGET_LIMITS, MODELS, CREDITS,
    BLOCKED, PARALLEL, ROUTER_SETTINGS, ACCESS_GROUP_IDS,
    refused("default_team_member_models", TEXTS, "llmbill gives members' new keys no default models; set models on "
                                                 "each key, or the team's models"),
    honoured("model_aliases", TEXT_MAP, "model aliases {alias: model} for every key of the team; a key's own "
                                        "aliases win"),
    MODEL_MAX_BUDGET, TAGS, GUARDRAILS, POLICIES, PROMPTS, OBJECT_PERM, PASSTHROUGH_ALLOWED, PASSTHROUGH_DENIED,
    NO_GLOBAL_GUARDRAILS,
    refused("require_trace_id", FLAG, "llmbill does not check calls for a trace id, so it could not require one"),
    stored("secret_manager_settings", MAPPING, "stored; llmbill reads upstream secrets from its config"),
    MODEL_RPM, RPM_TYPE, TPM_TYPE, MODEL_TPM, ESTIMATED, ESTIMATED_PER_MODEL, MCP_RPM,
    honoured("team_member_budget", MONEY, "each member's budget in the team (max_budget_in_team) unless set per member"),
    honoured("team_member_rpm_limit", INTEGER, "requests per minute of each member (its keys in the team together)"),
    honoured("team_member_tpm_limit", INTEGER, "tokens per minute of each member (its keys in the team together)"),
    refused("team_member_key_duration", DURATION, "llmbill gives members' keys no default expiry; send duration on "
                                                  "/key/generate"),
    honoured("team_member_budget_duration", DURATION, "the window of each member's budget in the team: its spend "
                                                      "there resets at each window's end (null: never)"),
    refused("team_member_model_max_budget", JSON, "llmbill keeps per-model budgets on keys, users, teams, customers "
                                                  "and tiers, not per team member"),
    VECTOR_STORES,
    stored("enforced_batch_output_expires_after", MAPPING, "stored; llmbill has no batch API"),
    stored("enforced_file_expires_after", MAPPING, "stored; llmbill has no files API"),
), "Make a team.")

TEAM_UPDATE = TEAM_NEW.but("admins", "members", "members_with_roles", "team_member_permissions").plus(
    honoured("team_id", TEXT, "the team to change", required=True), summary="Change a team's fields.")

TEAM_DELETE = Body((honoured("team_ids", TEXTS, "teams to delete, with their keys", required=True),), "Delete teams.")
TEAM_ONE = Body((honoured("team_id", TEXT, "the team", required=True),), "Block or unblock a team.")
MEMBER_ADD = Body((honoured("team_id", TEXT, "the team", required=True),
                   honoured("member", JSON, "one member {role, user_id | user_email} or a list", required=True),
                   honoured("max_budget_in_team", MONEY, "each added member's budget in the team")),
                  "Add members (unknown users are created).")
MEMBER_DELETE = Body((honoured("team_id", TEXT, "the team", required=True),
                      honoured("user_id", TEXT, "the member"), honoured("user_email", TEXT, "or its email")),
                     "Remove a member.")
MEMBER_UPDATE = MEMBER_DELETE.plus(honoured("role", TEXT, "admin or user"),
                                   honoured("max_budget_in_team", MONEY, "the member's budget in the team"),
                                   summary="Change a member's role or budget.")

TEAM_INFO_QUERY = (honoured("team_id", TEXT, "the team", required=True),)
