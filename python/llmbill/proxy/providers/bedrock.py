"""AWS Bedrock through the Converse API: `bedrock/<model-id>` and `bedrock/converse/<model-id>`.

A call is `POST https://bedrock-runtime.{region}.amazonaws.com/model/{model id}/converse` (streamed:
`/converse-stream`), signed with AWS Signature V4 for the service `bedrock` by botocore — an optional
dependency (`pip install 'llmbill[bedrock]'`). Credentials and region come from the deployment's
`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`, `aws_region_name`, else the standard
AWS variables. `api_base` (or LiteLLM's `aws_bedrock_runtime_endpoint`) replaces the host. Signing
reads a clock the adapter is given, so a test pins the signature.

>>> import datetime
>>> a = BedrockAdapter(clock=lambda: datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc), env={})
>>> p = ProviderParams(provider="bedrock", model="converse/anthropic.claude-3-haiku-20240307-v1:0",
...                    extra={"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s",
...                           "aws_region_name": "us-east-1"})
>>> r = a.chat_request(p, {"messages": [{"role": "user", "content": "Hi"}]}, stream=False)
>>> r.url
'https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse'
>>> r.headers["X-Amz-Date"], r.headers["Authorization"].split(",")[0]
('20240501T000000Z', 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/bedrock/aws4_request')
"""

from __future__ import annotations

import datetime
import math
import os
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson

from ..._native import core
from .base import ChatAdapter, ProviderFailure, ProviderParams, UpstreamRequest
from . import bedrock_embeddings as embeddings
from .bedrock_messages import converse_body
from .bedrock_stream import BedrockChatStream, bedrock_failure, finish_reason, usage_of
from .openai_compatible import ProviderConfigError

Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def model_id(params: ProviderParams) -> str:
    """The Bedrock model id (or inference-profile id or ARN) of a deployment: also its price-table name."""
    model = params.model
    if model.startswith("converse/"):
        model = model[len("converse/"):]
    elif model.startswith("invoke/"):
        raise ProviderConfigError(f"bedrock/{model}: only the Converse API is supported: use bedrock/converse/…",
                                  "model")
    if not model:
        raise ProviderConfigError("bedrock/: the model id is missing", "model")
    return model


def region(params: ProviderParams, env: Mapping[str, str]) -> str:
    name = params.extra_str("aws_region_name") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not name:
        raise ProviderConfigError(f"bedrock/{params.model}: aws_region_name is required (or set AWS_REGION)",
                                  "aws_region_name")
    return name


def endpoint(params: ProviderParams, env: Mapping[str, str]) -> str:
    """Scheme and host of the runtime endpoint. A default port is dropped so that every HTTP client
    sends the same Host header that was signed."""
    base = params.api_base or params.extra_str("aws_bedrock_runtime_endpoint")
    if not base:
        return f"https://bedrock-runtime.{region(params, env)}.amazonaws.com"
    parts = urlsplit(base.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderConfigError(f"bedrock/{params.model}: api_base {base!r} is not an http(s) URL", "api_base")
    netloc = parts.netloc
    if (parts.scheme, parts.port) in (("https", 443), ("http", 80)):
        netloc = netloc.rsplit(":", 1)[0]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def credentials(params: ProviderParams, env: Mapping[str, str]) -> tuple[str, str, str | None]:
    """(access key id, secret access key, session token or None): the deployment's, else AWS_* variables."""
    key, secret = params.extra_str("aws_access_key_id"), params.extra_str("aws_secret_access_key")
    token = params.extra_str("aws_session_token")
    if not key and not secret:
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        token = token or env.get("AWS_SESSION_TOKEN") or None
    if not key:
        raise ProviderConfigError(f"bedrock/{params.model}: aws_access_key_id is required (or set AWS_ACCESS_KEY_ID)",
                                  "aws_access_key_id")
    if not secret:
        raise ProviderConfigError(f"bedrock/{params.model}: aws_secret_access_key is required "
                                  "(or set AWS_SECRET_ACCESS_KEY)", "aws_secret_access_key")
    return key, secret, token


def _botocore() -> tuple[Any, Any, Any]:
    try:
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from botocore.credentials import Credentials  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ProviderConfigError("bedrock/ deployments need botocore: pip install 'llmbill[bedrock]'",
                                  "model") from None
    return SigV4Auth, AWSRequest, Credentials


def sign(url: str, body: bytes, headers: Mapping[str, str], creds: tuple[str, str, str | None], region_name: str,
         now: datetime.datetime) -> dict[str, str]:
    """`headers` plus X-Amz-Date, X-Amz-Security-Token and the SigV4 Authorization for a POST of `body`.

    botocore's SigV4Auth.add_auth reads the wall clock itself; these are the same steps with the time
    given, built from its public methods, so a signature is a pure function of its inputs."""
    sigv4, aws_request, credentials_type = _botocore()
    signer = sigv4(credentials_type(*creds), "bedrock", region_name)
    request = aws_request(method="POST", url=url, data=body, headers=dict(headers))
    stamp = now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    request.headers["X-Amz-Date"] = stamp
    if creds[2]:
        request.headers["X-Amz-Security-Token"] = creds[2]
    signed = signer.signed_headers(signer.headers_to_sign(request))
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
                                        f"SignedHeaders={signed}, Signature={signature}")
    return {name: str(value) for name, value in request.headers.items()}


