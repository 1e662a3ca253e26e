"""OpenAI and the OpenAI-compatible hosts (providers/openai_compatible.py): default bases and key
variables as LiteLLM users expect them, the pass-through adapter and its stream, error mapping, and
exchanges with the fake OpenAI upstream over real HTTP."""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson
import pytest

from llmbill._native import core
from llmbill.proxy.providers.base import ProviderParams
from llmbill.proxy.providers.openai_compatible import (
    HOSTS, OpenAICompatibleAdapter, OpenAIStream, ProviderConfigError, endpoint)
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.test_provider_bedrock import post

CHAT = {"model": "alias", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("provider, base, key_env", [
    ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("together_ai", "https://api.together.ai/v1", "TOGETHER_API_KEY"),
    ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    ("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    ("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    ("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
    ("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    ("ollama_chat", "http://localhost:11434/v1", "OLLAMA_API_KEY"),
    ("lm_studio", "http://localhost:1234/v1", "LM_STUDIO_API_KEY")])
def test_each_host_has_its_default_base_and_key_variable(provider: str, base: str, key_env: str) -> None:
    assert endpoint(ProviderParams(provider=provider, model="m"), env={key_env: "k"}) == (base, "k")


def test_the_table_covers_every_host_the_issue_names() -> None:
    assert set(HOSTS) == {"openai", "groq", "together_ai", "mistral", "deepseek", "fireworks_ai", "openrouter", "xai",
                          "perplexity", "cerebras", "hosted_vllm", "ollama_chat", "lm_studio"}


def test_the_deployment_wins_over_the_variables_which_win_over_the_default() -> None:
    env = {"GROQ_API_BASE": "https://proxy.example/groq/", "GROQ_API_KEY": "env-key"}
    assert endpoint(ProviderParams(provider="groq", model="m"), env=env) == ("https://proxy.example/groq", "env-key")
    mine = ProviderParams(provider="groq", model="m", api_base="https://mine/v1", api_key="mine")
    assert endpoint(mine, env=env) == ("https://mine/v1", "mine")
    assert endpoint(ProviderParams(provider="together_ai", model="m"),
                    env={"TOGETHERAI_API_KEY": "third", "TOGETHER_AI_API_KEY": "second"})[1] == "second"


def test_a_cloud_host_without_a_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ProviderConfigError, match="XAI_API_KEY") as info:
        endpoint(ProviderParams(provider="xai", model="grok-4"), env={})
    assert info.value.key == "api_key"


def test_local_servers_need_no_key_and_vllm_needs_a_base() -> None:
    with pytest.raises(ProviderConfigError) as info:
        endpoint(ProviderParams(provider="hosted_vllm", model="m"), env={})
    assert info.value.key == "api_base"
    assert endpoint(ProviderParams(provider="hosted_vllm", model="m", api_base="http://gpu:8000/v1"), env={}) == \
        ("http://gpu:8000/v1", "")
    # LiteLLM users point ollama_chat at the bare server; /v1 is added once.
    for base in ("http://gpu:11434", "http://gpu:11434/", "http://gpu:11434/v1"):
        assert endpoint(ProviderParams(provider="ollama_chat", model="m", api_base=base), env={})[0] == "http://gpu:11434/v1"


def test_an_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ProviderConfigError, match="known"):
        endpoint(ProviderParams(provider="nonesuch", model="m"), env={})


def test_requests_pass_the_body_through_with_the_hosts_model_name() -> None:
    a = OpenAICompatibleAdapter(env={"GROQ_API_KEY": "gsk"})
    p = ProviderParams(provider="groq", model="llama-3.3-70b-versatile")
    r = a.chat_request(p, {**CHAT, "stream": True, "stream_options": {"include_usage": False}}, stream=True)
    assert r.url == "https://api.groq.com/openai/v1/chat/completions"
    assert r.headers == {"content-type": "application/json", "authorization": "Bearer gsk"}
    assert orjson.loads(r.body) == {**CHAT, "model": "llama-3.3-70b-versatile", "stream": True,
                                    "stream_options": {"include_usage": True}}
    plain = orjson.loads(a.chat_request(p, {**CHAT, "stream": False, "stream_options": {}}, stream=False).body)
    assert "stream" not in plain and "stream_options" not in plain
    local = OpenAICompatibleAdapter(env={}).chat_request(ProviderParams(provider="lm_studio", model="q"), CHAT, False)
    assert "authorization" not in local.headers


def sse(*chunks: Any) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)) + b"\n\n" for c in chunks)


