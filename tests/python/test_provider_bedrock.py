"""The Bedrock adapter (providers/bedrock.py, bedrock_messages.py): OpenAI chat → Converse, SigV4
signing with a pinned clock, Converse replies → chat.completion, error mapping; and whole exchanges
with the strict fake Bedrock over real HTTP. Streams: test_provider_bedrock_stream.py."""

from __future__ import annotations

import datetime
import sys
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from llmbill._native import core
from llmbill.proxy.providers.base import ProviderInputError, ProviderParams, UpstreamRequest
from llmbill.proxy.providers.bedrock import BedrockAdapter, sign
from llmbill.proxy.providers.bedrock_messages import converse_body
from llmbill.proxy.providers.openai_compatible import ProviderConfigError
from tests.python.fakes.bedrock_upstream import ACCESS_KEY, SECRET_KEY, FakeBedrock, check_converse

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
NOW = datetime.datetime(2024, 5, 1, 12, 30, 45, tzinfo=datetime.timezone.utc)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CREDS = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY, "aws_region_name": "us-east-1"}


def params(model: str = HAIKU, api_base: str = "", **extra: Any) -> ProviderParams:
    return ProviderParams(provider="bedrock", model=model, api_base=api_base, extra={**CREDS, **extra})


def adapter(clock: datetime.datetime = NOW) -> BedrockAdapter:
    return BedrockAdapter(clock=lambda: clock, env={}, new_id=lambda: "fixed")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# --- OpenAI chat → Converse ----------------------------------------------------------------------
def test_system_and_developer_messages_become_system_blocks_wherever_they_stand() -> None:
    body = converse_body({"messages": [{"role": "system", "content": "Be brief."}, user("Hi"),
                                       {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]}]})
    assert body == {"system": [{"text": "Be brief."}, {"text": "No emoji."}],
                    "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


def test_text_and_image_parts_become_blocks_with_the_image_bytes_base64() -> None:
    body = converse_body({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]})
    assert body["messages"][0]["content"] == [
        {"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "data:image/bmp;base64,AAAA",
                                 "data:image/png;base64,not base64!"])
def test_images_bedrock_cannot_take_are_refused(url: str) -> None:
    with pytest.raises(ProviderInputError) as info:
        converse_body({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    assert info.value.param == "messages"


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks_in_alternating_turns() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    call2 = {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}
    body = converse_body({
        "messages": [user("Weather and time in Oslo?"),
                     {"role": "assistant", "content": None, "tool_calls": [call, call2]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "4 °C"},
                     {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "09:00"}]},
                     user("Thanks. Anything else?")],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                                    "parameters": {"type": "object", "properties": {"city": {}}}}},
                  {"type": "function", "function": {"name": "time"}}]})
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Weather and time in Oslo?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}},
                                          {"toolUse": {"toolUseId": "call_2", "name": "time", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "4 °C"}]}},
                                     {"toolResult": {"toolUseId": "call_2", "content": [{"text": "09:00"}]}},
                                     {"text": "Thanks. Anything else?"}]}]
    assert body["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "weather", "description": "Weather now",
                      "inputSchema": {"json": {"type": "object", "properties": {"city": {}}}}}},
        {"toolSpec": {"name": "time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}


def test_consecutive_same_role_messages_are_merged_and_blank_text_dropped() -> None:
    body = converse_body({"messages": [user("one"), user(""), user("two"),
                                       {"role": "assistant", "content": "three"}, {"role": "assistant", "content": "four"}]})
    assert body["messages"] == [{"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
                                {"role": "assistant", "content": [{"text": "three"}, {"text": "four"}]}]


@pytest.mark.parametrize("messages, says", [
    ([{"role": "assistant", "content": "I start"}, user("then you")], "start with a user message"),
    ([{"role": "system", "content": "only system"}], "user message"),
    ([user("")], "user message"),
    ([{"role": "function", "name": "f", "content": "x"}], "role 'function'"),
    ([{"role": "tool", "content": "no id"}], "tool_call_id"),
    ([user("x"), {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}],
     "JSON object"),
    ([user("x"), {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}],
     "not JSON"),
    ([], "non-empty"),
])
def test_conversations_converse_cannot_hold_are_refused(messages: list[Any], says: str) -> None:
    with pytest.raises(ProviderInputError, match=says) as info:
        converse_body({"messages": messages})
    assert info.value.param == "messages"


def test_inference_parameters_map_and_max_completion_tokens_wins() -> None:
    body = converse_body({"messages": [user("x")], "max_tokens": 10, "max_completion_tokens": 20,
                          "temperature": 0.2, "top_p": 0.9, "stop": "END"})
    assert body["inferenceConfig"] == {"maxTokens": 20, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    assert "inferenceConfig" not in converse_body({"messages": [user("x")], "temperature": None})


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"auto": {}}), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "weather"}}, {"tool": {"name": "weather"}})])
def test_tool_choice_maps_to_converse(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    body = converse_body({"messages": [user("x")], "tools": tools, "tool_choice": choice})
    assert body["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_drops_the_tools_unless_the_history_used_them() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert "toolConfig" not in converse_body({"messages": [user("x")], "tools": tools, "tool_choice": "none"})
    history = [user("x"), {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "c", "content": "done"}]
    with pytest.raises(ProviderInputError) as info:
        converse_body({"messages": history, "tools": tools, "tool_choice": "none"})
    assert info.value.param == "tool_choice"


@pytest.mark.parametrize("extra, param", [
    ({"response_format": {"type": "json_object"}, "seed": 1}, "response_format"),
    ({"presence_penalty": 0.5}, "presence_penalty"), ({"n": 2}, "n"), ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"logprobs": True}, "logprobs"), ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "web_search"}]}, "tools"), ({"max_tokens": 0}, "max_tokens")])
