"""Which upstream failures a fallback may follow (fallbacks.py), decided where the failure is read.

A fallback is one more upstream call, so it may only follow a failure the provider did not bill: an
error status it answered (it refused the call), or a connection that was never made. Those are
raised as UpstreamFailure; a failure after the request was written (a timeout, a reply cut or
unreadable) may have run and been billed, so it stays a plain ProxyError and nothing follows it.

An UpstreamFailure's `kind` says which fallback list the failed call starts:
- GENERAL: 429 or a 5xx the provider answers when busy or down (routing.RETRY_STATUSES), or a refused
  connection — the failures a deployment's own retries follow, once those are spent;
- CONTEXT_WINDOW: the prompt does not fit the model (OpenAI's `context_length_exceeded`, Anthropic's
  "prompt is too long", Bedrock's "input is too long", Gemini's token count over the maximum, ...);
- CONTENT_POLICY: the provider's content filter refused it (`content_policy_violation`, Azure's
  `content_filter`);
- None: any other answered error (a malformed request, an unknown parameter): no fallback starts
  from it, though one already under way goes on to its next model (nothing was billed).

>>> kind_of(503, b"") == GENERAL
True
>>> kind_of(400, b'{"error": {"code": "context_length_exceeded", "message": "too long"}}') == CONTEXT_WINDOW
True
>>> kind_of(400, b'{"error": {"message": "unknown parameter: foo"}}') is None
True
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import ProxyError
from .fallback_rules import CONTENT_POLICY, CONTEXT_WINDOW, GENERAL
from .routing import RETRY_STATUSES

__all__ = ["CONTENT_POLICY", "CONTEXT_WINDOW", "GENERAL", "UpstreamFailure", "answered", "kind_of"]

# Lower-case marks of a context-length refusal in a provider's error body or message, across
# providers (each names it its own way; the codes first, then the messages' usual phrasing).
_CONTEXT_MARKS = ("context_length_exceeded", "context length", "maximum context", "context window",
                  "context limit", "prompt is too long", "input is too long", "too many input tokens",
                  "input token count", "maximum number of tokens", "reduce the length of the messages",
                  "prompt too long", "exceeds the model's maximum")
_POLICY_MARKS = ("content_policy_violation", "content_filter", "content policy", "content management policy",
                 "responsibleaipolicyviolation", "safety system")
_SCANNED = 4096  # an error body's head: where every provider puts its code and message


class UpstreamFailure(ProxyError):
    """A call the provider refused (or that never connected): nothing billed; `kind` is the fallback
    list it starts (None: none)."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 kind: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, message, type_, param, headers)
        self.kind = kind

    @classmethod
    def of(cls, error: ProxyError, kind: str | None) -> UpstreamFailure:
        """The client's error, as mapped from the provider's, marked with the fallback it starts."""
        return cls(error.status, error.message, error.type, error.param, kind, error.headers)


def kind_of(status: int, body: bytes, message: str = "") -> str | None:
    """The fallback list a provider's error reply starts: by the status it answered (before any
    mapping to the client's), its body and the message read from it."""
    if status in RETRY_STATUSES:
        return GENERAL
    if not 400 <= status < 500:
        return None
    text = body[:_SCANNED].decode("utf-8", "replace").lower() + "\n" + message.lower()
    if any(mark in text for mark in _CONTEXT_MARKS):
        return CONTEXT_WINDOW
    if any(mark in text for mark in _POLICY_MARKS):
        return CONTENT_POLICY
    return None


def answered(error: ProxyError, status: int, body: bytes) -> UpstreamFailure:
    """`error` (the provider's error reply as the client gets it) marked by what the provider answered."""
    return UpstreamFailure.of(error, kind_of(status, body, error.message))
