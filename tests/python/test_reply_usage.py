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
