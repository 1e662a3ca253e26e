"""The most one call can cost, reserved against every budget on it before it is forwarded (guards.admit).

It must never be below what the call is then billed, or parallel calls overspend a budget. So:

- prompt tokens ≤ the bytes of the whole body sent upstream (a BPE token is at least one byte; the
  body holds everything the provider tokenizes: messages or prompt or input, tools, functions,
  response_format, ... and JSON punctuation, which more than covers the chat template's few tokens
  per message). Audio parts are base64 in the body: a second of audio is ≥ 1,000 bytes, far more
  than its tokens.
- plus IMAGE_TOKENS for each image part (its URL's bytes are counted too: a provider that
  tokenizes a data URL as text bills at most those bytes).
- a part whose tokens its bytes do not bound (a file — a PDF's pages become text and images —, any
  part type not known here) or a web search adds the model's whole context window.
- completion tokens ≤ (max_completion_tokens or max_tokens, else the model's output limit) × the
  number of choices generated (max(n, best_of)); a `prediction`'s rejected tokens bill as output.
- each side at the model's highest rate of that side (ModelPrice.upper_bound, in C++).

An unpriced model has no bound: the caller refuses it where a budget applies (guards.admit).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from .deployments import UNKNOWN_OUTPUT_TOKENS, Deployment
from .errors import bad_request
from .limits import usd_of_units

# The most tokens OpenAI documents for one image: gpt-4o-mini at detail "high" (an image fitted into
# 768×2048 is 8 tiles of 512 px: 8 × 5,667 + 2,833). Every other model costs fewer: gpt-4o and the
# o-series 85 + 8 × 170, patch-based models ≤ 1,536 patches (10,000 at detail "original") × ≤ 2.46.
IMAGE_TOKENS = 48_169
IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
# Parts whose bytes bound their tokens: text, audio (base64), Anthropic's tool blocks and thinking
# (JSON or text the provider reads as text; a tool_result's own parts are walked too).
BOUNDED_PARTS = frozenset({"text", "input_text", "output_text", "input_audio", "refusal", "tool_use", "tool_result",
                           "thinking", "redacted_thinking"}) | IMAGE_PARTS
# When neither model_info nor the table knows a model's context window.
UNKNOWN_CONTEXT_TOKENS = 10_485_760  # the largest context window in the bundled table
MAX_CHOICES = 128  # OpenAI's limit for n
MAX_OUTPUT_TOKENS = 100_000_000  # far past any model's; keeps the product inside 64-bit counts


class UpperBound:
    """The bound of one call: `units` (of 1e-19 USD, as the core prices it and the guard book
    reserves it) and `cost` in USD, made from them when first read (a plain call never reads it);
    `unpriced`, the model's name when it has no price (no bound exists; cost 0)."""

    __slots__ = ("_cost", "unpriced", "units")

    def __init__(self, cost: Decimal | None, unpriced: str | None = None, units: int | None = None) -> None:
        self._cost, self.unpriced, self.units = cost, unpriced, units

    @property
    def cost(self) -> Decimal:
        if self._cost is None:
            self._cost = usd_of_units(self.units or 0)
        return self._cost


def choices(body: dict[str, Any]) -> int:
    """How many completions the upstream generates (and bills): max(n, best_of, 1); a malformed
    count is a 400 naming the field."""
    count = 1
    for name in ("n", "best_of"):
        v = body.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CHOICES:
            raise bad_request(f"'{name}' must be an integer from 1 to {MAX_CHOICES}", name)
        count = max(count, v)
    return count


def completion_limit(d: Deployment, body: dict[str, Any]) -> int:
    """Completion tokens of one choice: what the request allows, else the model's output limit."""
    asked = 0
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        v = body.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            if v > MAX_OUTPUT_TOKENS:
                raise bad_request(f"'{name}' must be at most {MAX_OUTPUT_TOKENS}", name)
            asked = max(asked, v)  # both given: the larger, whichever the upstream honours
    return asked or d.max_output_tokens or UNKNOWN_OUTPUT_TOKENS


def _parts_extra(content: Any) -> tuple[int, bool]:
    """(image tokens, whether a part is unbounded) of one content list, tool results' parts included."""
    extra, unbounded = 0, False
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in IMAGE_PARTS:
            extra += IMAGE_TOKENS
        elif kind not in BOUNDED_PARTS:
            unbounded = True
        elif kind == "tool_result":
            more, open_ended = _parts_extra(part.get("content"))
            extra, unbounded = extra + more, unbounded or open_ended
    return extra, unbounded


def _stored_or_searched(body: dict[str, Any]) -> bool:
    """Tokens the body does not carry: a web search's results (asked for even by an empty options
    object), a stored conversation the Responses API prepends (previous_response_id, conversation)."""
    return "web_search_options" in body or bool(body.get("previous_response_id") or body.get("conversation"))


def _content_extra(d: Deployment, body: dict[str, Any]) -> int:
    """Prompt tokens beyond the body's bytes: images, and parts whose bytes bound nothing. Chat's
    `messages`, Anthropic's `messages` (and `system` blocks), and the Responses API's `input` items."""
    extra = 0
    unbounded = _stored_or_searched(body)
    messages, inputs = body.get("messages"), body.get("input")
    items: list[Any] = messages if isinstance(messages, list) else inputs if isinstance(inputs, list) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "content" in item:
            more, open_ended = _parts_extra(item["content"])
        else:  # a Responses input item that is not a message: a part, a function call or its output
            kind = item.get("type")
            more = IMAGE_TOKENS if kind in IMAGE_PARTS else 0
            open_ended = kind in ("input_file", "file", "item_reference")
        extra, unbounded = extra + more, unbounded or open_ended
    if isinstance(body.get("system"), list):
        more, open_ended = _parts_extra(body["system"])
        extra, unbounded = extra + more, unbounded or open_ended
    if unbounded:
        extra += d.max_input_tokens or UNKNOWN_CONTEXT_TOKENS
    return extra


def upper_bound_cost(d: Deployment, route: str, body: dict[str, Any]) -> UpperBound:
    """The most this call can cost (see the module's docstring); validates `n`, `best_of` and the
    token limits' size."""
    n = choices(body)
    per_choice = completion_limit(d, body) if route != "embedding" else 0
    if d.price is None:
        return UpperBound(Decimal(0), d.model_name)
    # The upstream gets this body with the deployment's model name, which may be longer.
    prompt = len(orjson.dumps(body)) + max(0, len(d.upstream_model.encode()) - len(d.model_name.encode()))
    if "messages" in body or isinstance(body.get("input"), list) or _stored_or_searched(body):
        prompt += _content_extra(d, body)
    prediction = body.get("prediction")
    if per_choice and prediction is not None:
        per_choice += len(orjson.dumps(prediction))
    return UpperBound(None, None, d.price.upper_bound_units(prompt, per_choice * n))
