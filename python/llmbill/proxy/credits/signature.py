"""Is this webhook from Lago? `X-Lago-Signature` over the exact body bytes, by
`X-Lago-Signature-Algorithm` (lago-wallets.md §3):
- `hmac`: base64(HMAC-SHA256(organisation HMAC key, body));
- `jwt` (Lago's default): an RS256 JWT whose claim `data` is the body and `iss` Lago's API URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from . import rsa


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def hmac_ok(key: str, body: bytes, signature: str) -> bool:
    if not key:
        return False
    expected = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature)


def jwt_ok(numbers: tuple[int, int] | None, issuer: str, body: bytes, token: str) -> bool:
    if numbers is None:
        return False
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header: Any = json.loads(_b64url(parts[0]))
        claims: Any = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error):
        return False
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        return False  # never "none" or HS256 with the public key as secret
    if not rsa.verify(numbers, f"{parts[0]}.{parts[1]}".encode(), signature):
        return False
    if issuer and claims.get("iss") != issuer:
        return False
    data = claims.get("data")
    return isinstance(data, str) and hmac.compare_digest(data.encode(), body)


def algorithm(headers: dict[str, str]) -> str:
    return (headers.get("x-lago-signature-algorithm") or "jwt").strip().lower()
