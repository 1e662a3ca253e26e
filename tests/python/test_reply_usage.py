"""proxy.reply_usage: the usage member alone reads as the whole reply does."""

from __future__ import annotations

import orjson
import pytest

from llmbill._native import core
from llmbill.proxy.reply_usage import usage_of

REPLIES = [
    {"id": "a", "choices": [{"message": {"content": "x" * 5000}}],
     "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}},
    {"usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
               "prompt_tokens_details": {"cached_tokens": 60},
               "completion_tokens_details": {"reasoning_tokens": 30}}},
    {"type": "message", "content": [{"type": "text", "text": "\"usage\": {\"prompt_tokens\": 9}"}],
     "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 4,
               "output_tokens": 7}},
    {"prompt_tokens": 5, "completion_tokens": 2},  # usage at the top level, as some servers send it
]


@pytest.mark.parametrize("reply", REPLIES)
def test_the_member_reads_as_the_whole_reply(reply: dict) -> None:
    body = orjson.dumps(reply)
    assert usage_of(orjson.loads(body), body) == core.Usage.from_response(body)


@pytest.mark.parametrize("reply", [{"choices": []}, {"usage": None}, {"usage": "12 tokens"},
                                   {"usage": {"prompt_tokens": -1, "completion_tokens": 2}}])
def test_no_readable_usage_is_the_cores_error(reply: dict) -> None:
    body = orjson.dumps(reply)
    with pytest.raises(core.UsageError):
        core.Usage.from_response(body)
    with pytest.raises(core.UsageError):
        usage_of(orjson.loads(body), body)


@pytest.mark.parametrize("count", [2**63, 2**64 - 1, 10**30, 1e29, 12.5, True])
def test_a_count_no_token_total_can_be_is_refused_as_the_bytes_are(count: object) -> None:
    # The decoded member reaches the core as Python values, not as the reply's bytes: a count beyond
    # int64 (orjson gives an int, or a float past 64 bits), a fraction or a bool must be refused alike.
    body = orjson.dumps({"usage": {"prompt_tokens": count, "completion_tokens": 1}}) if not isinstance(count, int) \
        or count < 2**64 else b'{"usage": {"prompt_tokens": %d, "completion_tokens": 1}}' % count
    with pytest.raises(core.UsageError):
        core.Usage.from_response(body)
    with pytest.raises(core.UsageError):
        usage_of(orjson.loads(body), body)


def test_the_member_is_handed_over_decoded_not_re_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = core.Usage.from_response
    monkeypatch.setattr(core.Usage, "from_response", staticmethod(lambda v: seen.append(v) or real(v)))
    body = orjson.dumps(REPLIES[1])
    assert usage_of(orjson.loads(body), body) == real(body)
    assert seen == [{"usage": REPLIES[1]["usage"]}]
