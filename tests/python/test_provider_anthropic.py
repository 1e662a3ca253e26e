"""The Anthropic adapter as pure translation: OpenAI chat bodies → Messages requests, Messages
replies and SSE streams → OpenAI chat.completion(.chunk), error mapping, and the native route's
usage helpers. Bytes only; the adapter against the strict fake over HTTP, and the official SDK
against the fake, are in test_fake_anthropic.py.
"""

from __future__ import annotations

import doctest
import json
import random
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llmbill import _core as core
from llmbill.proxy.providers import anthropic, anthropic_errors, anthropic_reply
from llmbill.proxy.providers.anthropic import AnthropicAdapter, MessagesUsageTap
from llmbill.proxy.providers.anthropic_request import JSON_TOOL
from llmbill.proxy.providers.base import ChatAdapter, ProviderInputError, ProviderParams

ADAPTER = AnthropicAdapter(clock=lambda: 1_700_000_000.0)
PARAMS = ProviderParams("anthropic", "claude-sonnet-4-5", api_key="sk-ant-test")
USER = {"role": "user", "content": "Hi"}


def request(body: dict[str, Any], stream: bool = False, params: ProviderParams = PARAMS) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(ADAPTER.chat_request(params, body, stream).body)
    return out


def refused(body: dict[str, Any], params: ProviderParams = PARAMS) -> ProviderInputError:
    with pytest.raises(ProviderInputError) as info:
        ADAPTER.chat_request(params, body, False)
    return info.value


def test_meets_the_adapter_contract_and_its_examples_run() -> None:
    adapter: ChatAdapter = ADAPTER  # mypy checks the Protocol; the doctests check the examples
    assert adapter is ADAPTER
    for module in (anthropic, anthropic_errors, anthropic_reply):
        assert doctest.testmod(module).failed == 0


# ---- requests -------------------------------------------------------------------------------------

def test_url_headers_and_minimal_body() -> None:
    req = ADAPTER.chat_request(PARAMS, {"model": "client-alias", "messages": [USER]}, False)
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert dict(req.headers) == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01",
                                 "content-type": "application/json"}
    assert json.loads(req.body) == {"model": "claude-sonnet-4-5", "max_tokens": 4096,
                                    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}


@pytest.mark.parametrize("base", ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/messages"])
def test_api_base_is_never_doubled(base: str) -> None:
    params = ProviderParams("anthropic", "m", api_base=base, api_key="k")
    assert ADAPTER.chat_request(params, {"messages": [USER]}, False).url == "http://h:1/v1/messages"


def test_max_tokens_from_the_client_else_the_deployment_limit_else_4096() -> None:
    assert request({"messages": [USER], "max_tokens": 10})["max_tokens"] == 10
    assert request({"messages": [USER], "max_tokens": 10, "max_completion_tokens": 20})["max_tokens"] == 20
    limited = ProviderParams("anthropic", "m", api_key="k", extra={"max_output_tokens": 64000})
    assert request({"messages": [USER]}, params=limited)["max_tokens"] == 64000
    assert request({"messages": [USER], "max_tokens": None})["max_tokens"] == 4096
    for bad in (0, -1, 1.5, True, "10"):
        assert refused({"messages": [USER], "max_tokens": bad}).param == "max_tokens"


def test_system_and_developer_messages_become_the_top_level_system() -> None:
    mark = {"type": "ephemeral", "ttl": "1h"}
    body = request({"messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Long rules", "cache_control": mark}]},
        USER,
        {"role": "system", "content": "Late note."},  # no system turns in Messages: it joins the rest
    ]})
    assert body["system"] == [{"type": "text", "text": "Be terse."},
                              {"type": "text", "text": "Long rules", "cache_control": mark},
                              {"type": "text", "text": "Late note."}]
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_a_message_level_cache_control_marks_its_last_block() -> None:
    mark = {"type": "ephemeral"}
    body = request({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}], "cache_control": mark}]})
    assert body["messages"][0]["content"] == [{"type": "text", "text": "a"},
                                              {"type": "text", "text": "b", "cache_control": mark}]


def test_consecutive_turns_of_one_role_merge_with_tool_results_first() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    body = request({"messages": [
        USER, {"role": "user", "content": "again"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "ok"}, {"role": "assistant", "content": "more"},
    ]})
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "42"},
                                     {"type": "text", "text": "thanks"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": "more"}]},
    ]