def test_parameters_converse_cannot_express_are_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderInputError) as info:
        converse_body({"messages": [user("x")], **extra})
    assert info.value.param == param


def test_every_unsupported_parameter_is_named() -> None:
    with pytest.raises(ProviderInputError, match="response_format, seed"):
        converse_body({"messages": [user("x")], "seed": 1, "response_format": {"type": "json_object"}})


def test_parameters_that_do_not_reach_the_model_are_accepted() -> None:
    body = converse_body({"model": "m", "messages": [user("x")], "user": "u-1", "n": 1, "stream": True,
                          "stream_options": {"include_usage": True}, "parallel_tool_calls": True, "seed": None})
    assert body == {"messages": [{"role": "user", "content": [{"text": "x"}]}]}


def test_cache_control_marks_become_cache_points() -> None:
    body = converse_body({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "question"}]}]})
    assert body["system"] == [{"text": "long rules"}, {"cachePoint": {"type": "default"}}]
    assert body["messages"][0]["content"] == [{"text": "long doc"}, {"cachePoint": {"type": "default"}},
                                              {"text": "question"}]


@pytest.mark.parametrize("body, says", [
    ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, "start with a user message"),
    ({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]},
     "alternate"),
    ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, "role must be user or assistant"),
    ({"messages": [{"role": "user", "content": [{"text": "  "}]}]}, "is blank"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]},
                   {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]},
                   {"role": "user", "content": [{"text": "no result"}]}]}, "Expected toolResult"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]},
                   {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]},
                   {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": []}}]}]}, "toolConfig"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}], "temperature": 1}, "extraneous key")])
def test_the_fake_refuses_what_bedrock_refuses(body: dict[str, Any], says: str) -> None:
    assert says in (check_converse(body) or "")


def test_every_translation_above_passes_the_fakes_rules() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    conversations = [
        [{"role": "system", "content": "s"}, user("a"), user("b"), {"role": "assistant", "content": "c"}, user("d")],
        [user("a"), {"role": "assistant", "content": "thinking", "tool_calls": [call]},
         {"role": "tool", "tool_call_id": "c1", "content": ""}, user("more")],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                      {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]]
    tools = [{"type": "function", "function": {"name": "f"}}]
    for messages in conversations:
        assert check_converse(converse_body({"messages": messages, "tools": tools, "tool_choice": "auto",
                                             "max_tokens": 9, "stop": ["x"]})) is None


# --- URL, credentials and SigV4 -------------------------------------------------------------------
def test_bedrock_and_bedrock_converse_prefixes_reach_the_same_quoted_url() -> None:
    a = adapter()
    plain = a.chat_request(params(HAIKU), {"messages": [user("x")]}, stream=False)
    converse = a.chat_request(params(f"converse/{HAIKU}"), {"messages": [user("x")]}, stream=False)
    assert plain.url == converse.url == \
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert plain.headers == converse.headers
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic" in \
        a.chat_request(params(arn), {"messages": [user("x")]}, stream=False).url


def test_streaming_uses_converse_stream_and_asks_for_the_event_stream() -> None:
    r = adapter().chat_request(params(), {"messages": [user("x")], "stream": True}, stream=True)
    assert r.url.endswith("/converse-stream")
    assert r.headers["Accept"] == "application/vnd.amazon.eventstream"


@pytest.mark.parametrize("base, expected", [
    ("https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com:443/", "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"),
    ("http://127.0.0.1:8123", "http://127.0.0.1:8123")])
def test_api_base_replaces_the_host_without_a_default_port(base: str, expected: str) -> None:
    assert adapter().chat_request(params(api_base=base), {"messages": [user("x")]}, False).url.startswith(
        f"{expected}/model/")
    endpoint = params(aws_bedrock_runtime_endpoint=base)
    assert adapter().chat_request(endpoint, {"messages": [user("x")]}, False).url.startswith(f"{expected}/model/")


def test_signature_is_botocores_own_for_the_pinned_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    r = adapter().chat_request(params(aws_session_token="session-1"), {"messages": [user("x")]}, stream=False)
    # botocore's standard path, with its clock frozen at the same instant, must sign identically.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None))
    reference = AWSRequest(method="POST", url=r.url, data=r.body,
                           headers={"Content-Type": "application/json", "Accept": "application/json"})
    botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, "session-1"), "bedrock", "us-east-1").add_auth(reference)
    assert r.headers["Authorization"] == reference.headers["Authorization"]
    assert r.headers["X-Amz-Date"] == "20240501T123045Z"
    assert r.headers["X-Amz-Security-Token"] == "session-1"
    assert "x-amz-security-token" in r.headers["Authorization"]


