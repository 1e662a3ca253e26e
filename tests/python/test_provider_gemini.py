"""The `gemini/` adapter: request translation, reply and stream translation, usage, failures, pricing,
and end-to-end exchanges with the strict fake (tests/python/fakes/gemini_upstream.py) over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any, Iterator

import pytest

import llmbill
from llmbill._native import core
from llmbill.proxy.providers.base import ProviderInputError, ProviderParams, UpstreamRequest
from llmbill.proxy.providers.gemini import GeminiAdapter
from llmbill.proxy.providers.gemini_reply import THOUGHT_SIGNATURE, usage_from_metadata
from llmbill.proxy.providers.gemini_request import generate_content_body
from tests.python.fakes.gemini_upstream import FakeGemini

PARAMS = ProviderParams("gemini", "gemini-2.5-pro", api_key="test-gemini-key")
HI = [{"role": "user", "content": "Hi"}]


def adapter() -> GeminiAdapter:
    ids = iter(f"call_{n}" for n in range(100))
    return GeminiAdapter(clock=lambda: 1700000000.0, new_id=lambda: next(ids))


def body_of(request: UpstreamRequest) -> Any:
    return json.loads(request.body)


def rejects(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderInputError) as caught:
        generate_content_body(body)
    assert caught.value.param == param, str(caught.value)


# --- request: endpoint and messages ----------------------------------------------------------------
def test_url_key_header_and_stream_url(monkeypatch: pytest.MonkeyPatch) -> None:
    req = adapter().chat_request(PARAMS, {"messages": HI}, stream=False)
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    assert req.headers == {"content-type": "application/json", "x-goog-api-key": "test-gemini-key"}
    based = ProviderParams("gemini", "models/gemini-2.5-flash", api_base="http://h:1/")
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    req = adapter().chat_request(based, {"messages": HI, "stream": True}, stream=True)
    assert req.url == "http://h:1/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert req.headers["x-goog-api-key"] == "from-env"
    assert "stream" not in body_of(req)


def test_system_developer_roles_and_same_role_merging() -> None:
    out = generate_content_body({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "un deux"},
        {"role": "assistant", "content": ""},  # empty: nothing to send
        {"role": "user", "content": "three"}]})
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert out["contents"] == [{"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                               {"role": "model", "parts": [{"text": "un deux"}]},
                               {"role": "user", "parts": [{"text": "three"}]}]


def test_generation_config_fields() -> None:
    out = generate_content_body({"messages": HI, "max_tokens": 50, "max_completion_tokens": 60, "temperature": 0.2,
                                 "top_p": 0.9, "top_k": 40, "stop": "END", "n": 2, "seed": 7,
                                 "presence_penalty": 0.5, "frequency_penalty": -0.5})
    assert out["generationConfig"] == {"maxOutputTokens": 60, "temperature": 0.2, "topP": 0.9,
                                       "presencePenalty": 0.5, "frequencyPenalty": -0.5, "topK": 40,
                                       "candidateCount": 2, "seed": 7, "stopSequences": ["END"]}
    assert generate_content_body({"messages": HI, "max_tokens": 9, "stop": ["a", "b"]})["generationConfig"] == \
        {"maxOutputTokens": 9, "stopSequences": ["a", "b"]}
    rejects({"messages": HI, "max_tokens": 0}, "max_tokens")
    rejects({"messages": HI, "temperature": "hot"}, "temperature")
    rejects({"messages": HI, "stop": ["1", "2", "3", "4", "5", "6"]}, "stop")


def test_response_format_json_object_and_schema_subset() -> None:
    assert generate_content_body({"messages": HI, "response_format": {"type": "json_object"}})[
        "generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "additionalProperties": False, "required": ["city", "tags"],
              "$defs": {"Tag": {"type": "string", "enum": ["a", "b"], "description": "a tag"}},
              "properties": {"city": {"type": "string", "title": "City"},
                             "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "maxItems": 3},
                             "size": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
                             "kind": {"const": "x"}, "note": {"type": ["string", "null"]},
                             "site": {"type": "string", "format": "uri"},
                             "when": {"type": "string", "format": "date-time"},
                             "pos": {"properties": {"x": {"type": "number", "format": "double"}}}}}
    out = generate_content_body({"messages": HI, "response_format": {
        "type": "json_schema", "json_schema": {"name": "place", "strict": True, "schema": schema}}})
    assert out["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "required": ["city", "tags"], "properties": {
            "city": {"type": "STRING", "title": "City"},
            "tags": {"type": "ARRAY", "maxItems": 3,
                     "items": {"type": "STRING", "description": "a tag", "enum": ["a", "b"]}},
            "size": {"type": "INTEGER", "minimum": 0, "nullable": True},
            "kind": {"enum": ["x"]}, "note": {"type": "STRING", "nullable": True},
            "site": {"type": "STRING"}, "when": {"type": "STRING", "format": "date-time"},
            "pos": {"type": "OBJECT", "properties": {"x": {"type": "NUMBER", "format": "double"}}}}}}


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}},
    {"type": "object", "additionalProperties": True},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"type": "integer", "enum": [1, 2]},
    {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"},
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/x.json"}}},
    {"type": ["string", "integer"]},
])
def test_schema_keywords_gemini_cannot_express_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(ProviderInputError) as caught:
        generate_content_body({"messages": HI, "response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": schema}}})
    assert str(caught.value.param).startswith("response_format.json_schema.schema"), caught.value.param


def test_tools_tool_choice_and_parallel_calls() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "strict": True,
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}},
             {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    out = generate_content_body({"messages": HI, "tools": tools, "tool_choice": "required",
                                 "parallel_tool_calls": True})
    assert out["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather",
         "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
        {"name": "now"}]}]  # no properties: Gemini refuses an empty OBJECT, so no parameters
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    for choice, expected in [("none", {"mode": "NONE"}), ("auto", {"mode": "AUTO"}),
                             ({"type": "function", "function": {"name": "now"}},
                              {"mode": "ANY", "allowedFunctionNames": ["now"]})]:
        got = generate_content_body({"messages": HI, "tools": tools, "tool_choice": choice})
        assert got["toolConfig"] == {"functionCallingConfig": expected}
    rejects({"messages": HI, "tools": tools, "parallel_tool_calls": False}, "parallel_tool_calls")
    rejects({"messages": HI, "tool_choice": "required"}, "tool_choice")
    rejects({"messages": HI, "tools": tools, "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice")
    rejects({"messages": HI, "tools": [{"type": "web_search"}]}, "tools[0]")


def test_tool_call_history_becomes_function_call_and_response_parts() -> None:
    out = generate_content_body({"messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_1" + THOUGHT_SIGNATURE + "c2lnbmF0dXJl", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1" + THOUGHT_SIGNATURE + "c2lnbmF0dXJl", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "user", "content": "Thanks"}]})
    assert out["contents"][1:] == [
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "21C"}}},
            {"text": "Thanks"}]}]
    rejects({"messages": [*HI, {"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "messages[1].tool_call_id")
    call = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}
    named = generate_content_body({"messages": [*HI, call, {"role": "tool", "tool_call_id": "c", "name": "f",
                                                             "content": "ok"}]})
    assert named["contents"][2]["parts"] == [{"functionResponse": {"name": "f", "response": {"output": "ok"}}}]
    rejects({"messages": [*HI, call, {"role": "tool", "tool_call_id": "c", "name": "g", "content": "ok"}]},
            "messages[2].name")
    rejects({"messages": [*HI, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
        "messages[1].tool_calls[0].function.arguments")


def test_images_audio_and_files() -> None:
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=2"}},
               {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
               {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}]
    parts = generate_content_body({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert parts == [{"text": "What is this?"},
                     {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                     {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2"}},
                     {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                     {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}]
    where = "messages[0].content[0]"
    url = f"{where}.image_url.url"
    for part, param in [({"type": "image_url", "image_url": {"url": "https://example.com/picture"}}, url),
                        ({"type": "image_url", "image_url": {"url": "gs://bucket/a.png"}}, url),
                        ({"type": "image_url", "image_url": {"url": "data:image/png,raw"}}, url),
                        ({"type": "image_url", "image_url": {"url": "https://e.com/a.png", "detail": "high"}},
                         f"{where}.image_url.detail"),
                        ({"type": "file", "file": {"file_id": "file-abc"}}, f"{where}.file"),
                        ({"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}},
                         f"{where}.input_audio"),
                        ({"type": "refusal", "refusal": "no"}, where)]:
        rejects({"messages": [{"role": "user", "content": [part]}]}, param)
    assert generate_content_body({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "gs://bucket/a.png"}}]}]}, allow_gcs=True)["contents"][0]["parts"] \
        == [{"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/a.png"}}]


@pytest.mark.parametrize("name", ["logprobs", "top_logprobs", "logit_bias", "reasoning_effort", "functions",
                                  "function_call", "audio", "modalities", "prediction", "service_tier", "store",
                                  "web_search_options"])
def test_unsupported_parameters_are_refused_by_name(name: str) -> None:
    rejects({"messages": HI, name: True}, name)


def test_passive_parameters_and_nulls_are_accepted() -> None:
    out = generate_content_body({"model": "gemini/x", "messages": HI, "stream": False, "user": "u-1",
                                 "stream_options": {"include_usage": True}, "metadata": {"k": "v"},
                                 "temperature": None, "logprobs": None})
    assert out == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_bad_messages_are_refused() -> None:
    rejects({"messages": []}, "messages")
    rejects({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages")
    rejects({"messages": [{"role": "user", "content": "Hi", "name": "bob"}]}, "messages[0].name")
    rejects({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role")
    rejects({"messages": [{"role": "user", "content": 5}]}, "messages[0].content")


GARBAGE: list[Any] = [None, 1, 1.5, True, "x", [], [1], {}, {"a": [1]}]


def test_any_malformed_value_is_an_input_error_never_a_crash() -> None:
    """Every field of a rich request replaced by values of the wrong type: ProviderInputError or a body,
    never TypeError/KeyError (which the proxy would answer with a 500)."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "string", "format": "date-time", "enum": ["x"]}}}}}]
    base: dict[str, Any] = {
        "messages": [{"role": "system", "content": "s"},
                     {"role": "user", "content": [{"type": "text", "text": "t"},
                                                  {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
                                                  {"type": "input_audio", "input_audio": {"data": "QQ==",
                                                                                          "format": "wav"}}]},
                     {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                           "function": {"name": "f", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c", "content": "r"}],
        "tools": tools, "tool_choice": "auto", "max_tokens": 5, "stop": "x", "temperature": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": tools[0]["function"][
            "parameters"]}}}
    generate_content_body(base)

    def paths(node: Any, trail: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield trail + (k,)
                yield from paths(v, trail + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield trail + (i,)
                yield from paths(v, trail + (i,))

    tried = 0
    for path in list(paths(base)):
        for value in GARBAGE:
            body = json.loads(json.dumps(base))
            target = body
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            try:
                generate_content_body(body)
            except ProviderInputError:
                pass
            tried += 1
    assert tried > 500


# --- reply ---------------------------------------------------------------------------------------
def test_reply_becomes_an_openai_chat_completion() -> None:
    reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo"}]},
                             "finishReason": "STOP", "index": 0}],
             "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
             "modelVersion": "gemini-2.5-pro", "responseId": "abc"}
    out, usage = adapter().chat_reply(PARAMS, json.dumps(reply).encode(), "my-model")
    assert out == {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000, "model": "my-model",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": None,
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0}}}
    assert usage == core.Usage(prompt_tokens=9, completion_tokens=2)


