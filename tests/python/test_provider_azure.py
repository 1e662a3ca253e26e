"""The Azure OpenAI adapter (providers/azure.py): deployment URLs with api-version, api-key or Entra ID
auth, configuration errors naming the key, the price-table name, error mapping, and exchanges with
the strict fake Azure over real HTTP."""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson
import pytest

from llmbill._native import core
from llmbill.proxy.providers.azure import AzureAdapter, price_name, reply_model
from llmbill.proxy.providers.base import ProviderParams, UpstreamRequest
from llmbill.proxy.providers.openai_compatible import ProviderConfigError
from tests.python.fakes.azure_upstream import AD_TOKEN, API_KEY, FakeAzure
from tests.python.test_provider_bedrock import post

CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


def params(deployment: str = "prod-4o", api_base: str = "https://res.openai.azure.com", api_key: str = API_KEY,
           **extra: Any) -> ProviderParams:
    return ProviderParams(provider="azure", model=deployment, api_base=api_base, api_key=api_key,
                          extra={"api_version": "2024-10-21", **extra})


def test_chat_and_embeddings_go_to_the_deployment_with_the_api_version() -> None:
    a = AzureAdapter(env={})
    chat = a.chat_request(params(api_base="https://res.openai.azure.com/"), CHAT, stream=False)
    assert chat.url == "https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    assert chat.headers == {"content-type": "application/json", "api-key": API_KEY}
    assert orjson.loads(chat.body) == CHAT
    embed = a.embedding_request(params("embed"), {"input": "x", "model": "e"})
    assert embed.url == "https://res.openai.azure.com/openai/deployments/embed/embeddings?api-version=2024-10-21"


def test_a_stream_always_asks_for_usage() -> None:
    r = AzureAdapter(env={}).chat_request(params(), {**CHAT, "stream": True}, stream=True)
    assert orjson.loads(r.body)["stream_options"] == {"include_usage": True}


def test_an_entra_id_token_is_sent_as_a_bearer_when_there_is_no_key() -> None:
    r = AzureAdapter(env={}).chat_request(params(api_key="", azure_ad_token="tok"), CHAT, False)
    assert r.headers["authorization"] == "Bearer tok" and "api-key" not in r.headers


def test_the_azure_variables_fill_what_the_deployment_leaves_out() -> None:
    env = {"AZURE_API_VERSION": "2024-06-01", "AZURE_API_BASE": "https://env.openai.azure.com", "AZURE_API_KEY": "ek"}
    r = AzureAdapter(env=env).chat_request(ProviderParams(provider="azure", model="d"), CHAT, False)
    assert r.url == "https://env.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01"
    assert r.headers["api-key"] == "ek"


@pytest.mark.parametrize("p, key", [
    (ProviderParams(provider="azure", model="d", api_base="https://x", api_key="k"), "api_version"),
    (ProviderParams(provider="azure", model="d", api_key="k", extra={"api_version": "v"}), "api_base"),
    (ProviderParams(provider="azure", model="d", api_base="https://x", extra={"api_version": "v"}), "api_key")])
def test_missing_configuration_names_the_key(p: ProviderParams, key: str) -> None:
    with pytest.raises(ProviderConfigError, match=key) as info:
        AzureAdapter(env={}).chat_request(p, CHAT, False)
    assert info.value.key == key


def test_prices_go_by_base_model_else_by_the_model_the_reply_names() -> None:
    assert price_name(params(), "gpt-4o-2024-08-06") == "azure/gpt-4o-2024-08-06"
    assert price_name(params(base_model="azure/gpt-4o"), "gpt-4o-2024-08-06") == "azure/gpt-4o"
    assert price_name(params(), "") == "azure/prod-4o"
    assert reply_model(b'{"model": "gpt-4o-mini-2024-07-18", "choices": []}') == "gpt-4o-mini-2024-07-18"
    assert reply_model(b"not json") == ""


