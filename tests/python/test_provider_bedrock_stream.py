"""ConverseStream → OpenAI chunks (providers/bedrock_stream.py): real binary event-stream frames from
the fake's encoder (checked against botocore's own parser), split at every byte, tool calls,
exceptions in the stream, a corrupt frame, and the rule that a streamed call and the same call
unstreamed bill the same usage."""

from __future__ import annotations

import datetime
import struct
import urllib.request
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from llmbill._native import core
from llmbill.proxy.providers.bedrock import BedrockAdapter
from llmbill.proxy.providers.bedrock_stream import BedrockChatStream
from tests.python.fakes import aws_eventstream as es
from tests.python.fakes.bedrock_upstream import FakeBedrock
from tests.python.test_provider_bedrock import NOW, adapter, live, params, post, user

CACHED = {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}


def scripted(**settings: Any) -> FakeBedrock:
    """A fake Bedrock used offline, for the frames and replies it would send."""
    fake = FakeBedrock()
    for name, value in settings.items():
        setattr(fake, name, value)
    return fake


def stream(include_usage: bool = True) -> BedrockChatStream:
    return adapter().chat_stream(params(), "claude", include_usage)


def run(frames: bytes, piece: int | None = None, include_usage: bool = True) -> tuple[list[Any], BedrockChatStream]:
    s = stream(include_usage)
    events: list[bytes] = []
    step = piece or len(frames)
    for i in range(0, len(frames), step):
        events += s.feed(frames[i:i + step])
    events += s.finish()
    return [orjson.loads(e[6:]) if e != b"data: [DONE]\n\n" else "[DONE]" for e in events], s


def test_the_encoder_writes_frames_botocore_parses() -> None:
    frame = es.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}})
    buffer = EventStreamBuffer()
    buffer.add_data(frame + es.exception("throttlingException", "slow down"))
    first, second = list(buffer)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert orjson.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    assert second.headers[":exception-type"] == "throttlingException"
    total, headers_length = struct.unpack(">II", frame[:8])
    assert total == len(frame)
    assert headers_length == len(es.encode_headers(first.headers))


def test_a_text_stream_becomes_openai_chunks_then_usage_then_done() -> None:
    fake = scripted(reply_text="Hi there", usage=CACHED)
    events, s = run(b"".join(fake._frames()))
    base = {"id": "chatcmpl-fixed", "object": "chat.completion.chunk", "created": int(NOW.timestamp()), "model": "claude"}
    assert events == [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                                          "prompt_tokens_details": {"cached_tokens": 100},
                                          "cache_creation_input_tokens": 20}},
        "[DONE]"]
    assert s.usage == core.Usage(prompt_tokens=130, completion_tokens=5, cached_tokens=100, cache_creation_tokens=20)


def test_frames_split_at_every_byte_give_the_same_events() -> None:
    fake = scripted(reply_text="one two three", usage=CACHED,
                    tool_use={"toolUseId": "t1", "name": "f", "input": {"a": [1, 2]}})
    frames = b"".join(fake._frames())
    whole, _ = run(frames)
    for piece in (1, 2, 3, 7, 13):
        assert run(frames, piece)[0] == whole


def test_without_include_usage_there_is_no_usage_chunk_but_the_usage_is_known() -> None:
    events, s = run(b"".join(scripted(usage=CACHED)._frames()), include_usage=False)
    assert all(e == "[DONE]" or e["choices"] for e in events)
    assert s.usage is not None and s.usage.prompt_tokens == 130


def test_streamed_and_unstreamed_calls_of_the_same_tokens_bill_the_same() -> None:
    fake = scripted(usage=CACHED)
    _, streamed = run(b"".join(fake._frames()), piece=5)
    _, unstreamed = adapter().chat_reply(params(), orjson.dumps(fake._converse_reply()), "claude")
    assert streamed.usage == unstreamed