def test_signature_is_deterministic_and_moves_with_the_clock_and_body() -> None:
    body = {"messages": [user("x")]}
    first = adapter().chat_request(params(), body, False).headers["Authorization"]
    assert adapter().chat_request(params(), body, False).headers["Authorization"] == first
    assert adapter(NOW + datetime.timedelta(seconds=1)).chat_request(params(), body, False).headers["Authorization"] != first
    assert adapter().chat_request(params(), {"messages": [user("y")]}, False).headers["Authorization"] != first


def test_credentials_and_region_fall_back_to_the_aws_variables() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t",
           "AWS_DEFAULT_REGION": "eu-west-3"}
    a = BedrockAdapter(clock=lambda: NOW, env=env)
    r = a.chat_request(ProviderParams(provider="bedrock", model=HAIKU), {"messages": [user("x")]}, False)
    assert r.url.startswith("https://bedrock-runtime.eu-west-3.amazonaws.com/")
    assert "Credential=AKIDENV/20240501/eu-west-3/bedrock/aws4_request" in r.headers["Authorization"]
    assert r.headers["X-Amz-Security-Token"] == "t"


@pytest.mark.parametrize("extra, key", [
    ({"aws_access_key_id": "AKID", "aws_secret_access_key": "s"}, "aws_region_name"),
    ({"aws_region_name": "us-east-1"}, "aws_access_key_id"),
    ({"aws_region_name": "us-east-1", "aws_access_key_id": "AKID"}, "aws_secret_access_key")])
def test_missing_configuration_is_a_one_line_error_naming_the_key(extra: dict[str, str], key: str) -> None:
    a = BedrockAdapter(clock=lambda: NOW, env={})
    with pytest.raises(ProviderConfigError, match=key) as info:
        a.chat_request(ProviderParams(provider="bedrock", model=HAIKU, extra=extra), {"messages": [user("x")]}, False)
    assert info.value.key == key and "\n" not in str(info.value)


def test_invoke_deployments_are_refused_at_configuration() -> None:
    with pytest.raises(ProviderConfigError, match="converse") as info:
        adapter().chat_request(params(f"invoke/{HAIKU}"), {"messages": [user("x")]}, False)
    assert info.value.key == "model"


def test_without_botocore_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # makes `import botocore.auth` fail
    with pytest.raises(ProviderConfigError) as info:
        adapter().chat_request(params(), {"messages": [user("x")]}, False)
    assert "llmbill[bedrock]" in str(info.value) and "\n" not in str(info.value)


# --- Converse reply → chat.completion ------------------------------------------------------------
def reply(content: list[dict[str, Any]], stop: str = "end_turn", usage: dict[str, int] | None = None) -> bytes:
    data: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                            "metrics": {"latencyMs": 3}}
    data["usage"] = usage if usage is not None else {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}
    return orjson.dumps(data)


