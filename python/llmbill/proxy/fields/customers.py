"""Request bodies of the /customer/* (and /end_user/*) and /budget/* routes (LiteLLM 1.108's
NewCustomerRequest / UpdateCustomerRequest and BudgetNewRequest)."""

from __future__ import annotations

from .common import (BLOCKED, CREDITS, BUDGET_DURATION, MAX_BUDGET, METADATA, MODEL_MAX_BUDGET, OBJECT_PERM, PARALLEL, RPM,
                     SOFT_BUDGET, SPEND, TPD, TPM)
from .kinds import DATETIME, INTEGER, MONEY, TEXT, TEXTS, choice
from .spec import Body, honoured, refused, stored

REGIONS = ("eu", "us")
RESET_AT = honoured("budget_reset_at", DATETIME, "when the current budget window ends (ISO-8601); the next one "
                                                 "follows budget_duration from there")

# llmbill's own (margin.py): what a customer pays over cost; the customer's wins over its tier's,
# which wins over litellm_settings.cost_margin_config.
MARGIN_PERCENT = honoured("margin_percent", MONEY, "a margin in percent of the cost (20 = 20%) on every call")
MARGIN_FIXED = honoured("margin_fixed", MONEY, "a fixed amount in USD added to every call")

_BUDGET = (MAX_BUDGET, SOFT_BUDGET, PARALLEL, TPM, RPM, TPD, BUDGET_DURATION, MODEL_MAX_BUDGET, CREDITS, MARGIN_PERCENT,
           MARGIN_FIXED, RESET_AT)

BUDGET_NEW = Body((honoured("budget_id", TEXT, "the tier's id", required=True),) + _BUDGET,
                  "Make a budget tier (customers on it each get these limits).")
BUDGET_UPDATE = BUDGET_NEW.plus(summary="Change a budget tier.")
BUDGET_INFO = Body((honoured("budgets", TEXTS, "tier ids", required=True),), "Read tiers.")
BUDGET_DELETE = Body((honoured("id", TEXT, "the tier to delete"), honoured("budget_id", TEXT, "or this")),
                     "Delete a tier no customer is on.")

CUSTOMER_NEW = Body((
    honoured("budget_id", TEXT, "the customer's pricing tier (not with max_budget)"),
    *_BUDGET[:-1],  # budget_reset_at: below, after the id
    RESET_AT,
    honoured("user_id", TEXT, "the customer's id (the `user` its calls send)", required=True),
    honoured("alias", TEXT, "a display name"),
    BLOCKED, SPEND,
    refused("allowed_model_region", choice(*REGIONS), "llmbill's deployments have no region to route by, so the "
                                                       "restriction could not be kept"),
    stored("default_model", TEXT, "stored and shown back (LiteLLM's proxy does not route by it either)"),
    honoured("models", TEXTS, "the models the customer may call (empty: any)"),
    OBJECT_PERM, METADATA,
), "Make a customer (end user).")
CUSTOMER_UPDATE = CUSTOMER_NEW.plus(summary="Change a customer's fields.")
CUSTOMER_IDS = Body((honoured("user_ids", TEXTS, "customer ids", required=True),), "Act on several customers.")

CUSTOMER_INFO_QUERY = (honoured("end_user_id", TEXT, "the customer", required=True),)
CUSTOMER_LIST_QUERY = (honoured("budget_id", TEXT, "only customers on this tier"), honoured("page", INTEGER, "from 1"),
                       honoured("size", INTEGER, "customers per page (at most 10000)"))
BUDGET_INFO_QUERY = (honoured("budget_id", TEXT, "the tier (GET)"),)