@pytest.mark.parametrize("status, body, expected, says", [
    (401, {"error": {"code": "401", "message": "Access denied"}}, 502, "credentials"),
    (403, {"error": {"code": "403", "message": "Forbidden"}}, 502, "credentials"),
    (429, {"error": {"code": "429", "message": "Rate limit is exceeded."}}, 429, "Rate limit"),
    (400, {"error": {"code": "content_filter", "message": "The response was filtered", "param": "prompt"}}, 400, "filtered"),
    (404, {"error": {"code": "DeploymentNotFound", "message": "no deployment"}}, 502, "no such deployment"),
    (500, {"error": {"code": "500", "message": "oops"}}, 502, "oops"),
    (503, {"error": {"code": "503", "message": "busy"}}, 503, "busy")])
def test_azure_errors_map_and_a_rejected_key_is_never_a_401(status: int, body: dict[str, Any], expected: int,
                                                            says: str) -> None:
    failure = AzureAdapter(env={}).failure(params(), status, orjson.dumps(body))
    assert failure.status == expected and says in failure.message


# --- over HTTP, against the strict fake -----------------------------------------------------------
def test_a_chat_exchange_with_the_fake_is_renamed_and_priced_by_the_base_model() -> None:
    with FakeAzure() as azure:
        azure.usage = {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24,
                       "prompt_tokens_details": {"cached_tokens": 8}}
        a = AzureAdapter(env={})
        status, _, body = post(a.chat_request(params(api_base=azure.url), CHAT, False))
        assert status == 200, body
        out, usage = a.chat_reply(params(), body, "gpt-4o-for-clients")
        sent = azure.requests[-1]
    assert price_name(params(), reply_model(body)) == "azure/gpt-4o-2024-08-06"
    assert out["model"] == "gpt-4o-for-clients"
    assert usage == core.Usage(prompt_tokens=20, completion_tokens=4, cached_tokens=8)
    assert {k.lower(): v for k, v in sent["headers"].items()}["api-key"] == API_KEY


def test_a_stream_from_the_fake_is_renamed_and_strips_usage_unless_asked() -> None:
    with FakeAzure() as azure:
        a = AzureAdapter(env={})
        r = a.chat_request(params(api_base=azure.url), {**CHAT, "stream": True}, stream=True)
        for include_usage in (False, True):
            s = a.chat_stream(params(), "client-name", include_usage)
            events: list[bytes] = []
            with urllib.request.urlopen(urllib.request.Request(r.url, data=r.body, headers=dict(r.headers),
                                                               method="POST"), timeout=10) as resp:
                while data := resp.read(11):
                    events += s.feed(data)
            events += s.finish()
            chunks = [orjson.loads(e[6:]) for e in events[:-1]]
            assert events[-1] == b"data: [DONE]\n\n"
            assert {c["model"] for c in chunks} == {"client-name"}
            assert any("usage" in c for c in chunks) is include_usage
            assert s.usage == core.Usage(prompt_tokens=12, completion_tokens=7)


def test_the_fake_answers_as_azure_does_and_the_adapter_maps_it() -> None:
    with FakeAzure() as azure:
        a = AzureAdapter(env={})
        good = a.chat_request(params(api_base=azure.url), CHAT, False)
        no_version = UpstreamRequest(good.url.split("?")[0], good.headers, good.body)
        assert post(no_version)[0] == 404
        assert post(a.chat_request(params(api_base=azure.url, api_version="2023-01-01"), CHAT, False))[0] == 400
        status, _, body = post(a.chat_request(params(api_base=azure.url, api_key="wrong"), CHAT, False))
        assert status == 401 and a.failure(params(), status, body).status == 502
        token = params(api_base=azure.url, api_key="", azure_ad_token=AD_TOKEN)
        assert post(a.chat_request(token, CHAT, False))[0] == 200
        status, _, body = post(a.chat_request(params("nope", api_base=azure.url), CHAT, False))
        assert status == 404 and b"DeploymentNotFound" in body
        azure.filter_next()
        status, _, body = post(good)
        assert status == 400 and a.failure(params(), status, body).status == 400
        status, _, body = post(a.embedding_request(params("embed", api_base=azure.url), {"input": ["a", "b"]}))
        out, usage = a.embedding_reply(params("embed"), body, "embedder")
    assert status == 200 and len(out["data"]) == 2 and usage.prompt_tokens == 12
    assert reply_model(body) == "text-embedding-3-small"