def test_a_text_reply_becomes_exactly_openais_chat_completion() -> None:
    out, usage = adapter().chat_reply(params(), reply([{"text": "Hello"}, {"text": " there"}]), "claude-fast")
    assert out == {"id": "chatcmpl-fixed", "object": "chat.completion", "created": int(NOW.timestamp()),
                   "model": "claude-fast",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                                "finish_reason": "stop", "logprobs": None}],
                   "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                             "prompt_tokens_details": {"cached_tokens": 0}}}
    assert usage == core.Usage(prompt_tokens=12, completion_tokens=7)


def test_a_tool_use_reply_becomes_tool_calls() -> None:
    use = {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Oslo"}}}
    out, _ = adapter().chat_reply(params(), reply([use], "tool_use"), "m")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]}


@pytest.mark.parametrize("stop, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("content_filtered", "content_filter"), ("guardrail_intervened", "content_filter")])
def test_stop_reasons_map_to_finish_reasons(stop: str, finish: str) -> None:
    out, _ = adapter().chat_reply(params(), reply([{"text": "x"}], stop), "m")
    assert out["choices"][0]["finish_reason"] == finish


def test_cache_tokens_count_in_the_prompt_and_are_itemised() -> None:
    usage = {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20,
             "totalTokens": 135}
    out, got = adapter().chat_reply(params(), reply([{"text": "x"}], usage=usage), "m")
    assert out["usage"] == {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                            "prompt_tokens_details": {"cached_tokens": 100}, "cache_creation_input_tokens": 20}
    assert got == core.Usage(prompt_tokens=130, completion_tokens=5, cached_tokens=100, cache_creation_tokens=20)


def test_a_reply_without_usage_is_estimated_and_marked() -> None:
    raw = orjson.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "x" * 40}]}},
                        "stopReason": "end_turn"})
    _, usage = adapter().chat_reply(params(), raw, "m")
    assert usage.estimated and usage.completion_tokens == 10