class BedrockAdapter:
    """ChatAdapter for bedrock/ deployments (Converse and ConverseStream)."""

    def __init__(self, clock: Clock = _utc_now, env: Mapping[str, str] | None = None,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._clock = clock
        self._env = env
        self._new_id = new_id

    def signed_request(self, params: ProviderParams, path: str, body: bytes, accept: str) -> UpstreamRequest:
        """A signed POST of `body` to `path` under /model/{id}/ (converse, converse-stream, invoke)."""
        env = os.environ if self._env is None else self._env
        url = f"{endpoint(params, env)}/model/{quote(model_id(params), safe='')}/{path}"
        headers = {"Content-Type": "application/json", "Accept": accept}
        creds = credentials(params, env)
        return UpstreamRequest(url, sign(url, body, headers, creds, region(params, env), self._clock()), body)

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        payload = orjson.dumps(converse_body(body))
        if stream:
            return self.signed_request(params, "converse-stream", payload, "application/vnd.amazon.eventstream")
        return self.signed_request(params, "converse", payload, "application/json")

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        data = orjson.loads(body)
        if not isinstance(data, dict):
            raise ValueError("Bedrock reply is not a JSON object")
        blocks = ((data.get("output") or {}).get("message") or {}).get("content") or []
        text, reasoning, calls = "", "", []
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                text += block["text"]
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                calls.append({"id": use.get("toolUseId", ""), "type": "function",
                              "function": {"name": use.get("name", ""),
                                           "arguments": orjson.dumps(use.get("input", {})).decode()}})
            elif isinstance(block.get("reasoningContent"), dict):
                reasoning += str((block["reasoningContent"].get("reasoningText") or {}).get("text") or "")
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        if reasoning:
            message["reasoning_content"] = reasoning  # LiteLLM's field for a model's visible reasoning
        openai_usage, usage = usage_of(data.get("usage"))
        if "usage" not in data:  # never bill a reply without usage as free: estimate it and say so
            usage = core.Usage(completion_tokens=math.ceil(len(text) / 4), estimated=True)
        reply = {"id": f"chatcmpl-{self._new_id()}", "object": "chat.completion",
                 "created": int(self._clock().timestamp()), "model": model,
                 "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(data.get("stopReason")),
                              "logprobs": None}],
                 "usage": openai_usage}
        return reply, usage

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> BedrockChatStream:
        return BedrockChatStream(model, include_usage, f"chatcmpl-{self._new_id()}", int(self._clock().timestamp()))

    def embedding_requests(self, params: ProviderParams, body: Mapping[str, Any]) -> list[UpstreamRequest]:
        """Signed InvokeModel calls for an OpenAI embeddings body: one per text for Titan, one for Cohere."""
        mid = model_id(params)
        if embeddings.family(mid) == "titan":
            payloads = embeddings.titan_bodies(body, mid)
        else:
            payloads = [embeddings.cohere_body(body)]
        return [self.signed_request(params, "invoke", p, "application/json") for p in payloads]

    def embedding_reply(self, params: ProviderParams, replies: list[bytes], body: Mapping[str, Any], model: str,
                        headers: Mapping[str, str] | None = None) -> tuple[dict[str, Any], core.Usage]:
        """The replies of embedding_requests' calls, in order (with the Cohere call's headers, which
        carry its token count) → an OpenAI embeddings list naming `model`, and its usage."""
        if embeddings.family(model_id(params)) == "titan":
            return embeddings.titan_reply(replies, body, model)
        return embeddings.cohere_reply(replies[0], body, model, headers or {})

    def failure(self, params: ProviderParams, status: int, body: bytes,
                headers: Mapping[str, str] | None = None) -> ProviderFailure:
        """Bedrock names its error in the `x-amzn-ErrorType` header (pass `headers` when you have them),
        some bodies in `__type`; without either the status decides."""
        name, message = "", ""
        for key, value in (headers or {}).items():
            if key.lower() == "x-amzn-errortype":
                name = value
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            name = name or str(data.get("__type") or data.get("code") or "")
            message = str(data.get("message") or data.get("Message") or "")
        elif body:
            message = body.decode("utf-8", "replace")[:500]
        name = name.split(":", 1)[0].rsplit("#", 1)[-1]  # "ThrottlingException:http://…", "ns#Name"
        failure = bedrock_failure(name, status, message)
        return ProviderFailure(failure.status, failure.type, f"bedrock/{params.model}: {failure.message}")


if TYPE_CHECKING:  # mypy proves the adapter meets the contract
    _conforms: ChatAdapter = BedrockAdapter()
