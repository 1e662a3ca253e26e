"""Request bodies of the /user/* routes (LiteLLM 1.108's NewUserRequest / UpdateUserRequest).

/user/new makes the user and, unless `auto_create_key` is false, a key for it: the fields that
describe a key (alias, expiry, aliases, permissions...) go on that key; budgets and limits on the user.
"""

from __future__ import annotations

from dataclasses import replace

from ..auth import ROLES
from .common import ALIASES, DURATION_FIELD, KEY_ALIAS, generate_base
from .kinds import DURATION, FLAG, INTEGER, MAPPING, TEXT, TEXT_MAP, TEXTS, TEXTS_OR_OBJECTS, choice
from .spec import Body, honoured, refused, stored

# Fields of /user/new that describe its auto-created key rather than the user.
KEY_OF_USER = ("key_alias", "duration", "aliases", "permissions", "allowed_cache_controls", "config", "guardrails",
               "policies", "prompts", "object_permission", "agent_id")

USER_NEW = Body(generate_base("the user's id; generated when absent",
                              "a team the user joins as a member (its key is made in that team)") + (
    honoured("user_email", TEXT, "the user's email"),
    honoured("user_alias", TEXT, "a display name"),
    honoured("user_role", choice(*ROLES), "proxy_admin, proxy_admin_viewer, internal_user (default), "
                                          "internal_user_viewer"),
    honoured("teams", TEXTS_OR_OBJECTS, "teams to join: ids, or {team_id, max_budget_in_team, user_role}"),
    honoured("auto_create_key", FLAG, "make a key for the user (default true); the reply carries it"),
    stored("send_invite_email", FLAG, "stored; llmbill sends no email"),
    stored("sso_user_id", TEXT, "stored; llmbill has no SSO"),
    stored("organizations", TEXTS, "stored; llmbill has no organizations"),
    refused("password", TEXT, "llmbill has no password sign-in: users authenticate with keys"),
)).plus(replace(KEY_ALIAS, doc="the alias of the auto-created key"),
        replace(DURATION_FIELD, doc="the auto-created key expires this long after it is made"),
        replace(ALIASES, doc="model aliases of the auto-created key"),
        summary="Make an internal user (and, by default, a key for it).")

USER_UPDATE = USER_NEW.but("teams", "auto_create_key", "send_invite_email", "sso_user_id", "organizations").plus(
    honoured("user_id", TEXT, "the user to change (or name it by user_email)"),
    stored("key_alias", TEXT, "stored (LiteLLM does not implement it on /user/update)"),
    stored("duration", DURATION, "stored (LiteLLM does not implement it on /user/update)"),
    stored("aliases", TEXT_MAP, "stored (LiteLLM keeps a user's aliases nowhere)"),
    stored("permissions", MAPPING, "stored; a key's permissions are set on the key"),
    stored("team_id", TEXT, "stored (LiteLLM does not act on it on /user/update); join teams with /team/member_add"),
    summary="Change a user's fields.")

USER_DELETE = Body((honoured("user_ids", TEXTS, "users to delete, with their keys", required=True),),
                   "Delete users.")

USER_INFO_QUERY = (honoured("user_id", TEXT, "the user; a virtual key reads its own when absent"),)
USER_LIST_QUERY = (honoured("user_email", TEXT, "only users with this email"), honoured("page", INTEGER, "from 1"),
                   honoured("page_size", INTEGER, "users per page (at most 1000)"))
