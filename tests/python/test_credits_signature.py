"""Webhook signatures (proxy/credits/signature.py, rsa.py): Lago's HMAC and RS256 JWT schemes,
checked over the raw body; anything else is refused."""

from __future__ import annotations

import base64
import json

from llmbill.proxy.credits import rsa, signature
from tests.python.fakes.lago_rsa import shared_key
from tests.python.fakes.lago_wallets import Wallets

BODY = b'{"webhook_type":"wallet.updated","object_type":"wallet","wallet":{"external_customer_id":"c"}}'


def _signer() -> Wallets:
    return Wallets(None, dict, lambda: 0)  # type: ignore[arg-type]  # signing needs neither store nor clock


def test_hmac_accepts_lagos_signature_and_refuses_a_changed_body_or_key() -> None:
    sent = _signer().sign(BODY, "hmac")
    assert signature.hmac_ok("fake-hmac-key", BODY, sent)
    assert not signature.hmac_ok("fake-hmac-key", BODY.replace(b'"c"', b'"d"'), sent)
    assert not signature.hmac_ok("another-key", BODY, sent)
    assert not signature.hmac_ok("", BODY, sent)  # no key configured: nothing verifies


def test_jwt_accepts_rs256_over_the_exact_body_with_the_issuer() -> None:
    numbers = rsa.public_numbers(shared_key().public_pem())
    token = _signer().sign(BODY, "jwt")
    assert signature.jwt_ok(numbers, "http://fake-lago", BODY, token)
    assert signature.jwt_ok(numbers, "", BODY, token)  # no issuer configured: any
    assert not signature.jwt_ok(numbers, "http://other", BODY, token)
    assert not signature.jwt_ok(numbers, "", BODY + b" ", token)  # data must be the body, byte for byte
    assert not signature.jwt_ok(None, "", BODY, token)  # public key not read


def _part(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_jwt_refuses_forgeries_alg_none_and_a_re_signed_payload() -> None:
    numbers = rsa.public_numbers(shared_key().public_pem())
    head, _, sig = _signer().sign(BODY, "jwt").split(".")
    forged_claims = _part({"data": BODY.decode().replace('"c"', '"d"'), "iss": "http://fake-lago"})
    assert not signature.jwt_ok(numbers, "", BODY.replace(b'"c"', b'"d"'), f"{head}.{forged_claims}.{sig}")
    none = f"{_part({'alg': 'none'})}.{_part({'data': BODY.decode()})}."
    assert not signature.jwt_ok(numbers, "", BODY, none)
    assert not signature.jwt_ok(numbers, "", BODY, "not-a-jwt")


def test_public_key_reads_spki_pem_as_lago_serves_it() -> None:
    key = shared_key()
    assert rsa.public_numbers(key.public_pem()) == (key.n, key.e)


def test_algorithm_defaults_to_jwt_as_lagos_endpoints_do() -> None:
    assert signature.algorithm({}) == "jwt"
    assert signature.algorithm({"x-lago-signature-algorithm": "HMAC"}) == "hmac"
