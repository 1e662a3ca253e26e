"""Who is calling: the master key, a virtual key (stored hashed, served from memory), or nobody.

Keys are compared as SHA-256 digests; the raw key exists only in the /key/generate reply.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import auth_error
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
        return self.key.get("user_id") if self.key else None

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


def is_master(raw: str, master_key: str | None) -> bool:
    return master_key is not None and hmac.compare_digest(raw.encode(), master_key.encode())
