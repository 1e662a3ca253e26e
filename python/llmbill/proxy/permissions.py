"""Who may do what beyond the route's own access level: team membership and key ownership.

Roles: proxy_admin acts as the master key; proxy_admin_viewer reads everything and changes nothing;
internal_user manages only its own keys and reads its own user and teams; internal_user_viewer only
reads its own. A team's `admin` members manage that team's keys and members.

Nobody makes, moves or re-issues a key for a user who outranks them (auth.RANK), and a key a non-admin
makes for someone else is delegated: it acts only as itself (auth.principal_for), never with more than
its maker could. Which limits a change may lift: key_limits.py.
"""

from __future__ import annotations

from typing import Any

from .auth import Principal, above
from .errors import auth_error
from .keygen_settings import require_params
from .state import ProxyState


def team_role(state: ProxyState, team_id: str | None, user_id: str | None) -> str | None:
    """The member's role in the team ('admin' or 'user'), or None."""
    if not team_id or not user_id:
        return None
    team = state.cache.get("team", team_id) or {}
    for m in team.get("members_with_roles") or []:
        if m.get("user_id") == user_id:
            return str(m.get("role") or "user")
    return None


def member(state: ProxyState, team_id: str, user_id: str) -> dict[str, Any] | None:
    for m in (state.cache.get("team", team_id) or {}).get("members_with_roles") or []:
        if m.get("user_id") == user_id:
            return dict(m)
    return None


def is_team_admin(state: ProxyState, principal: Principal, team_id: str | None) -> bool:
    return principal.is_admin or (principal.role != "internal_user_viewer"
                                  and team_role(state, team_id, principal.user_id) == "admin")


def can_read_key(state: ProxyState, principal: Principal, key: dict[str, Any]) -> bool:
    if principal.reads_all or key["token_hash"] == principal.token_hash:
        return True
    if principal.user_id and key.get("user_id") == principal.user_id:
        return True
    return is_team_admin(state, principal, key.get("team_id"))


def role_of(state: ProxyState, user_id: str | None) -> str | None:
    user = state.cache.get("user", user_id) if user_id else None
    return str(user.get("user_role") or "internal_user") if user else None


def require_rank(state: ProxyState, principal: Principal, user_id: str | None, action: str) -> None:
    """403 when `user_id`'s role outranks the caller's: acting on its keys would act as it."""
    role = role_of(state, user_id)
    if role is not None and not principal.is_admin and above(role, principal.role):
        raise auth_error(f"user {user_id!r} is a {role}; a {principal.role} may not {action} its keys", 403)


def require_key_write(state: ProxyState, principal: Principal, key: dict[str, Any]) -> None:
    if principal.is_admin:
        return
    own = principal.user_id is not None and key.get("user_id") == principal.user_id
    if own and principal.role == "internal_user":
        return
    if is_team_admin(state, principal, key.get("team_id")):
        if not own:
            require_rank(state, principal, key.get("user_id"), "change")
        return
    raise auth_error("this key may not change that key (its own keys, or its team's as a team admin)", 403)


def key_authority(state: ProxyState, principal: Principal, key: dict[str, Any]) -> str:
    """Whose say a change to `key` carries (key_limits.LEVELS); the caller may already write it."""
    if principal.is_admin:
        return "proxy_admin"
    own = principal.user_id is not None and key.get("user_id") == principal.user_id
    return "team_admin" if not own and is_team_admin(state, principal, key.get("team_id")) else "owner"


def member_authority(principal: Principal, user_id: str | None) -> str:
    """Whose say a change to a team member's entry carries; the caller already admins the team."""
    if principal.is_admin:
        return "proxy_admin"
    return "owner" if user_id is not None and user_id == principal.user_id else "team_admin"


def place_key(state: ProxyState, principal: Principal, team_id: str | None, user_id: str | None,
              body: dict[str, Any] | None = None) -> str | None:
    """Checks that the caller may put a key (new, or moved) in `team_id` for `user_id`; returns the
    key's user (an internal user's own when it names none). `body`: a /key/generate request, checked
    against key_generation_settings' required params."""
    if principal.is_admin:
        return user_id
    settings = state.config.key_generation
    admin_here = bool(team_id) and is_team_admin(state, principal, team_id)
    if not admin_here and principal.role != "internal_user":
        raise auth_error("this key may not make or move keys", 403)
    if user_id is None and not admin_here:
        user_id = principal.user_id
    if user_id is None or user_id != principal.user_id:  # for another user, or for the team itself
        if not admin_here:
            raise auth_error("a key for another user is made or moved by a proxy admin, or by a team admin "
                             "within its team", 403)
        if user_id is not None:
            if team_role(state, team_id, user_id) is None:
                raise auth_error(f"user {user_id!r} is not a member of team {team_id!r}", 403)
            require_rank(state, principal, user_id, "make or move")
        my_team_role = "admin"
    elif team_id:
        found = team_role(state, team_id, user_id)
        if found is None:
            raise auth_error(f"user {user_id!r} is not a member of team {team_id!r}", 403)
        my_team_role = found
    else:
        if settings.personal_roles is not None and principal.role not in settings.personal_roles:
            raise auth_error(f"personal keys (no team) are restricted to {', '.join(settings.personal_roles)} "
                             "(litellm_settings.key_generation_settings)", 403)
        if body is not None:
            require_params(settings.personal_required, body, "personal")
        return user_id
    if my_team_role not in settings.team_member_roles:
        raise auth_error(f"team keys are made by team members with role {' or '.join(settings.team_member_roles)} "
                         "(litellm_settings.key_generation_settings)", 403)
    if body is not None:
        require_params(settings.team_required, body, "team")
    return user_id


def require_team_admin(state: ProxyState, principal: Principal, team_id: str) -> None:
    if not is_team_admin(state, principal, team_id):
        raise auth_error(f"only a proxy admin or an admin of team {team_id!r} may do this", 403)


def can_read_team(state: ProxyState, principal: Principal, team_id: str) -> bool:
    return principal.reads_all or team_role(state, team_id, principal.user_id) is not None \
        or (principal.key is not None and principal.key.get("team_id") == team_id)