def test_usage_counts_thoughts_as_completion_and_cache_inside_prompt() -> None:
    meta = {"promptTokenCount": 1000, "cachedContentTokenCount": 600, "candidatesTokenCount": 40,
            "thoughtsTokenCount": 200, "toolUsePromptTokenCount": 5, "totalTokenCount": 1245}
    usage = usage_from_metadata(meta)
    assert usage == core.Usage(prompt_tokens=1005, cached_tokens=600, completion_tokens=240, reasoning_tokens=200)
    out, same = adapter().chat_reply(PARAMS, json.dumps({"candidates": [], "usageMetadata": meta}).encode(), "m")
    assert same == usage
    # The OpenAI-shaped usage says the same thing to a client, or to the C++ parser reading it.
    assert core.Usage.from_response(out) == usage
    assert out["usage"]["total_tokens"] == meta["totalTokenCount"]


@pytest.mark.parametrize("reason,expected", [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                             ("RECITATION", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"),
                                             ("SPII", "content_filter"), ("BLOCKLIST", "content_filter"),
                                             ("OTHER", "stop"), ("MALFORMED_FUNCTION_CALL", "stop")])
def test_finish_reasons(reason: str, expected: str) -> None:
    reply = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}],
             "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1}}
    out, _ = adapter().chat_reply(PARAMS, json.dumps(reply).encode(), "m")
    assert out["choices"][0]["finish_reason"] == expected


