"""Who is calling: the master key, a virtual key (stored hashed, served from memory), or nobody.

Keys are compared as SHA-256 digests; the raw key exists only in the /key/generate reply.

A virtual key acts with its user's role, with two exceptions: a blocked user's keys do nothing at all,
and a *delegated* key — one a non-admin made, moved or re-issued for another user — acts only as
itself (LLM calls, reading itself and its team), never with its user's rights: its secret is held by
someone who never had them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import auth_error, bad_request
from .http import Request

def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_key() -> str:
    return "sk-" + secrets.token_urlsafe(24)


def masked(raw: str) -> str:
    return f"sk-...{raw[-4:]}"


def presented_key(request: Request) -> str | None:
    """Authorization: Bearer <key>, or the x-api-key / api-key headers some SDKs send."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else auth.strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key")


ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")
# Who outranks whom when one acts for another's keys: reading everything is more than writing one's own.
RANK = {"internal_user_viewer": 0, "internal_user": 1, "proxy_admin_viewer": 2, "proxy_admin": 3}


def above(role: str, other: str) -> bool:
    """Whether `role` outranks `other` (an unknown role counts as internal_user)."""
    return RANK.get(role, 1) > RANK.get(other, 1)



@dataclass(frozen=True)
class Principal:
    """The caller: the master key (role proxy_admin, no key record), or a virtual key acting with its
    user's role (a key without a user reads only itself: internal_user_viewer)."""

    role: str
    key: dict[str, Any] | None = None  # the virtual key's record

    @property
    def is_admin(self) -> bool:
        return self.role == "proxy_admin"

    @property
    def reads_all(self) -> bool:
        return self.role in ("proxy_admin", "proxy_admin_viewer")

    @property
    def may_write(self) -> bool:
        return self.role in ("proxy_admin", "internal_user")

    @property
    def user_id(self) -> str | None:
        """The user this key acts for; None for a delegated key, which acts only as itself."""
        if not self.key or self.key.get("delegated"):
            return None
        return self.key.get("user_id")

    @property
    def token_hash(self) -> str:
        return self.key["token_hash"] if self.key else ""


MASTER = Principal("proxy_admin")


def check_key_usable(key: dict[str, Any], now: datetime | None = None) -> None:
    if key.get("blocked"):
        raise auth_error("this API key is blocked")
    expires = key.get("expires")
    if isinstance(expires, datetime) and expires <= (now or datetime.now(timezone.utc)):
        raise auth_error(f"this API key expired at {expires.isoformat()}")


def principal_for(key: dict[str, Any], user: dict[str, Any] | None) -> Principal:
    """A usable virtual key's principal. A blocked user is refused here, on every route: blocking must
    also stop the user managing keys (or unblocking itself)."""
    if user is not None and user.get("blocked"):
        raise auth_error(f"user {user.get('user_id')} is blocked")
    if user is None or key.get("delegated"):
        return Principal("internal_user_viewer", key)
    return Principal(str(user.get("user_role") or "internal_user"), key)


# A custom secret (`key` on /key/generate, `new_key` on /key/regenerate) is all that guards the key:
# 24+ characters after "sk-" (generated keys have 32), visible ASCII so every client can send it, and
# at least 6 different characters, which refuses placeholders like "sk-aaaa..." and rarely a real secret.
CUSTOM_KEY_MIN, CUSTOM_KEY_MAX, CUSTOM_KEY_DISTINCT = 24, 256, 6


def check_custom_key(raw: str, param: str) -> None:
    secret = raw[3:]
    if (not raw.startswith("sk-") or not CUSTOM_KEY_MIN <= len(secret) <= CUSTOM_KEY_MAX
            or not all("!" <= c <= "~" for c in secret) or len(set(secret)) < CUSTOM_KEY_DISTINCT):
        raise bad_request(f"'{param}' must be 'sk-' then {CUSTOM_KEY_MIN} to {CUSTOM_KEY_MAX} visible ASCII characters "
                          f"(at least {CUSTOM_KEY_DISTINCT} different ones); omit it to get a generated key", param)


def is_master(raw: str, master_key: str | None) -> bool:
    return master_key is not None and hmac.compare_digest(raw.encode(), master_key.encode())
