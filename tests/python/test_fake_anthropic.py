"""The strict fake Anthropic Messages API (fakes/anthropic_upstream.py) over real HTTP: the official
`anthropic` SDK talks to it (so the fake speaks what Anthropic's clients expect), it refuses what the
real API refuses, and every request the Anthropic adapter builds passes it and translates back.
"""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest

from llmbill.pricing import default_prices
from llmbill.proxy.providers.anthropic import AnthropicAdapter, messages_stream_usage, messages_usage
from llmbill.proxy.providers.base import ProviderParams, UpstreamRequest
from tests.python.fakes.anthropic_upstream import FakeAnthropic

MODEL = "claude-sonnet-4-5"
ADAPTER = AnthropicAdapter(clock=lambda: 1_700_000_000.0)
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
LONG_RULES = "Answer in one short sentence. " * 40


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as up:
        yield up


@pytest.fixture
def client(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0)


def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("POST", parts.path, body if isinstance(body, bytes) else json.dumps(body).encode(), headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def send(req: UpstreamRequest) -> tuple[int, bytes]:
    return post(req.url, req.body, dict(req.headers))


# ---- the official SDK against the fake ------------------------------------------------------------

def test_sdk_plain_message(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].type == "text" and message.content[0].text == fake.reply_text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 2 and message.usage.output_tokens == 5
    sent = fake.requests[-1]
    assert sent["path"] == "/v1/messages" and sent["headers"]["anthropic-version"]


def test_sdk_stream_with_one_hour_cache_write_then_read(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": LONG_RULES, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    with client.messages.stream(model=MODEL, max_tokens=100, system=system,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        text = "".join(stream.text_stream)
        first = stream.get_final_message()
    assert text == "Hello from the fake Anthropic."
    written = first.usage.cache_creation_input_tokens or 0
    assert written == 300 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None and first.usage.cache_creation.ephemeral_1h_input_tokens == written
    second = client.messages.create(model=MODEL, max_tokens=100, system=system,
                                    messages=[{"role": "user", "content": "Hello"}])
    assert second.usage.cache_read_input_tokens == written and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens


def test_sdk_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    asked: list[Any] = [{"role": "user", "content": "Use get_weather for Paris"}]
    first = client.messages.create(model=MODEL, max_tokens=200, tools=[WEATHER], messages=asked)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "example"}
    follow = asked + [{"role": "assistant", "content": first.content},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]}]
    second = client.messages.create(model=MODEL, max_tokens=200, tools=[WEATHER], messages=follow)
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and second.content[0].text == "Tool said: Sunny"
    with client.messages.stream(model=MODEL, max_tokens=200, tools=[WEATHER], messages=asked,
                                tool_choice={"type": "any"}) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["tool_use"] and final.content[0].input == {"city": "example"}


def test_sdk_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens == 3


@pytest.mark.parametrize("status, error", [(529, anthropic.OverloadedError), (429, anthropic.RateLimitError),
                                           (401, anthropic.AuthenticationError), (500, anthropic.InternalServerError)])
def test_sdk_sees_scripted_failures(client: anthropic.Anthropic, fake: FakeAnthropic, status: int,
                                    error: type[Exception]) -> None:
    fake.fail_next(1, status)
    with pytest.raises(error):
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}])


def test_sdk_sees_an_error_event_mid_stream(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.stream_error_after = 3
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client.messages.stream(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]) as s:
            s.get_final_message()


# ---- what the fake refuses ------------------------------------------------------------------------

def ok_body(**changes: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}], **changes}


def headers(fake: FakeAnthropic, **changes: str) -> dict[str, str]:
    return {"x-api-key": fake.api_key, "anthropic-version": "2023-06-01", "content-type": "application/json", **changes}


TOOL_TURN = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}


