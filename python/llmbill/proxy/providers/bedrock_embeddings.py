"""OpenAI embeddings ↔ Bedrock's embedding models through InvokeModel (`/model/{id}/invoke`).

Titan Text Embeddings (`amazon.titan-embed-text-*`) embeds one text a call, `{"inputText"}` →
`{"embedding", "inputTextTokenCount"}`: a list input becomes one call per text. Cohere Embed
(`cohere.embed-*`) takes up to 96 `texts` with an `input_type` and returns no token count in its
body: Bedrock sends it in the `X-Amzn-Bedrock-Input-Token-Count` header; without it the count is
estimated (4 characters a token) and marked so.

>>> titan_bodies({"input": ["a", "b"], "dimensions": 256}, "amazon.titan-embed-text-v2:0")
[b'{"inputText":"a","dimensions":256}', b'{"inputText":"b","dimensions":256}']
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..._native import core
from .base import ProviderInputError
from .openai_compatible import ProviderConfigError

_COMMON = {"model", "input", "encoding_format", "user"}
_COHERE_INPUT_TYPES = {"search_document", "search_query", "classification", "clustering"}
_COHERE_MAX_TEXTS = 96  # Bedrock's limit for one Cohere Embed call


def family(model_id: str) -> str:
    """"titan" or "cohere"; any other id has no embeddings translation here."""
    name = model_id.split("/")[-1]
    for prefix in ("", "us.", "eu.", "apac.", "global."):
        if name.startswith(prefix + "amazon.titan-embed-text"):
            return "titan"
        if name.startswith(prefix + "cohere.embed"):
            return "cohere"
    raise ProviderConfigError(f"bedrock/{model_id}: embeddings are supported for amazon.titan-embed-text-* "
                              "and cohere.embed-* models", "model")


def _texts(body: Mapping[str, Any], allowed: set[str]) -> list[str]:
    unsupported = sorted(k for k, v in body.items() if k not in allowed and v is not None)
    if unsupported:
        raise ProviderInputError(f"this Bedrock embedding model does not support {', '.join(unsupported)}",
                                 unsupported[0])
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise ProviderInputError("input must be a non-empty string or list of non-empty strings "
                                 "(Bedrock takes text, not token arrays)", "input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise ProviderInputError("encoding_format must be float or base64", "encoding_format")
    return texts


def titan_bodies(body: Mapping[str, Any], model_id: str) -> list[bytes]:
    """One InvokeModel body per input text."""
    v2 = "titan-embed-text-v2" in model_id
    texts = _texts(body, _COMMON | ({"dimensions"} if v2 else set()))
    extra: dict[str, Any] = {}
    if body.get("dimensions") is not None:
        if body["dimensions"] not in (256, 512, 1024):
            raise ProviderInputError("Titan Text Embeddings V2 takes dimensions 256, 512 or 1024", "dimensions")
        extra["dimensions"] = body["dimensions"]
    return [orjson.dumps({"inputText": t, **extra}) for t in texts]


def titan_reply(replies: Sequence[bytes], body: Mapping[str, Any], model: str) -> tuple[dict[str, Any], core.Usage]:
    """The replies of titan_bodies' calls, in order → an OpenAI embeddings list and its usage."""
    vectors, tokens = [], 0
    for raw in replies:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("embedding"), list):
            raise ValueError("Titan reply has no embedding")
        vectors.append(data["embedding"])
        count = data.get("inputTextTokenCount")
        tokens += count if isinstance(count, int) and count > 0 else 0
    return _openai_list(vectors, body, model, tokens), core.Usage(prompt_tokens=tokens)


def cohere_body(body: Mapping[str, Any]) -> bytes:
    texts = _texts(body, _COMMON | {"input_type"})
    if len(texts) > _COHERE_MAX_TEXTS:
        raise ProviderInputError(f"Cohere Embed on Bedrock takes at most {_COHERE_MAX_TEXTS} texts a call", "input")
    input_type = body.get("input_type") or "search_document"  # LiteLLM's default for Cohere
    if input_type not in _COHERE_INPUT_TYPES:
        raise ProviderInputError(f"input_type must be one of {', '.join(sorted(_COHERE_INPUT_TYPES))}", "input_type")
    return orjson.dumps({"texts": texts, "input_type": input_type})


def cohere_reply(reply: bytes, body: Mapping[str, Any], model: str,
                 headers: Mapping[str, str]) -> tuple[dict[str, Any], core.Usage]:
    data = orjson.loads(reply)
    vectors = data.get("embeddings") if isinstance(data, dict) else None
    if isinstance(vectors, dict):  # the embedding_types form: {"float": [...]}
        vectors = vectors.get("float")
    if not isinstance(vectors, list):
        raise ValueError("Cohere reply has no embeddings")
    header = next((v for k, v in headers.items() if k.lower() == "x-amzn-bedrock-input-token-count"), "")
    if header.isdigit():
        usage = core.Usage(prompt_tokens=int(header))
    else:
        texts = data.get("texts") if isinstance(data.get("texts"), list) else _texts(body, _COMMON | {"input_type"})
        usage = core.Usage(prompt_tokens=sum(math.ceil(len(str(t)) / 4) for t in texts), estimated=True)
    return _openai_list(vectors, body, model, usage.prompt_tokens), usage


def _openai_list(vectors: list[Any], body: Mapping[str, Any], model: str, tokens: int) -> dict[str, Any]:
    as_base64 = body.get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": i, "embedding": _base64(v) if as_base64 else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _base64(vector: list[float]) -> str:
    # OpenAI's base64 encoding: the vector's little-endian float32 bytes.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
