"""A strict fake of Google's OAuth2 token endpoint for service accounts (the JWT bearer grant).

    account = FakeServiceAccount.generate("http://127.0.0.1:<port>/token")   # an RSA key pair
    oauth = FakeGoogleOAuth(account)
    status, body = oauth.exchange(headers, raw_form)        # what POST /token answers
    oauth.valid(token)                                      # a token it issued and that has not expired

The exchange is checked as Google's endpoint does: form-encoded `grant_type` =
urn:ietf:params:oauth:grant-type:jwt-bearer and an `assertion` that is a JWT signed RS256 with the
service account's private key (checked with its public key), `iss` = the account's email, `aud` =
Google's token endpoint, a `scope`, and `iat`/`exp` current with at most an hour between them. The clock that ages
issued tokens is injectable, so tests expire them without sleeping.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The assertion's audience is Google's token endpoint, whatever URI the key names for the exchange.
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass(frozen=True)
class FakeServiceAccount:
    info: dict[str, Any]  # the key file's JSON, as Google issues it
    public_key: rsa.RSAPublicKey

    @staticmethod
    def generate(token_uri: str, project_id: str = "fake-project", key: rsa.RSAPrivateKey | None = None
                 ) -> FakeServiceAccount:
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        email = f"llmbill-test@{project_id}.iam.gserviceaccount.com"
        info = {"type": "service_account", "project_id": project_id, "private_key_id": secrets.token_hex(20),
                "private_key": pem, "client_email": email, "client_id": "1234567890",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri}
        return FakeServiceAccount(info, key.public_key())


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeGoogleOAuth:
    def __init__(self, account: FakeServiceAccount, lifetime: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.account, self.lifetime, self.clock = account, lifetime, clock
        self.exchanges = 0
        self.refusals: list[str] = []
        self._issued: dict[str, float] = {}  # token → expiry
        self._lock = threading.Lock()

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and self.clock() < expiry

    def exchange(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        problem = self._problem(headers, raw)
        if problem is not None:
            with self._lock:
                self.refusals.append(problem)
            return 400, {"error": "invalid_grant", "error_description": problem}
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.exchanges += 1
            self._issued[token] = self.clock() + self.lifetime
        return 200, {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}

    def _problem(self, headers: dict[str, str], raw: bytes) -> str | None:
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return "the token request must be form-encoded"
        form = dict(parse_qsl(raw.decode()))
        if form.get("grant_type") != JWT_GRANT:
            return f"Invalid grant_type: {form.get('grant_type')}"
        try:
            head64, claims64, signature64 = form.get("assertion", "").split(".")
            header, claims = json.loads(_b64decode(head64)), json.loads(_b64decode(claims64))
            self.account.public_key.verify(_b64decode(signature64), f"{head64}.{claims64}".encode(),
                                           padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return "Invalid JWT Signature."
        now = time.time()  # google-auth signs with the real time; `clock` only ages the issued tokens
        info = self.account.info
        if header.get("alg") != "RS256" or header.get("kid") != info["private_key_id"]:
            return "Invalid JWT header"
        if claims.get("iss") != info["client_email"] or claims.get("aud") != TOKEN_AUDIENCE:
            return "Invalid JWT: iss or aud"
        if not str(claims.get("scope") or "").strip():
            return "Invalid OAuth scope or ID token audience provided."
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or not iat - 300 <= now < exp or exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None