# --- errors ----------------------------------------------------------------------------------------
def aws_error(name: str, message: str = "boom") -> tuple[bytes, dict[str, str]]:
    return orjson.dumps({"message": message}), {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/"}


@pytest.mark.parametrize("status, name, expected, type_", [
    (429, "ThrottlingException", 429, "rate_limit_error"),
    (429, "ModelNotReadyException", 503, "upstream_error"),
    (503, "ServiceUnavailableException", 503, "upstream_error"),
    (400, "ValidationException", 400, "invalid_request_error"),
    (403, "AccessDeniedException", 502, "upstream_error"),
    (403, "UnrecognizedClientException", 502, "upstream_error"),
    (403, "InvalidSignatureException", 502, "upstream_error"),
    (500, "InternalServerException", 502, "upstream_error"),
    (424, "ModelErrorException", 502, "upstream_error"),
    (408, "ModelTimeoutException", 504, "upstream_error")])
def test_bedrock_errors_map_by_exception_name(status: int, name: str, expected: int, type_: str) -> None:
    body, headers = aws_error(name)
    failure = adapter().failure(params(), status, body, headers)
    assert (failure.status, failure.type) == (expected, type_)
    assert "boom" in failure.message


@pytest.mark.parametrize("status, expected", [(429, 429), (400, 400), (403, 502), (401, 502), (503, 503),
                                              (500, 502), (502, 502), (404, 502)])
def test_without_the_error_type_the_status_decides_and_is_never_401(status: int, expected: int) -> None:
    failure = adapter().failure(params(), status, b'{"message": "nope"}')
    assert failure.status == expected != 401


def test_a_rejected_signature_names_the_deployments_credentials() -> None:
    body, headers = aws_error("AccessDeniedException", "User is not authorized")
    failure = adapter().failure(params(), 403, body, headers)
    assert "credentials" in failure.message and "aws_access_key_id" in failure.message
    assert failure.message.startswith(f"bedrock/{HAIKU}:")
    assert adapter().failure(params(), 400, b'{"__type": "ValidationException", "message": "bad"}').status == 400


# --- over HTTP, against the strict fake -----------------------------------------------------------
def post(r: UpstreamRequest) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(r.url, data=r.body, headers=dict(r.headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def live(bedrock: FakeBedrock, **extra: Any) -> ProviderParams:
    return params(api_base=bedrock.url, **extra)


def test_a_converse_exchange_with_the_fake_is_accepted_and_translated() -> None:
    with FakeBedrock() as bedrock:
        bedrock.usage = {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}
        a = BedrockAdapter()
        r = a.chat_request(live(bedrock), {"messages": [{"role": "system", "content": "Be kind."}, user("Hi")],
                                           "max_tokens": 50}, stream=False)
        status, _, body = post(r)
        assert status == 200, body
        out, usage = a.chat_reply(live(bedrock), body, "claude")
    assert out["choices"][0]["message"]["content"] == "Hello from the fake Bedrock."
    assert usage == core.Usage(prompt_tokens=130, completion_tokens=5, cached_tokens=100, cache_creation_tokens=20)
    assert bedrock.requests[-1]["body"]["system"] == [{"text": "Be kind."}]


def test_a_tool_round_trip_satisfies_bedrocks_tool_result_rules() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    with FakeBedrock() as bedrock:
        bedrock.tool_use = {"toolUseId": "tooluse_9", "name": "weather", "input": {"city": "Oslo"}}
        a = BedrockAdapter()
        status, _, body = post(a.chat_request(live(bedrock), {"messages": [user("Oslo?")], "tools": tools}, False))
        first, _ = a.chat_reply(live(bedrock), body, "m")
        assistant = first["choices"][0]["message"]
        follow_up = {"messages": [user("Oslo?"), assistant,
                                  {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "4 °C"}],
                     "tools": tools}
        bedrock.tool_use = None
        status, _, body = post(a.chat_request(live(bedrock), follow_up, False))
        assert status == 200, body
        wrong = dict(follow_up, messages=follow_up["messages"][:2] + [
            {"role": "tool", "tool_call_id": "tooluse_other", "content": "4 °C"}])
        status, headers, body = post(a.chat_request(live(bedrock), wrong, False))
    assert status == 400 and headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert adapter().failure(params(), status, body, headers).status == 400


def test_a_wrong_secret_or_a_tampered_body_is_refused_and_blamed_on_the_credentials() -> None:
    with FakeBedrock() as bedrock:
        a = BedrockAdapter()
        status, headers, body = post(a.chat_request(live(bedrock, aws_secret_access_key="wrong"),
                                                    {"messages": [user("x")]}, False))
        assert (status, headers["x-amzn-ErrorType"].split(":")[0]) == (403, "InvalidSignatureException")
        failure = a.failure(live(bedrock), status, body, headers)
        assert failure.status == 502 and "credentials" in failure.message
        signed = a.chat_request(live(bedrock), {"messages": [user("x")]}, False)
        status, _, _ = post(UpstreamRequest(signed.url, signed.headers, signed.body.replace(b'"x"', b'"y"')))
        assert status == 403
        status, headers, _ = post(a.chat_request(live(bedrock, aws_access_key_id="AKIDUNKNOWN"),
                                                 {"messages": [user("x")]}, False))
        assert (status, headers["x-amzn-ErrorType"].split(":")[0]) == (403, "UnrecognizedClientException")


def test_a_session_token_is_sent_and_checked() -> None:
    with FakeBedrock(session_token="tok-1") as bedrock:
        a = BedrockAdapter()
        assert post(a.chat_request(live(bedrock, aws_session_token="tok-1"), {"messages": [user("x")]}, False))[0] == 200
        assert post(a.chat_request(live(bedrock), {"messages": [user("x")]}, False))[0] == 403


def test_a_signature_from_a_clock_off_by_ten_minutes_is_expired() -> None:
    with FakeBedrock(clock=lambda: NOW.timestamp()) as bedrock:
        late = BedrockAdapter(clock=lambda: NOW + datetime.timedelta(minutes=10))
        status, _, body = post(late.chat_request(live(bedrock), {"messages": [user("x")]}, False))
        assert status == 403 and b"Signature expired" in body
        assert post(adapter().chat_request(live(bedrock), {"messages": [user("x")]}, False))[0] == 200


def test_scripted_throttling_reaches_the_client_as_429() -> None:
    with FakeBedrock() as bedrock:
        bedrock.fail_next(1, "ThrottlingException")
        a = BedrockAdapter()
        status, headers, body = post(a.chat_request(live(bedrock), {"messages": [user("x")]}, False))
    assert status == 429
    assert a.failure(live(bedrock), status, body, headers).status == 429