def test_tool_results_keep_text_parts_and_arguments_must_be_json_objects() -> None:
    call = {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": ""}}
    body = request({"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                                 {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "r"}]}]})
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "call_2", "name": "f", "input": {}}]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_2",
                                               "content": [{"type": "text", "text": "r"}]}]
    for arguments in ("not json", "[1]"):
        bad = {**call, "function": {"name": "f", "arguments": arguments}}
        err = refused({"messages": [USER, {"role": "assistant", "tool_calls": [bad]}]})
        assert err.param == "messages[1].tool_calls[0].function.arguments"
    assert refused({"messages": [USER, {"role": "tool", "content": "x"}]}).param == "messages[1].tool_call_id"


@pytest.mark.parametrize("messages, param", [
    ([], "messages"),
    ([{"role": "system", "content": "only a system prompt"}], "messages"),
    ([{"role": "assistant", "content": "I start"}, USER], "messages"),
    ([{"role": "critic", "content": "?"}], "messages[0].role"),
    ([{"role": "user", "content": ""}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "messages[0].content"),
])
def test_conversations_anthropic_cannot_take_are_refused(messages: list[Any], param: str) -> None:
    assert refused({"messages": messages}).param == param


def test_stop_sampling_user_and_stream() -> None:
    body = request({"messages": [USER], "stop": "END", "temperature": 0.2, "top_p": 0.9, "top_k": 5,
                    "user": "u-42", "stream_options": {"include_usage": True}}, stream=True)
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert body["metadata"] == {"user_id": "u-42"}
    assert body["stream"] is True
    assert request({"messages": [USER], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]
    assert "stream" not in request({"messages": [USER], "stream": True})  # the `stream` argument decides
    assert refused({"messages": [USER], "temperature": 1.5}).param == "temperature"  # Anthropic's range is 0..1
    assert refused({"messages": [USER], "stop": 3}).param == "stop"
    assert refused({"messages": [USER], "user": 7}).param == "user"


def test_tools_and_tool_choice() -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": params}},
             {"type": "function", "function": {"name": "noargs"}, "cache_control": {"type": "ephemeral"}}]
    body = request({"messages": [USER], "tools": tools})
    assert body["tools"] == [{"name": "weather", "description": "Weather now", "input_schema": params},
                             {"name": "noargs", "input_schema": {"type": "object", "properties": {}},
                              "cache_control": {"type": "ephemeral"}}]
    assert "tool_choice" not in body
    choices = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
    for given, expected in choices.items():
        assert request({"messages": [USER], "tools": tools, "tool_choice": given})["tool_choice"] == expected
    named = {"type": "function", "function": {"name": "weather"}}
    assert request({"messages": [USER], "tools": tools, "tool_choice": named})["tool_choice"] == {
        "type": "tool", "name": "weather"}
    assert request({"messages": [USER], "tools": tools, "parallel_tool_calls": False})["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}
    assert refused({"messages": [USER], "tools": tools, "tool_choice": {"type": "function",
                                                                         "function": {"name": "nope"}}}).param == "tool_choice"
    assert refused({"messages": [USER], "tools": [{"type": "web_search"}]}).param == "tools[0]"
    reserved = [{"type": "function", "function": {"name": JSON_TOOL}}]
    assert refused({"messages": [USER], "tools": reserved}).param == "tools[0].function.name"


def test_images_and_pdfs() -> None:
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
             {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}]
    content = request({"messages": [{"role": "user", "content": parts}]})["messages"][0]["content"]
    assert content[1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]
    bmp = [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]
    assert refused({"messages": [{"role": "user", "content": bmp}]}).param == "messages[0].content[0].image_url"
    not_b64 = [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]
    assert refused({"messages": [{"role": "user", "content": not_b64}]}).param == "messages[0].content[0]"


def test_response_format_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = request({"messages": [USER], "response_format": {"type": "json_schema",
                                                            "json_schema": {"name": "count", "schema": schema}}})
    assert body["tools"] == [{"name": JSON_TOOL, "description": "Reply with a JSON object that follows this schema.",
                              "input_schema": schema}]
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert request({"messages": [USER], "response_format": {"type": "json_object"}})["tools"][0]["input_schema"] == {
        "type": "object"}
    assert "tools" not in request({"messages": [USER], "response_format": {"type": "text"}})
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert refused({"messages": [USER], "tools": tools, "response_format": {"type": "json_object"}}).param == (
        "response_format")
    array = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}
    assert refused({"messages": [USER], "response_format": array}).param == "response_format"