@pytest.mark.parametrize("changes, says", [
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"model": ""}, "model: Field required"),
    ({"messages": []}, "messages: Field required"),
    ({"messages": [{"role": "assistant", "content": "Hi"}]}, 'first message must use the "user" role'),
    ({"messages": [{"role": "system", "content": "Hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": ""}]}, "non-empty"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "colour": "red"}]}]},
     "Extra inputs are not permitted"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                             "media_type": "image/bmp", "data": "AA=="}}]}]},
     "media_type"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]},
     "only allowed in assistant messages"),
    ({"messages": [{"role": "user", "content": "Hi"}, TOOL_TURN, {"role": "user", "content": "no result"}]},
     "`tool_use` ids were found without `tool_result` blocks"),
    ({"messages": [{"role": "user", "content": "Hi"}, TOOL_TURN, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1"}, {"type": "tool_result", "tool_use_id": "toolu_other"}]}]},
     "unexpected `tool_use_id` found in `tool_result` blocks: toolu_other"),
    ({"messages": [{"role": "user", "content": "Hi"}, TOOL_TURN, {"role": "user", "content": [
        {"type": "text", "text": "first"}, {"type": "tool_result", "tool_use_id": "toolu_1"}]}]}, "must come first"),
    ({"system": [{"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)]},
     "A maximum of 4 blocks with cache_control"),
    ({"system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                 {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
     "must not come after a ttl='5m'"),
    ({"tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
    ({"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}, "tools.0.name"),
    ({"temperature": 1.5}, "temperature"),
    ({"n": 2}, "n: Extra inputs are not permitted"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "budget_tokens"),
])
def test_the_fake_refuses_what_the_api_refuses(fake: FakeAnthropic, changes: dict[str, Any], says: str) -> None:
    body = {k: v for k, v in ok_body(**changes).items() if v is not None}
    status, reply = post(fake.url + "/v1/messages", body, headers(fake))
    error = json.loads(reply)
    assert status == 400, reply
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert says in error["error"]["message"]


@pytest.mark.parametrize("path, changes, status, kind", [
    ("/v1/messages", {"x-api-key": "wrong"}, 401, "authentication_error"),
    ("/v1/messages", {"x-api-key": ""}, 401, "authentication_error"),
    ("/v1/messages", {"anthropic-version": "2024-99-99"}, 400, "invalid_request_error"),
    ("/v1/chat/completions", {}, 404, "not_found_error"),
])
def test_the_fake_checks_path_key_and_version(fake: FakeAnthropic, path: str, changes: dict[str, str], status: int,
                                              kind: str) -> None:
    got, reply = post(fake.url + path, ok_body(), headers(fake, **changes))
    assert (got, json.loads(reply)["error"]["type"]) == (status, kind)


def test_the_newer_api_version_has_no_sampling_parameters(fake: FakeAnthropic) -> None:
    status, reply = post(fake.url + "/v1/messages", ok_body(temperature=0.5),
                         headers(fake, **{"anthropic-version": "2026-10-21"}))
    assert status == 400 and "temperature" in json.loads(reply)["error"]["message"]


def test_the_fake_truncates_at_max_tokens_and_stop_sequences(fake: FakeAnthropic) -> None:
    _, reply = post(fake.url + "/v1/messages", ok_body(max_tokens=2), headers(fake))
    message = json.loads(reply)
    assert (message["content"][0]["text"], message["stop_reason"]) == ("Hello from", "max_tokens")
    _, reply = post(fake.url + "/v1/messages", ok_body(stop_sequences=["fake"]), headers(fake))
    message = json.loads(reply)
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "fake")


# ---- the adapter's requests against the strict fake -----------------------------------------------

def params(fake: FakeAnthropic, **extra: Any) -> ProviderParams:
    return ProviderParams("anthropic", MODEL, api_base=fake.url, api_key=fake.api_key, extra=extra)


CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                              "parameters": WEATHER["input_schema"]}}
CONVERSATIONS: dict[str, dict[str, Any]] = {
    "plain": {"messages": [{"role": "user", "content": "Hello"}]},
    "system, developer and merged turns": {"messages": [
        {"role": "system", "content": LONG_RULES}, {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}], "stop": "fake",
        "temperature": 0.3, "user": "end-user-1"},
    "tool round trip": {"messages": [
        {"role": "user", "content": "Use get_weather for Paris"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Snow"}],
        "tools": [CHAT_TOOL], "tool_choice": "auto", "parallel_tool_calls": False},
    "images and cache marks": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": LONG_RULES, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "What is it?"}], "cache_control": {"type": "ephemeral"}}]},
    "json mode": {"messages": [{"role": "user", "content": "Give me a city"}],
                  "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": WEATHER["input_schema"]}}},
}


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_every_translated_request_passes_the_fake_and_streams_to_the_same_usage(fake: FakeAnthropic, name: str) -> None:
    body = CONVERSATIONS[name]
    status, reply = send(ADAPTER.chat_request(params(fake), body, stream=False))
    assert status == 200, reply
    completion, usage = ADAPTER.chat_reply(params(fake), reply, "my-claude")
    assert completion["object"] == "chat.completion" and completion["model"] == "my-claude"
    fake.forget_cache()  # the same call again, streamed, must cost the same
    status, data = send(ADAPTER.chat_request(params(fake), body, stream=True))
    assert status == 200, data
    stream = ADAPTER.chat_stream(params(fake), "my-claude", include_usage=True)
    cuts = sorted(random.Random(name).sample(range(1, len(data)), 20))
    events = [e for a, b in zip([0] + cuts, cuts + [len(data)]) for e in stream.feed(data[a:b])] + stream.finish()
    assert stream.complete and events[-1] == b"data: [DONE]\n\n"
    assert stream.usage == usage == messages_usage(reply) == messages_stream_usage(data)
    assert json.loads(events[-2][6:])["usage"] == completion["usage"]
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events[:-2])
    assert text == (completion["choices"][0]["message"]["content"] or "")


def test_json_mode_answers_json_content(fake: FakeAnthropic) -> None:
    _, reply = send(ADAPTER.chat_request(params(fake), CONVERSATIONS["json mode"], stream=False))
    completion, _ = ADAPTER.chat_reply(params(fake), reply, "m")
    assert json.loads(completion["choices"][0]["message"]["content"]) == {"city": "example"}
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_one_hour_cache_writes_reach_core_usage_and_price(fake: FakeAnthropic) -> None:
    body = CONVERSATIONS["images and cache marks"]
    _, reply = send(ADAPTER.chat_request(params(fake), body, stream=False))
    _, usage = ADAPTER.chat_reply(params(fake), reply, "m")
    assert usage.cache_creation_1h_tokens == 300 and usage.cache_creation_tokens > 300  # 1h ⊂ all writes
    price = default_prices().resolve(MODEL)
    assert price.cache_creation_input_token_cost_above_1hr is not None
    assert price.cost(usage).cache_creation_1h == 300 * price.cache_creation_input_token_cost_above_1hr
    _, again = send(ADAPTER.chat_request(params(fake), body, stream=False))
    assert ADAPTER.chat_reply(params(fake), again, "m")[1].cached_tokens == usage.cache_creation_tokens


@pytest.mark.parametrize("status, client_status", [(529, 503), (429, 429), (401, 502), (500, 502)])
def test_scripted_failures_map_through_the_adapter(fake: FakeAnthropic, status: int, client_status: int) -> None:
    fake.fail_next(1, status)
    got, reply = send(ADAPTER.chat_request(params(fake), CONVERSATIONS["plain"], stream=False))
    assert got == status
    assert ADAPTER.failure(params(fake), got, reply).status == client_status
