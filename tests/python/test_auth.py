"""Principals from virtual keys: roles, blocked users, delegated keys; custom key strength (auth.py)."""

from __future__ import annotations

import pytest

from llmbill.proxy.auth import above, check_custom_key, new_key, principal_for
from llmbill.proxy.errors import ProxyError

KEY = {"token_hash": "h", "user_id": "ann"}


def test_a_key_acts_with_its_users_role() -> None:
    p = principal_for(KEY, {"user_id": "ann", "user_role": "proxy_admin"})
    assert p.is_admin and p.user_id == "ann"
    assert principal_for(KEY, None).role == "internal_user_viewer"  # no user record: reads only itself


def test_a_blocked_users_keys_are_refused() -> None:
    with pytest.raises(ProxyError) as refused:
        principal_for(KEY, {"user_id": "ann", "user_role": "proxy_admin", "blocked": True})
    assert refused.value.status == 401 and refused.value.message == "user ann is blocked"


def test_a_delegated_key_acts_only_as_itself() -> None:
    p = principal_for({**KEY, "delegated": True}, {"user_id": "ann", "user_role": "proxy_admin"})
    assert p.role == "internal_user_viewer" and p.user_id is None and p.key is not None


def test_ranks() -> None:
    assert above("proxy_admin", "proxy_admin_viewer") and above("proxy_admin_viewer", "internal_user")
    assert above("internal_user", "internal_user_viewer") and not above("internal_user", "internal_user")


@pytest.mark.parametrize("raw", [
    "sk-12345678", "sk-" + "x" * 23, "sk-" + "ab" * 20, "pk-" + "a1b2c3d4e5f6g7h8i9j0k1l2",
    "sk-" + "a1b2c3d4e5f6 7h8i9j0k1l2", "sk-" + "a1b2c3d4e5f6g7h8é9j0k1l2", "sk-" + "Ab1" * 90])
def test_weak_custom_keys_are_refused(raw: str) -> None:
    with pytest.raises(ProxyError) as refused:
        check_custom_key(raw, "key")
    assert refused.value.status == 400 and refused.value.param == "key"


def test_strong_custom_keys_pass() -> None:
    check_custom_key("sk-" + "a1b2c3d4e5f6g7h8i9j0k1l2", "key")
    check_custom_key(new_key(), "new_key")