@pytest.mark.parametrize("name, value", [
    ("n", 2), ("n", True), ("logprobs", True), ("top_logprobs", 3), ("seed", 7), ("frequency_penalty", 0.5),
    ("presence_penalty", -1), ("logit_bias", {"50256": -100}), ("functions", [{"name": "f"}]),
    ("function_call", "auto"), ("reasoning_effort", "high"), ("audio", {"voice": "alloy"}),
    ("modalities", ["text", "audio"]), ("prediction", {"type": "content", "content": "x"}), ("store", True),
    ("web_search_options", {}), ("some_new_param", 1),
])
def test_parameters_anthropic_lacks_are_refused_by_name(name: str, value: Any) -> None:
    err = refused({"messages": [USER], name: value})
    assert err.param == name
    assert f"'{name}'" in str(err)


def test_openai_defaults_are_not_refused() -> None:
    body = request({"messages": [USER], "n": 1, "logprobs": False, "frequency_penalty": 0, "presence_penalty": 0.0,
                    "logit_bias": {}, "store": False, "modalities": ["text"], "seed": None, "metadata": {"k": "v"},
                    "parallel_tool_calls": True, "service_tier": "auto"})
    assert set(body) == {"model", "max_tokens", "messages"}


# ---- replies --------------------------------------------------------------------------------------

REPLY = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 3000,
              "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
              "output_tokens": 50, "service_tier": "standard"},
}


def test_reply_becomes_an_openai_completion_with_litellm_usage() -> None:
    out, usage = ADAPTER.chat_reply(PARAMS, json.dumps(REPLY).encode(), "my-claude")
    assert out == {
        "id": "msg_01", "object": "chat.completion", "created": 1_700_000_000, "model": "my-claude",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4100, "completion_tokens": 50, "total_tokens": 4150,
                  "prompt_tokens_details": {"cached_tokens": 1000},
                  "completion_tokens_details": {"reasoning_tokens": 0},
                  "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 3000},
        "system_fingerprint": None,
    }
    assert usage == core.Usage(prompt_tokens=4100, completion_tokens=50, cached_tokens=1000,
                               cache_creation_tokens=3000, cache_creation_1h_tokens=2000)
    ChatCompletion.model_validate(out)


def test_reply_tool_calls_thinking_and_json_mode() -> None:
    reply = {**REPLY, "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "Let me see.", "signature": "s"},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]}
    out, _ = ADAPTER.chat_reply(PARAMS, json.dumps(reply).encode(), "m")
    message = out["choices"][0]["message"]
    assert message["content"] is None
    assert message["reasoning_content"] == "Let me see."
    assert message["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                      "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    ChatCompletion.model_validate(out)
    forced = {**REPLY, "stop_reason": "tool_use",
              "content": [{"type": "tool_use", "id": "toolu_2", "name": JSON_TOOL, "input": {"n": 3}}]}
    out, _ = ADAPTER.chat_reply(PARAMS, json.dumps(forced).encode(), "m")
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"n": 3}', "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), (None, "stop"),
])
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    assert anthropic_reply.finish_reason(stop_reason, tool_calls=True) == finish


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type":"error","error":{}}', b'{"type":"message"}'])
def test_a_reply_that_is_not_a_message_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        ADAPTER.chat_reply(PARAMS, body, "m")


def test_a_reply_with_unreadable_usage_raises_usage_error() -> None:
    bad = {**REPLY, "usage": {"input_tokens": -1, "output_tokens": 1}}
    with pytest.raises(core.UsageError):
        ADAPTER.chat_reply(PARAMS, json.dumps(bad).encode(), "m")


# ---- streams --------------------------------------------------------------------------------------

def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


START = {"type": "message_start", "message": {
    "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 3000,
              "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
              "output_tokens": 1}}}
TEXT_STREAM = sse(
    START, {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there €"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 3000,
               "output_tokens": 50}},
    {"type": "message_stop"})