def test_function_calls_thoughts_and_candidates_in_the_reply() -> None:
    parts = [{"text": "planning", "thought": True},
             {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "U0lH"},
             {"functionCall": {"name": "now", "args": {}}}]
    reply = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0},
                            {"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "STOP",
                             "index": 1}],
             "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 8, "thoughtsTokenCount": 3}}
    out, _ = adapter().chat_reply(PARAMS, json.dumps(reply).encode(), "m")
    first, second = out["choices"]
    assert first == {"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "reasoning_content": "planning", "tool_calls": [
            {"id": "call_0" + THOUGHT_SIGNATURE + "U0lH", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}}
    assert second["message"] == {"role": "assistant", "content": "B"} and second["index"] == 1
    # Sent back as history, the call carries its signature to Gemini again.
    history = generate_content_body({"messages": [*HI, {"role": "assistant", **{
        k: v for k, v in first["message"].items() if k != "reasoning_content"}}]})
    assert history["contents"][1]["parts"][0]["thoughtSignature"] == "U0lH"


def test_blocked_prompt_and_missing_usage() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    out, usage = adapter().chat_reply(PARAMS, json.dumps(blocked).encode(), "m")
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": None}, "logprobs": None,
                               "finish_reason": "content_filter"}]
    assert usage == core.Usage(prompt_tokens=4)
    bare = {"candidates": [{"content": {"parts": [{"text": "12345678"}]}, "finishReason": "STOP"}]}
    _, usage = adapter().chat_reply(PARAMS, json.dumps(bare).encode(), "m")
    assert usage.estimated and usage.completion_tokens == 2  # never a silent zero