STREAM = sse({"id": "c", "model": "llama", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
             {"id": "c", "model": "llama", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
             {"id": "c", "model": "llama", "choices": [],
              "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
             b"[DONE]")


def feed_all(stream: OpenAIStream, data: bytes, piece: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(0, len(data), piece):
        out += stream.feed(data[i:i + piece])
    return out + stream.finish()


def test_the_stream_is_renamed_and_ends_with_one_done() -> None:
    s = OpenAIStream("alias", include_usage=True)
    events = feed_all(s, b": keep-alive\n\n" + STREAM, len(STREAM))
    assert [orjson.loads(e[6:])["model"] for e in events[:-1]] == ["alias"] * 3
    assert events[-1] == b"data: [DONE]\n\n" and events.count(b"data: [DONE]\n\n") == 1
    assert s.usage == core.Usage(prompt_tokens=9, completion_tokens=2)


def test_the_usage_chunk_is_stripped_unless_asked_but_still_counted() -> None:
    s = OpenAIStream("alias", include_usage=False)
    events = feed_all(s, STREAM, 5)
    assert all(orjson.loads(e[6:])["choices"] for e in events[:-1]) and len(events) == 3
    assert s.usage == core.Usage(prompt_tokens=9, completion_tokens=2)


def test_any_byte_split_and_crlf_framing_give_the_same_events() -> None:
    whole = feed_all(OpenAIStream("alias", True), STREAM, len(STREAM))
    for piece in (1, 2, 5, 17):
        assert feed_all(OpenAIStream("alias", True), STREAM, piece) == whole
    assert feed_all(OpenAIStream("alias", True), STREAM.replace(b"\n\n", b"\r\n\r\n"), 3) == whole


def test_replies_are_renamed_and_a_reply_without_usage_is_estimated() -> None:
    a = OpenAICompatibleAdapter(env={})
    p = ProviderParams(provider="hosted_vllm", model="m", api_base="http://x/v1")
    reply = {"id": "x", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 8}}]}
    out, usage = a.chat_reply(p, orjson.dumps({**reply, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}), "alias")
    assert out["model"] == "alias" and usage == core.Usage(prompt_tokens=3, completion_tokens=2)
    _, guessed = a.chat_reply(p, orjson.dumps(reply), "alias")
    assert guessed.estimated and guessed.completion_tokens == 2


@pytest.mark.parametrize("status, expected, type_", [(401, 502, "upstream_error"), (403, 502, "upstream_error"),
                                                     (429, 429, "rate_limit_error"), (400, 400, "invalid_request_error"),
                                                     (404, 502, "upstream_error"), (500, 502, "upstream_error"),
                                                     (503, 503, "upstream_error")])
def test_errors_map_and_a_rejected_key_is_the_deployments(status: int, expected: int, type_: str) -> None:
    body = orjson.dumps({"error": {"message": "upstream says no", "type": "x"}})
    failure = OpenAICompatibleAdapter(env={}).failure(ProviderParams(provider="groq", model="m"), status, body)
    assert (failure.status, failure.type) == (expected, type_) and "upstream says no" in failure.message
    if status in (401, 403):
        assert "credentials" in failure.message


def test_exchanges_with_the_fake_upstream_over_http() -> None:
    with FakeOpenAI() as up:
        a = OpenAICompatibleAdapter(env={})
        p = ProviderParams(provider="hosted_vllm", model="served-model", api_base=up.url, api_key="vllm-key")
        status, _, body = post(a.chat_request(p, CHAT, stream=False))
        assert status == 200
        out, usage = a.chat_reply(p, body, "alias")
        assert out["model"] == "alias" and usage == core.Usage(prompt_tokens=12, completion_tokens=7)
        sent = up.requests[-1]
        assert sent["body"]["model"] == "served-model"
        assert {k.lower(): v for k, v in sent["headers"].items()}["authorization"] == "Bearer vllm-key"
        r = a.chat_request(p, {**CHAT, "stream": True}, stream=True)
        s = a.chat_stream(p, "alias", include_usage=False)
        events: list[bytes] = []
        with urllib.request.urlopen(urllib.request.Request(r.url, data=r.body, headers=dict(r.headers), method="POST"),
                                    timeout=10) as resp:
            while data := resp.read(9):
                events += s.feed(data)
        events += s.finish()
    assert up.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    text = "".join(orjson.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "Hello from the fake upstream."
    assert s.usage == core.Usage(prompt_tokens=12, completion_tokens=7)


@pytest.mark.parametrize("module", ["openai_compatible", "azure", "bedrock", "bedrock_messages", "bedrock_embeddings"])
def test_the_provider_modules_docstring_examples_hold(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"llmbill.proxy.providers.{module}"))
    assert result.attempted > 0 and result.failed == 0