def test_a_tool_call_streams_as_openai_tool_call_deltas() -> None:
    fake = scripted(reply_text="Checking.", tool_use={"toolUseId": "tooluse_1", "name": "weather",
                                                      "input": {"city": "Oslo"}})
    events, _ = run(b"".join(fake._frames()))
    deltas = [e["choices"][0]["delta"] for e in events if e != "[DONE]" and e["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {"index": 0, "id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    assert all(c["index"] == 0 for c in calls)
    assert orjson.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Oslo"}
    assert [e for e in events if e != "[DONE]" and e["choices"]][-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_reasoning_deltas_stream_as_reasoning_content() -> None:
    frame = es.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}})
    events, _ = run(frame)
    assert events[0]["choices"][0]["delta"] == {"reasoning_content": "hmm"}


@pytest.mark.parametrize("kind, status", [("throttlingException", 429), ("serviceUnavailableException", 503),
                                          ("validationException", 400), ("modelStreamErrorException", 502),
                                          ("internalServerException", 502)])
def test_an_exception_in_the_stream_becomes_an_error_event(kind: str, status: int) -> None:
    fake = scripted(stream_exception=(3, kind, "stream trouble"))
    events, s = run(b"".join(fake._frames()))
    assert events[-2] == {"error": {"message": events[-2]["error"]["message"], "type": events[-2]["error"]["type"],
                                    "param": None, "code": str(status)}}
    assert "stream trouble" in events[-2]["error"]["message"]
    assert s.failure is not None and s.failure.status == status
    assert events[-1] == "[DONE]" and s.usage is None


def test_a_corrupt_frame_stops_the_translation_with_an_error() -> None:
    frames = b"".join(scripted()._frames())
    corrupt = frames[:20] + bytes([frames[20] ^ 0xFF]) + frames[21:]
    events, s = run(corrupt)
    assert events[0]["error"]["code"] == "502" and "corrupt" in events[0]["error"]["message"]
    assert s.feed(frames) == [] and events[-1] == "[DONE]"


def test_a_stream_over_http_split_in_three_byte_chunks_matches_the_unstreamed_call() -> None:
    with FakeBedrock() as bedrock:
        bedrock.usage, bedrock.stream_split = CACHED, 3
        a = BedrockAdapter(clock=lambda: datetime.datetime.now(datetime.timezone.utc))
        r = a.chat_request(live(bedrock), {"messages": [user("Hi")], "stream": True}, stream=True)
        s = a.chat_stream(live(bedrock), "claude", include_usage=True)
        events: list[bytes] = []
        request = urllib.request.Request(r.url, data=r.body, headers=dict(r.headers), method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
            while data := resp.read(7):
                events += s.feed(data)
        events += s.finish()
        status, _, unstreamed_reply = post(a.chat_request(live(bedrock), {"messages": [user("Hi")]}, False))
        assert status == 200
    text = "".join(orjson.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events
                   if e.startswith(b'data: {"id"') and orjson.loads(e[6:])["choices"])
    assert text == "Hello from the fake Bedrock."
    assert s.usage == a.chat_reply(live(bedrock), unstreamed_reply, "claude")[1]
    assert events[-1] == b"data: [DONE]\n\n"


def test_a_scripted_throttle_mid_stream_over_http_is_reported() -> None:
    with FakeBedrock() as bedrock:
        bedrock.stream_exception = (2, "throttlingException", "Too many tokens, please wait before trying again.")
        a = BedrockAdapter()
        r = a.chat_request(live(bedrock), {"messages": [user("Hi")]}, stream=True)
        s = a.chat_stream(live(bedrock), "claude", include_usage=False)
        with urllib.request.urlopen(urllib.request.Request(r.url, data=r.body, headers=dict(r.headers), method="POST"),
                                    timeout=10) as resp:
            events = s.feed(resp.read()) + s.finish()
    assert orjson.loads(events[-2][6:])["error"]["code"] == "429"
    assert s.failure is not None and s.failure.type == "rate_limit_error"
