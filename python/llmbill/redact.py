"""Secrets out of what llmbill prints, logs or answers: the password of a URL's user info and the
values of secret-looking query parameters (`?password=`, `?key=`, ...) become `***`.

`url()` takes one URL; `text()` finds URLs inside any message (an exception's text, a config error,
a log line) and masks each. Both work on the text itself rather than through urllib's parser, which
raises on some malformed URLs, exactly the kind a config error is about.

>>> url("postgresql://llm:hunter2@db:5432/llmbill")
'postgresql://llm:***@db:5432/llmbill'
>>> text("cannot connect to 'https://u:pw@lago.internal/api/v1': refused")
"cannot connect to 'https://u:***@lago.internal/api/v1': refused"
>>> origin("https://hooks.example/services/T0/B0/XyZ")
'https://hooks.example'
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://netloc — the netloc runs to the first / ? # or blank, as in urllib.parse.urlsplit.
_NETLOC = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<netloc>[^/?#\s]*)")
# A query parameter whose value is a credential: libpq's password/sslpassword, API keys, tokens,
# signatures. Only after ? or & (or ;), so a log line's own key=value fields are left alone.
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey)|key|sig|signature|auth)=)"
    r"(?P<value>[^&#\s'\"]*)", re.IGNORECASE)


def _netloc(match: re.Match[str]) -> str:
    netloc = match["netloc"]
    userinfo, at, host = netloc.rpartition("@")  # a raw '@' in a password: the last one ends the user info
    if not at:
        return match[0]
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return match[0]
    return f"{match['scheme']}{user}:{MASK}@{host}"


def _param(match: re.Match[str]) -> str:
    return match["name"] + MASK if match["value"] else match[0]


def text(value: str) -> str:
    """`value` with every URL's password and secret query parameter masked (the same object when
    there is nothing to mask, so the common case costs two substring tests)."""
    masked = value
    if "://" in masked:
        masked = _NETLOC.sub(_netloc, masked)
    if "=" in masked:
        masked = _SECRET_PARAM.sub(_param, masked)
    return value if masked == value else masked


def url(value: str) -> str:
    """One URL, its password and secret query parameters masked."""
    return text(value)


def origin(value: str) -> str:
    """scheme://host[:port] only: for URLs whose path is itself the secret (chat webhooks carry their
    token in the path), and whose user info is never shown."""
    match = _NETLOC.match(value.strip())
    if match is None or not match["netloc"]:
        return "(unparsable URL)"
    return match["scheme"] + match["netloc"].rpartition("@")[2]