# --- stream --------------------------------------------------------------------------------------
def sse(*chunks: dict[str, Any], sep: bytes = b"\r\n\r\n") -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + sep for c in chunks)


STREAM = sse(
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hé"}]}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 300, "totalTokenCount": 300}, "responseId": "r1"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "llo"}]}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 1, "thoughtsTokenCount": 20}},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 300, "cachedContentTokenCount": 100, "candidatesTokenCount": 3,
                       "thoughtsTokenCount": 20, "totalTokenCount": 323}})


def events(out: list[bytes]) -> list[Any]:
    return [json.loads(e[len(b"data: "):]) if e != b"data: [DONE]\n\n" else "[DONE]" for e in out]


def test_stream_translates_chunks_and_ends_with_usage_and_done() -> None:
    s = adapter().chat_stream(PARAMS, "my-model", include_usage=True)
    got = events(s.feed(STREAM) + s.finish())
    assert [e["choices"][0]["delta"] for e in got[:3]] == [{"role": "assistant", "content": "Hé"},
                                                          {"content": "llo"}, {"content": "!"}]
    assert [e["choices"][0]["finish_reason"] for e in got[:3]] == [None, None, "stop"]
    assert {e["id"] for e in got[:4]} == {"chatcmpl-r1"} and got[0]["model"] == "my-model"
    assert got[3]["choices"] == [] and got[3]["usage"] == {
        "prompt_tokens": 300, "completion_tokens": 23, "total_tokens": 323,
        "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 20}}
    assert got[4] == "[DONE]" and len(got) == 5


def test_stream_split_at_every_byte_gives_the_same_events() -> None:
    whole = adapter().chat_stream(PARAMS, "m", include_usage=True)
    expected = whole.feed(STREAM) + whole.finish()
    split = adapter().chat_stream(PARAMS, "m", include_usage=True)
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += split.feed(STREAM[i:i + 1])  # splits inside "\r\n\r\n" and inside the UTF-8 of "é"
    assert out + split.finish() == expected
    assert split.usage == whole.usage


def test_streamed_and_unstreamed_calls_have_identical_usage() -> None:
    last = {"promptTokenCount": 300, "cachedContentTokenCount": 100, "candidatesTokenCount": 3,
            "thoughtsTokenCount": 20, "totalTokenCount": 323}
    _, unstreamed = adapter().chat_reply(PARAMS, json.dumps({"candidates": [{"content": {"parts": [
        {"text": "Héllo!"}]}, "finishReason": "STOP"}], "usageMetadata": last}).encode(), "m")
    s = adapter().chat_stream(PARAMS, "m", include_usage=False)
    s.feed(STREAM)
    assert s.usage == unstreamed == core.Usage(prompt_tokens=300, cached_tokens=100, completion_tokens=23,
                                               reasoning_tokens=20)


def test_stream_without_include_usage_lf_framing_and_a_last_event_without_separator() -> None:
    s = adapter().chat_stream(PARAMS, "m", include_usage=False)
    raw = sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]}, sep=b"\n\n") + \
        b'data: {"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"MAX_TOKENS"}],' \
        b'"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2}}'
    first = s.feed(raw)
    assert len(first) == 1
    rest = events(s.finish())
    assert rest[0]["choices"][0] == {"index": 0, "delta": {"content": "b"}, "logprobs": None, "finish_reason": "length"}
    assert rest[1:] == ["[DONE]"]
    assert s.usage == core.Usage(prompt_tokens=2, completion_tokens=2)


