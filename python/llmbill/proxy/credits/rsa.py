"""RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature checks, standard library only: the proxy ships
no crypto package, and verifying needs only the public key's n and e and one modular power."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# DER of DigestInfo{sha256} up to the digest (RFC 8017 §9.2, note 1).
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----(.+?)-----END \1-----", re.S)


class KeyFormatError(ValueError):
    """Not an RSA public key this module reads."""


def _tlv(der: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after) of the DER element at `at`."""
    if at + 2 > len(der):
        raise KeyFormatError("truncated DER")
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(der):
            raise KeyFormatError("bad DER length")
        length, at = int.from_bytes(der[at:at + count], "big"), at + count
    if at + length > len(der):
        raise KeyFormatError("truncated DER")
    return tag, der[at:at + length], at + length


def _rsa_numbers(der: bytes) -> tuple[int, int]:
    """n, e of an RSAPublicKey (PKCS#1) SEQUENCE{INTEGER n, INTEGER e}."""
    tag, seq, _ = _tlv(der, 0)
    if tag != 0x30:
        raise KeyFormatError("not a SEQUENCE")
    tag_n, n, at = _tlv(seq, 0)
    tag_e, e, _ = _tlv(seq, at)
    if tag_n != 0x02 or tag_e != 0x02:
        raise KeyFormatError("not RSA integers")
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


def public_numbers(pem: bytes) -> tuple[int, int]:
    """n, e from a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) or "RSA PUBLIC KEY" (PKCS#1)."""
    found = _PEM.search(pem)
    if found is None:
        raise KeyFormatError("no PEM block")
    der = base64.b64decode(b"".join(found.group(2).split()))
    if found.group(1) == b"RSA PUBLIC KEY":
        return _rsa_numbers(der)
    if found.group(1) != b"PUBLIC KEY":
        raise KeyFormatError(f"unexpected PEM block {found.group(1).decode()!r}")
    tag, spki, _ = _tlv(der, 0)
    _, _, at = _tlv(spki, 0)  # AlgorithmIdentifier (rsaEncryption: the only kind Lago makes)
    tag, bits, _ = _tlv(spki, at)
    if tag != 0x03 or not bits or bits[0] != 0:
        raise KeyFormatError("no BIT STRING key")
    return _rsa_numbers(bits[1:])


def verify(numbers: tuple[int, int], message: bytes, signature: bytes) -> bool:
    n, e = numbers
    size = (n.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(size, "big")
    digest = _SHA256_PREFIX + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
    return hmac.compare_digest(em, expected)
