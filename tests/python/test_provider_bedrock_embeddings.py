"""OpenAI embeddings ↔ Bedrock's Titan and Cohere embedding models (providers/bedrock_embeddings.py),
unit by unit and over HTTP against the strict fake Bedrock."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from llmbill._native import core
from llmbill.proxy.providers import bedrock_embeddings as emb
from llmbill.proxy.providers.base import ProviderInputError
from llmbill.proxy.providers.bedrock import BedrockAdapter
from llmbill.proxy.providers.openai_compatible import ProviderConfigError
from tests.python.fakes.bedrock_upstream import FakeBedrock
from tests.python.test_provider_bedrock import params, post

TITAN, TITAN_V1, COHERE = "amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v1", "cohere.embed-english-v3"


def test_titan_takes_one_text_a_call() -> None:
    assert emb.titan_bodies({"model": "e", "input": "hello"}, TITAN) == [b'{"inputText":"hello"}']
    assert [orjson.loads(b) for b in emb.titan_bodies({"input": ["a", "b"], "dimensions": 512}, TITAN)] == [
        {"inputText": "a", "dimensions": 512}, {"inputText": "b", "dimensions": 512}]


@pytest.mark.parametrize("body, model, param", [
    ({"input": "x", "dimensions": 300}, TITAN, "dimensions"),
    ({"input": "x", "dimensions": 256}, TITAN_V1, "dimensions"),
    ({"input": [1, 2, 3]}, TITAN, "input"),
    ({"input": ""}, TITAN, "input"),
    ({"input": "x", "encoding_format": "int8"}, TITAN, "encoding_format")])
def test_titan_refuses_what_it_cannot_do(body: dict[str, Any], model: str, param: str) -> None:
    with pytest.raises(ProviderInputError) as info:
        emb.titan_bodies(body, model)
    assert info.value.param == param


def test_titan_replies_join_into_one_openai_list_with_the_summed_tokens() -> None:
    replies = [orjson.dumps({"embedding": [0.1, 0.2], "inputTextTokenCount": 3}),
               orjson.dumps({"embedding": [0.3, 0.4], "inputTextTokenCount": 4})]
    out, usage = emb.titan_reply(replies, {"input": ["a", "b"]}, "my-embed")
    assert out == {"object": "list", "model": "my-embed", "usage": {"prompt_tokens": 7, "total_tokens": 7},
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}]}
    assert usage == core.Usage(prompt_tokens=7)


def test_base64_encoding_is_openais_little_endian_float32() -> None:
    out, _ = emb.titan_reply([orjson.dumps({"embedding": [0.5, -2.0], "inputTextTokenCount": 1})],
                             {"input": "a", "encoding_format": "base64"}, "m")
    assert struct.unpack("<2f", base64.b64decode(out["data"][0]["embedding"])) == (0.5, -2.0)


def test_cohere_takes_texts_with_an_input_type() -> None:
    assert orjson.loads(emb.cohere_body({"input": ["a", "b"]})) == {"texts": ["a", "b"], "input_type": "search_document"}
    assert orjson.loads(emb.cohere_body({"input": "q", "input_type": "search_query"}))["input_type"] == "search_query"
    with pytest.raises(ProviderInputError, match="96"):
        emb.cohere_body({"input": ["t"] * 97})
    with pytest.raises(ProviderInputError) as info:
        emb.cohere_body({"input": "x", "dimensions": 256})
    assert info.value.param == "dimensions"


def test_cohere_usage_comes_from_bedrocks_token_header_else_is_estimated() -> None:
    reply = orjson.dumps({"embeddings": [[0.1], [0.2]], "id": "x", "response_type": "embeddings_floats",
                          "texts": ["abcdefgh", "abcd"]})
    out, usage = emb.cohere_reply(reply, {"input": ["abcdefgh", "abcd"]}, "m", {"X-Amzn-Bedrock-Input-Token-Count": "5"})
    assert usage == core.Usage(prompt_tokens=5) and out["usage"]["prompt_tokens"] == 5
    _, guessed = emb.cohere_reply(reply, {"input": ["abcdefgh", "abcd"]}, "m", {})
    assert guessed.estimated and guessed.prompt_tokens == 3


def test_other_models_have_no_embeddings_translation() -> None:
    with pytest.raises(ProviderConfigError):
        emb.family("anthropic.claude-3-haiku-20240307-v1:0")
    assert emb.family("us.cohere.embed-multilingual-v3") == "cohere"


@pytest.mark.parametrize("model, inputs, vectors", [(TITAN, ["first text", "second"], 2), (COHERE, ["a", "bb", "ccc"], 3)])
def test_embeddings_over_http_with_the_fake(model: str, inputs: list[str], vectors: int) -> None:
    with FakeBedrock() as bedrock:
        a = BedrockAdapter()
        p = params(model, api_base=bedrock.url)
        body = {"model": "embed", "input": inputs}
        replies, headers = [], {}
        for request in a.embedding_requests(p, body):
            assert request.url.endswith("/invoke")
            status, headers, reply = post(request)
            assert status == 200, reply
            replies.append(reply)
        out, usage = a.embedding_reply(p, replies, body, "embed", headers)
    assert len(out["data"]) == vectors and not usage.estimated
    assert usage.prompt_tokens == sum(max(1, -(-len(t) // 5)) for t in inputs)  # the fake's count