def test_stream_function_calls_and_error_events() -> None:
    s = adapter().chat_stream(PARAMS, "m", include_usage=False)
    got = events(s.feed(sse({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "a", "args": {"x": 1}}}, {"functionCall": {"name": "b"}}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "c", "args": {}}}]},
                         "finishReason": "STOP"}]},
        {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})))
    calls = [c for e in got[:2] for c in e["choices"][0]["delta"]["tool_calls"]]
    assert [(c["index"], c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "call_0", "a", '{"x":1}'), (1, "call_1", "b", "{}"), (2, "call_2", "c", "{}")]
    assert got[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert got[2] == {"error": {"message": "UNAVAILABLE: overloaded", "type": "upstream_error", "param": None,
                                "code": None}}
    assert s.usage is None


# --- failures ------------------------------------------------------------------------------------
def google(code: int, status: str, message: str = "m", reason: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return json.dumps({"error": err}).encode()


@pytest.mark.parametrize("status,body,expected", [
    (429, google(429, "RESOURCE_EXHAUSTED", "quota"), (429, "rate_limit_error", "RESOURCE_EXHAUSTED: quota")),
    (400, google(400, "INVALID_ARGUMENT", "bad"), (400, "invalid_request_error", "INVALID_ARGUMENT: bad")),
    (503, google(503, "UNAVAILABLE", "busy"), (503, "upstream_error", "UNAVAILABLE: busy")),
    (500, google(500, "INTERNAL", "oops"), (502, "upstream_error", "INTERNAL: oops")),
    (404, google(404, "NOT_FOUND", "no model"), (502, "upstream_error", "NOT_FOUND: no model")),
    (502, b"<html>bad gateway</html>", (502, "upstream_error", "<html>bad gateway</html>")),
])
def test_failures_map_to_openai_statuses(status: int, body: bytes, expected: tuple[int, str, str]) -> None:
    f = adapter().failure(PARAMS, status, body)
    assert (f.status, f.type, f.message) == expected


@pytest.mark.parametrize("status,body", [
    (403, google(403, "PERMISSION_DENIED", "denied")), (401, google(401, "UNAUTHENTICATED", "who")),
    (400, google(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"))])
def test_credential_failures_are_the_deployments_fault_never_401(status: int, body: bytes) -> None:
    f = adapter().failure(PARAMS, status, body)
    assert (f.status, f.type) == (502, "upstream_error") and "deployment's Gemini API key" in f.message


# --- pricing through the bundled table -----------------------------------------------------------
def test_gemini_25_pro_over_200k_prices_at_the_higher_tier_and_thoughts_at_the_output_rate() -> None:
    usage = usage_from_metadata({"promptTokenCount": 250_000, "candidatesTokenCount": 1_000,
                                 "thoughtsTokenCount": 500})
    cost = llmbill.cost("gemini/gemini-2.5-pro", usage)
    assert cost.tier_above_tokens == 200_000
    assert cost.input == Decimal("250000") * Decimal("0.0000025")
    assert cost.output + cost.reasoning == Decimal("1500") * Decimal("0.000015")
    assert cost.reasoning == Decimal("500") * Decimal("0.000015")
    below = llmbill.cost("gemini/gemini-2.5-pro", usage_from_metadata(
        {"promptTokenCount": 150_000, "cachedContentTokenCount": 1_000, "candidatesTokenCount": 1_000,
         "thoughtsTokenCount": 500}))
    assert below.tier_above_tokens == 0
    assert below.input == Decimal("149000") * Decimal("0.00000125")
    assert below.cache_read == Decimal("1000") * Decimal("0.000000125")
    assert below.output + below.reasoning == Decimal("1500") * Decimal("0.00001")


# --- end to end over HTTP, against the strict fake ------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(api_key="test-gemini-key") as up:
        yield up


def send(req: UpstreamRequest) -> tuple[int, bytes]:
    request = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def on(fake: FakeGemini, key: str = "test-gemini-key") -> ProviderParams:
    return ProviderParams("gemini", "gemini-2.5-pro", api_base=fake.url, api_key=key)


def test_e2e_unary_and_stream_agree_on_usage(fake: FakeGemini) -> None:
    fake.thoughts, fake.cached = 30, 4
    body = {"messages": [{"role": "system", "content": "Be brief."}, *HI], "max_tokens": 100, "temperature": 0.1,
            "stop": ["\n\n"], "response_format": {"type": "json_schema", "json_schema": {
                "name": "a", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}
    status, raw = send(adapter().chat_request(on(fake), body, stream=False))
    assert status == 200, raw
    out, usage = adapter().chat_reply(on(fake), raw, "my-model")
    assert out["choices"][0]["message"]["content"] == fake.reply_text
    assert usage == core.Usage(prompt_tokens=12, cached_tokens=4, completion_tokens=37, reasoning_tokens=30)
    req = adapter().chat_request(on(fake), body, stream=True)
    request = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers), method="POST")
    s = adapter().chat_stream(on(fake), "my-model", include_usage=True)
    out_events: list[bytes] = []
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        while piece := reply.read(7):
            out_events += s.feed(piece)
    got = events(out_events + s.finish())
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in got if isinstance(e, dict) and e["choices"]) \
        == fake.reply_text
    assert s.usage == usage and got[-2]["usage"] == out["usage"]
    assert fake.requests[-1]["query"] == {"alt": "sse"}


def test_e2e_tool_round_trip_is_accepted(fake: FakeGemini) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "source": {"type": "string", "format": "uri"}}}}}]
    fake.function_calls = [{"name": "get_weather", "args": {"city": "Paris"}, "thoughtSignature": "U0lH"}]
    status, raw = send(adapter().chat_request(on(fake), {"messages": HI, "tools": tools, "tool_choice": "auto"},
                                              stream=False))
    assert status == 200, raw
    message = adapter().chat_reply(on(fake), raw, "m")[0]["choices"][0]["message"]
    call = message["tool_calls"][0]
    fake.function_calls = []
    history = [*HI, message, {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]
    status, raw = send(adapter().chat_request(on(fake), {"messages": history, "tools": tools}, stream=False))
    assert status == 200, raw
    sent = fake.requests[-1]["body"]["contents"]
    assert sent[1]["parts"][0]["thoughtSignature"] == "U0lH"
    assert sent[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_e2e_fake_rejects_malformed_bodies_and_bad_keys(fake: FakeGemini) -> None:
    good = adapter().chat_request(on(fake), {"messages": HI}, stream=False)
    for bad in [{"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
                {"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "user", "parts": [{"text": "b"}]}]},
                {"contents": [{"role": "user", "parts": [{"text": "a"}]}], "generationConfig": {"max_tokens": 5}},
                {"contents": [{"role": "user", "parts": [{"text": "a"}]}], "tools": [{"functionDeclarations": [
                    {"name": "f", "parameters": {"type": "OBJECT", "properties": {}}}]}]},
                {"contents": [{"role": "user", "parts": [{"text": "a"}]}], "tools": [{"functionDeclarations": [
                    {"name": "f", "parameters": {"type": "OBJECT", "properties": {
                        "u": {"type": "STRING", "format": "uri"}}}}]}]},
                {"contents": [{"role": "user", "parts": [{"text": "a"}]}], "generationConfig": {
                    "responseMimeType": "application/json", "responseSchema": {"type": "object"}}},
                {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}]:
        status, raw = send(UpstreamRequest(good.url, good.headers, json.dumps(bad).encode()))
        failure = adapter().failure(on(fake), status, raw)
        assert (status, failure.status, failure.type) == (400, 400, "invalid_request_error"), bad
    status, raw = send(adapter().chat_request(on(fake, key="wrong"), {"messages": HI}, stream=False))
    assert status == 400 and adapter().failure(on(fake), status, raw).status == 502
    status, raw = send(adapter().chat_request(ProviderParams("gemini", "m", api_base=fake.url), {"messages": HI},
                                              stream=False))
    assert status == 403 and adapter().failure(on(fake), status, raw).status == 502


def test_e2e_scripted_rate_limit(fake: FakeGemini) -> None:
    fake.fail_next(1, 429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    status, raw = send(adapter().chat_request(on(fake), {"messages": HI}, stream=True))
    f = adapter().failure(on(fake), status, raw)
    assert (status, f.status, f.type) == (429, 429, "rate_limit_error")
    assert send(adapter().chat_request(on(fake), {"messages": HI}, stream=False))[0] == 200