TOOL_STREAM = sse(
    {**START, "message": {**START["message"], "usage": {"input_tokens": 30, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1,
     "content_block": {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
    {"type": "message_stop"})


def translate(data: bytes, include_usage: bool = True, splits: list[int] | None = None) -> tuple[list[dict[str, Any]], Any]:
    stream = ADAPTER.chat_stream(PARAMS, "my-claude", include_usage)
    cuts = [0] + (splits if splits is not None else []) + [len(data)]
    events: list[bytes] = []
    for a, b in zip(cuts, cuts[1:]):
        events += stream.feed(data[a:b])
    events += stream.finish()
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    parsed = [json.loads(e[6:]) if e != b"data: [DONE]\n\n" else "[DONE]" for e in events]
    return parsed, stream


def test_stream_text_chunks_then_usage_chunk_then_done() -> None:
    events, stream = translate(TEXT_STREAM)
    base = {"id": "msg_01", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "my-claude",
            "system_fingerprint": None, "usage": None}
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    assert events == [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}), chunk({"content": " there €"}),
        chunk({}, "stop"),
        {**base, "choices": [], "usage": {"prompt_tokens": 4100, "completion_tokens": 50, "total_tokens": 4150,
                                          "prompt_tokens_details": {"cached_tokens": 1000},
                                          "completion_tokens_details": {"reasoning_tokens": 0},
                                          "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 3000}},
        "[DONE]"]
    for event in events[:-1]:
        ChatCompletionChunk.model_validate(event)
    assert stream.complete


def test_stream_split_anywhere_gives_the_same_events() -> None:
    whole, _ = translate(TEXT_STREAM)
    byte_by_byte, _ = translate(TEXT_STREAM, splits=list(range(1, len(TEXT_STREAM))))
    assert byte_by_byte == whole
    rng = random.Random(14)
    for _ in range(50):
        splits = sorted(rng.sample(range(1, len(TOOL_STREAM)), 12))
        assert translate(TOOL_STREAM, splits=splits)[0] == translate(TOOL_STREAM)[0]
    crlf = TEXT_STREAM.replace(b"\n", b"\r\n")
    assert translate(crlf, splits=list(range(1, len(crlf), 3)))[0] == whole


def test_streamed_and_unstreamed_calls_bill_the_same_usage() -> None:
    _, stream = translate(TEXT_STREAM)
    _, usage = ADAPTER.chat_reply(PARAMS, json.dumps(REPLY).encode(), "m")
    assert stream.usage == usage
    assert usage.cache_creation_1h_tokens == 2000


def test_stream_tool_calls() -> None:
    events, stream = translate(TOOL_STREAM, include_usage=False)
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[2] == {"tool_calls": [{"index": 0, "id": "toolu_9", "type": "function",
                                         "function": {"name": "weather", "arguments": ""}}]}
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    assert json.loads(arguments) == {"city": "Paris"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[-1] == "[DONE]"  # no usage chunk when the client did not ask ...
    assert all("usage" not in e for e in events[:-1])
    assert stream.usage == core.Usage(prompt_tokens=30, completion_tokens=12)  # ... but the proxy still knows it


def test_stream_json_mode_and_thinking_are_content_and_reasoning() -> None:
    data = sse(START,
               {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm."}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
               {"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}}},
               {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"n"'}},
               {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ": 3}"}},
               {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
               {"type": "message_stop"})
    events, _ = translate(data)
    deltas = [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e["choices"]]
    assert deltas[1] == {"reasoning_content": "Hm."}
    assert "".join(d.get("content", "") for d in deltas) == '{"n": 3}'
    assert events[-3]["choices"][0]["finish_reason"] == "stop"


def test_usage_is_known_from_message_start_and_updated_by_message_delta() -> None:
    stream = ADAPTER.chat_stream(PARAMS, "m", True)
    assert stream.usage is None
    stream.feed(sse(START))
    assert stream.usage == core.Usage(prompt_tokens=4100, completion_tokens=1, cached_tokens=1000,
                                      cache_creation_tokens=3000, cache_creation_1h_tokens=2000)
    stream.feed(sse({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}}))
    assert stream.usage is not None and stream.usage.completion_tokens == 7


def test_an_error_event_ends_the_stream_with_an_openai_error() -> None:
    data = sse(START, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    events, stream = translate(data)
    assert events[-1] == {"error": {"message": "Anthropic 529 overloaded_error: Overloaded (the provider is "
                                               "overloaded; retry later)", "type": "overloaded_error",
                                    "param": None, "code": "503"}}
    assert stream.failure is not None and stream.failure.status == 503
    assert not stream.complete
    assert stream.usage is not None and stream.usage.prompt_tokens == 4100  # what was reported still bills


def test_a_stream_cut_before_message_stop_is_an_error_not_done() -> None:
    events, stream = translate(TEXT_STREAM[: TEXT_STREAM.index(b"event: message_delta")])
    assert events[-1]["error"]["code"] == "502"
    assert "[DONE]" not in events
    assert stream.failure is not None and "before message_stop" in stream.failure.message


def test_an_unreadable_event_is_an_error() -> None:
    events, stream = translate(sse(START) + b"event: content_block_delta\ndata: {not json\n\n")
    assert events[-1]["error"]["type"] == "upstream_error"
    assert stream.failure is not None


def test_an_endless_line_is_an_error_not_unbounded_memory() -> None:
    stream = ADAPTER.chat_stream(PARAMS, "m", True)
    stream.feed(sse(START))
    events = stream.feed(b"data: " + b"x" * (17 << 20))
    assert json.loads(events[-1][6:])["error"]["message"] == "Anthropic's stream sent a line over 16 MiB"
    assert stream.finish() == []


# ---- errors ---------------------------------------------------------------------------------------

def anthropic_error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}).encode()


@pytest.mark.parametrize("status, kind, expected_status, expected_type", [
    (529, "overloaded_error", 503, "overloaded_error"),
    (429, "rate_limit_error", 429, "rate_limit_error"),
    (400, "invalid_request_error", 400, "invalid_request_error"),
    (413, "request_too_large", 413, "invalid_request_error"),
    (401, "authentication_error", 502, "upstream_auth_error"),
    (403, "permission_error", 502, "upstream_auth_error"),
    (404, "not_found_error", 502, "upstream_error"),
    (500, "api_error", 502, "upstream_error"),
    (504, "timeout_error", 502, "upstream_error"),
])
def test_failures_map_to_what_the_client_should_see(status: int, kind: str, expected_status: int,
                                                    expected_type: str) -> None:
    failure = ADAPTER.failure(PARAMS, status, anthropic_error(kind, "details here"))
    assert (failure.status, failure.type) == (expected_status, expected_type)
    assert "details here" in failure.message
    if status in (401, 403):
        assert "deployment's Anthropic credentials" in failure.message  # never the client's key


def test_a_failure_without_anthropic_shape_is_described() -> None:
    failure = ADAPTER.failure(PARAMS, 502, b"<html>Bad gateway</html>")
    assert (failure.status, failure.type) == (502, "upstream_error")
    assert "<html>Bad gateway</html>" in failure.message


def test_anthropic_shaped_error_bodies_for_the_native_route() -> None:
    assert json.loads(anthropic.error_body(400, "bad")) == {
        "type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    assert json.loads(anthropic.error_body(503, "busy"))["error"]["type"] == "overloaded_error"
    assert json.loads(anthropic.error_body(401, "no key", "authentication_error"))["error"]["type"] == (
        "authentication_error")
    assert [anthropic.error_type(s) for s in (404, 418, 502)] == ["not_found_error", "invalid_request_error",
                                                                   "api_error"]


# ---- the native route's usage ---------------------------------------------------------------------

def test_native_usage_from_a_reply_a_whole_stream_and_a_tap() -> None:
    expected = core.Usage(prompt_tokens=4100, completion_tokens=50, cached_tokens=1000, cache_creation_tokens=3000,
                          cache_creation_1h_tokens=2000)
    assert anthropic.messages_usage(json.dumps(REPLY).encode()) == expected
    assert anthropic.messages_usage(REPLY) == expected
    assert anthropic.messages_stream_usage(TEXT_STREAM) == expected
    tap = MessagesUsageTap()
    for i in range(0, len(TEXT_STREAM), 5):
        tap.feed(TEXT_STREAM[i:i + 5])
    assert tap.usage == expected and tap.error is None
    tap.feed(b'data: {"usage": {broken\n')  # a bad usage line never stops the relay
    assert tap.error is not None and tap.usage == expected
