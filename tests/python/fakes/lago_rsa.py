"""An RSA key for the fake Lago's webhook JWTs (RS256), standard library only: the test venv has no
crypto package. Made once per process (Miller-Rabin primes); never used for anything but tests."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets

_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
_RSA_OID = bytes.fromhex("06092a864886f70d0101010500")  # rsaEncryption OID + NULL


def _probably_prime(n: int, rounds: int = 40) -> bool:
    if n < 4:
        return n in (2, 3)
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probably_prime(candidate):
            return candidate


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


class RsaKey:
    def __init__(self, bits: int = 2048) -> None:
        self.e = 65537
        while True:
            p, q = _prime(bits // 2), _prime(bits // 2)
            phi = (p - 1) * (q - 1)
            if p != q and phi % self.e:
                break
        self.n = p * q
        self.d = pow(self.e, -1, phi)

    def public_pem(self) -> bytes:
        rsa_key = _der(0x30, _int(self.n) + _int(self.e))
        spki = _der(0x30, _der(0x30, _RSA_OID) + _der(0x03, b"\x00" + rsa_key))
        body = base64.encodebytes(spki).replace(b"\n", b"")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + b"\n-----END PUBLIC KEY-----\n"

    def sign(self, message: bytes) -> bytes:
        size = (self.n.bit_length() + 7) // 8
        digest = _SHA256_PREFIX + hashlib.sha256(message).digest()
        em = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(size, "big")

    def jwt(self, claims: dict[str, object]) -> str:
        """An RS256 JWT, as Ruby's JWT.encode(claims, key, "RS256") makes it."""
        def part(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        head = part(json.dumps({"alg": "RS256"}, separators=(",", ":")).encode())
        body = part(json.dumps(claims, separators=(",", ":")).encode())
        return f"{head}.{body}.{part(self.sign(f'{head}.{body}'.encode()))}"


@functools.lru_cache(maxsize=1)
def shared_key() -> RsaKey:
    return RsaKey()
