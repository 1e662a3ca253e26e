"""Who may do what beyond the route's own access level: team membership and key ownership.

Roles: proxy_admin acts as the master key; proxy_admin_viewer reads everything and changes nothing;
internal_user manages only its own keys and reads its own user and teams; internal_user_viewer only
reads its own. A team's `admin` members manage that team's keys and members.
"""

from __future__ import annotations

from typing import Any

from .auth import Principal
from .errors import auth_error
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


def require_key_write(state: ProxyState, principal: Principal, key: dict[str, Any]) -> None:
    if principal.is_admin:
        return
    if principal.role == "internal_user" and principal.user_id and key.get("user_id") == principal.user_id:
        return
    if is_team_admin(state, principal, key.get("team_id")):
        return
    raise auth_error("this key may not change that key (its own keys, or its team's as a team admin)", 403)


def require_team_admin(state: ProxyState, principal: Principal, team_id: str) -> None:
    if not is_team_admin(state, principal, team_id):
        raise auth_error(f"only a proxy admin or an admin of team {team_id!r} may do this", 403)


def can_read_team(state: ProxyState, principal: Principal, team_id: str) -> bool:
    return principal.reads_all or team_role(state, team_id, principal.user_id) is not None \
        or (principal.key is not None and principal.key.get("team_id") == team_id)
