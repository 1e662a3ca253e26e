"""The `vertex_ai/` adapter (Gemini and Claude on Vertex AI) and its token provider: URLs, bodies,
failures, token caching and refresh, and end-to-end exchanges over real HTTP with the strict fake
(tests/python/fakes/vertex_upstream.py), whose /token endpoint checks google-auth's RS256 JWT grant."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import llmbill

from llmbill._native import core
from llmbill.proxy.providers.base import ChatStream, ProviderFailure, ProviderParams, UpstreamRequest
from llmbill.proxy.providers.gemini import GeminiAdapter
from llmbill.proxy.providers.google_auth import (AccessToken, GoogleAuthError, TokenProvider,
                                                 load_service_account_info, provider_for, service_account_refresher)
from llmbill.proxy.providers.vertex import VertexAdapter, vertex_target
from tests.python.fakes.google_oauth import FakeServiceAccount
from tests.python.fakes.vertex_upstream import FakeVertex

HI = [{"role": "user", "content": "Hi"}]
GEMINI_REPLY = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1, "thoughtsTokenCount": 2},
                "responseId": "r-7"}


class StubAnthropic:
    """The minimal interface vertex.py uses from providers/anthropic.py: a ChatAdapter for Messages."""

    def __init__(self) -> None:
        self.beta: str | None = None

    def chat_request(self, params: ProviderParams, body: Mapping[str, Any], stream: bool) -> UpstreamRequest:
        payload: dict[str, Any] = {"model": params.model, "max_tokens": body.get("max_tokens") or 1024,
                                   "messages": [m for m in body["messages"] if m["role"] != "system"]}
        if stream:
            payload["stream"] = True
        headers = {"content-type": "application/json", "x-api-key": params.api_key, "anthropic-version": "2023-06-01"}
        if self.beta:
            headers["anthropic-beta"] = self.beta
        return UpstreamRequest("https://api.anthropic.com/v1/messages", headers, json.dumps(payload).encode())

    def chat_reply(self, params: ProviderParams, body: bytes, model: str) -> tuple[dict[str, Any], core.Usage]:
        data = json.loads(body)
        return {"model": model, "text": data["content"][0]["text"]}, core.Usage.from_response(body)

    def chat_stream(self, params: ProviderParams, model: str, include_usage: bool) -> ChatStream:
        return _StubStream()

    def failure(self, params: ProviderParams, status: int, body: bytes) -> ProviderFailure:
        return ProviderFailure(503 if status == 529 else status, "from-anthropic-adapter", body.decode())


class _StubStream:
    def __init__(self) -> None:
        self.raw = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.raw += data
        return []

    def finish(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    @property
    def usage(self) -> core.Usage | None:
        return core.Usage.from_sse(self.raw) if self.raw else None


def params(model: str = "gemini-2.5-pro", **extra: Any) -> ProviderParams:
    return ProviderParams("vertex_ai", model, extra={"vertex_project": "acme", **extra})


@pytest.fixture(autouse=True)
def no_google_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VERTEXAI_PROJECT", "VERTEXAI_LOCATION", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)


# --- URLs, projects, bodies ----------------------------------------------------------------------
def test_gemini_urls_regional_global_and_api_base() -> None:
    v = VertexAdapter()
    assert v.chat_request(params(), {"messages": HI}, stream=True).url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/acme/locations/us-central1/publishers/google/"
        "models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    assert v.chat_request(params(vertex_location="global"), {"messages": HI}, stream=False).url == (
        "https://aiplatform.googleapis.com/v1/projects/acme/locations/global/publishers/google/models/"
        "gemini-2.5-pro:generateContent")
    based = ProviderParams("vertex_ai", "gemini-2.5-flash", api_base="http://h:9/",
                           extra={"vertex_project": "p", "vertex_location": "europe-west4"})
    req = v.chat_request(based, {"messages": HI}, stream=False)
    assert req.url == ("http://h:9/v1/projects/p/locations/europe-west4/publishers/google/models/"
                       "gemini-2.5-flash:generateContent")
    assert req.headers == {"content-type": "application/json"}  # the bearer comes from authorize()


def test_project_and_location_from_the_environment_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    bare = ProviderParams("vertex_ai", "gemini-2.5-pro")
    with pytest.raises(GoogleAuthError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        vertex_target(bare)
    key = json.dumps({"type": "service_account", "project_id": "from-key"})
    assert vertex_target(ProviderParams("vertex_ai", "m", extra={"vertex_credentials": key})).project == "from-key"
    with pytest.raises(GoogleAuthError, match="vertex_project"):
        vertex_target(ProviderParams("vertex_ai", "m", extra={"vertex_credentials": {"type": "service_account"}}))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-gcloud")
    monkeypatch.setenv("VERTEXAI_LOCATION", "asia-east1")
    assert vertex_target(bare) == vertex_target(ProviderParams("vertex_ai", "x", extra={}))
    assert (vertex_target(bare).project, vertex_target(bare).location) == ("from-gcloud", "asia-east1")
    monkeypatch.setenv("VERTEXAI_PROJECT", "from-litellm-var")
    assert vertex_target(bare).project == "from-litellm-var"


def test_gemini_body_is_the_gemini_translation_and_accepts_gcs_uris() -> None:
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "gs://b/cat.png"}}]}
    body = json.loads(VertexAdapter().chat_request(params(), {"messages": [image], "max_tokens": 5}, False).body)
    assert body == {"contents": [{"role": "user", "parts": [{"fileData": {"mimeType": "image/png",
                                                                          "fileUri": "gs://b/cat.png"}}]}],
                    "generationConfig": {"maxOutputTokens": 5}}


def test_claude_request_wraps_the_messages_body_for_raw_predict() -> None:
    stub = StubAnthropic()
    stub.beta = "context-1m-2025-08-07"
    v = VertexAdapter(claude=stub)
    p = params("claude-sonnet-4-5@20250929", vertex_location="us-east5")
    req = v.chat_request(p, {"messages": HI, "max_tokens": 64}, stream=False)
    assert req.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/acme/locations/us-east5/publishers/"
                       "anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    assert json.loads(req.body) == {"max_tokens": 64, "messages": HI, "anthropic_version": "vertex-2023-10-16"}
    assert req.headers == {"content-type": "application/json", "anthropic-beta": "context-1m-2025-08-07"}
    streamed = v.chat_request(p, {"messages": HI}, stream=True)
    assert streamed.url.endswith(":streamRawPredict") and json.loads(streamed.body)["stream"] is True


def test_replies_streams_and_failures_go_to_the_right_translator() -> None:
    stub = StubAnthropic()
    v = VertexAdapter(claude=stub, clock=lambda: 5.0, new_id=lambda: "call_x")
    raw = json.dumps(GEMINI_REPLY).encode()
    assert v.chat_reply(params(), raw, "m") == GeminiAdapter(clock=lambda: 5.0).chat_reply(params(), raw, "m")
    assert v.chat_reply(params(), raw, "m")[1] == core.Usage(prompt_tokens=7, completion_tokens=3, reasoning_tokens=2)
    claude = params("claude-haiku-4-5")
    message = {"content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 3, "output_tokens": 2}}
    assert v.chat_reply(claude, json.dumps(message).encode(), "m")[0] == {"model": "m", "text": "hi"}
    assert isinstance(v.chat_stream(claude, "m", True), _StubStream)
    assert not isinstance(v.chat_stream(params(), "m", True), _StubStream)
    google_401 = json.dumps({"error": {"code": 401, "message": "bad token", "status": "UNAUTHENTICATED"}}).encode()
    for p in (params(), claude):
        f = v.failure(p, 401, google_401)
        assert (f.status, f.type) == (502, "upstream_error")
        assert "Vertex AI service-account credentials" in f.message
    quota = json.dumps({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}).encode()
    assert v.failure(claude, 429, quota).status == 429
    overloaded = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}).encode()
    assert (v.failure(claude, 529, overloaded).status, v.failure(claude, 529, overloaded).type) == \
        (503, "from-anthropic-adapter")


def test_vertex_gemini_prices_by_the_bare_table_key_with_its_200k_tier() -> None:
    usage = VertexAdapter().chat_reply(params(), json.dumps({"candidates": [], "usageMetadata": {
        "promptTokenCount": 210_000, "candidatesTokenCount": 100, "thoughtsTokenCount": 50}}).encode(), "m")[1]
    cost = llmbill.cost("vertex_ai/gemini-2.5-pro", usage)
    assert cost.tier_above_tokens == 200_000
    assert cost.total == Decimal("210000") * Decimal("0.0000025") + Decimal("150") * Decimal("0.000015")


# --- credentials and tokens ----------------------------------------------------------------------
def test_service_account_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = {"type": "service_account", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com"}
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    assert load_service_account_info(json.dumps(info)) == info
    assert load_service_account_info(str(path)) == info
    assert load_service_account_info(info) == info
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    assert load_service_account_info(None) == info
    for bad, words in [(str(tmp_path / "missing.json"), "cannot read"), ("{not json", "not valid JSON"),
                       (json.dumps({"type": "authorized_user"}), "'authorized_user'")]:
        with pytest.raises(GoogleAuthError, match=words):
            load_service_account_info(bad)


def test_missing_google_auth_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.oauth2.service_account", None)  # import now raises ImportError
    with pytest.raises(GoogleAuthError) as caught:
        service_account_refresher({"type": "service_account"})
    assert str(caught.value) == "vertex_ai deployments need google-auth: pip install 'llmbill[vertex]'"


def test_token_is_cached_and_refreshed_before_expiry_in_a_worker_thread() -> None:
    now = [1000.0]
    threads: list[int] = []

    def refresh() -> AccessToken:
        threads.append(threading.get_ident())
        return AccessToken(f"t{len(threads)}", expires_at=now[0] + 3600)

    provider = TokenProvider(refresh, clock=lambda: now[0], margin=300)

    async def run() -> list[str]:
        got = [await provider.token(), await provider.token()]
        now[0] += 3600 - 301  # still 301 s left: the cached token serves
        got.append(await provider.token())
        now[0] += 2  # within the margin: refreshed ahead of expiry
        got.append(await provider.token())
        return got

    assert asyncio.run(run()) == ["t1", "t1", "t1", "t2"]
    assert threading.get_ident() not in threads  # refresh is blocking I/O: never on the event loop


def test_concurrent_callers_share_one_refresh_and_see_its_error() -> None:
    calls = []

    def refresh() -> AccessToken:
        calls.append(1)
        return AccessToken("shared", expires_at=10_000.0)

    provider = TokenProvider(refresh, clock=lambda: 0.0)

    async def many() -> list[str]:
        return list(await asyncio.gather(*(provider.token() for _ in range(20))))

    assert asyncio.run(many()) == ["shared"] * 20 and len(calls) == 1

    def failing() -> AccessToken:
        raise GoogleAuthError("vertex_ai: the token exchange failed: invalid_grant")

    with pytest.raises(GoogleAuthError, match="invalid_grant"):
        asyncio.run(TokenProvider(failing).token())


def test_authorize_adds_the_bearer_token() -> None:
    provider = TokenProvider(lambda: AccessToken("ya29.x", expires_at=1e12))
    v = VertexAdapter(tokens=lambda p: provider)
    req = v.chat_request(params(), {"messages": HI}, stream=False)
    authorized = asyncio.run(v.authorize(params(), req))
    assert authorized.headers == {"content-type": "application/json", "authorization": "Bearer ya29.x"}
    assert (authorized.url, authorized.body) == (req.url, req.body)


# --- end to end: google-auth, the fake token endpoint and the fake Vertex ------------------------
@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def vertex(rsa_key: rsa.RSAPrivateKey) -> Iterator[FakeVertex]:
    with FakeVertex(project="acme", location="us-east5") as up:
        up.trust(FakeServiceAccount.generate(up.token_uri, project_id="acme", key=rsa_key))
        yield up


def on(up: FakeVertex, model: str = "gemini-2.5-pro") -> ProviderParams:
    assert up.account is not None
    return ProviderParams("vertex_ai", model, api_base=up.url,
                          extra={"vertex_location": "us-east5", "vertex_credentials": json.dumps(up.account.info)})


def send(req: UpstreamRequest) -> tuple[int, bytes]:
    request = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_e2e_gemini_on_vertex_with_a_real_token_exchange(vertex: FakeVertex) -> None:
    vertex.thoughts = 9
    p = on(vertex)  # the project comes from the key's project_id
    v = VertexAdapter(clock=lambda: 1.0)
    assert provider_for(p.extra["vertex_credentials"]) is provider_for(p.extra["vertex_credentials"])

    async def calls() -> tuple[UpstreamRequest, UpstreamRequest]:
        unary = await v.authorize(p, v.chat_request(p, {"messages": HI, "max_tokens": 20}, stream=False))
        streamed = await v.authorize(p, v.chat_request(p, {"messages": HI}, stream=True))
        return unary, streamed

    unary, streamed = asyncio.run(calls())
    assert vertex.oauth is not None and vertex.oauth.exchanges == 1 and vertex.oauth.refusals == []
    status, raw = send(unary)
    assert status == 200, raw
    out, usage = v.chat_reply(p, raw, "my-model")
    assert out["choices"][0]["message"]["content"] == vertex.reply_text
    assert usage == core.Usage(prompt_tokens=12, completion_tokens=16, reasoning_tokens=9)
    s = v.chat_stream(p, "my-model", include_usage=False)
    status, raw = send(streamed)
    assert status == 200
    for i in range(0, len(raw), 5):
        s.feed(raw[i:i + 5])
    assert s.finish()[-1] == b"data: [DONE]\n\n" and s.usage == usage


def test_e2e_token_refresh_and_refusals(vertex: FakeVertex, rsa_key: rsa.RSAPrivateKey) -> None:
    p = on(vertex)
    now = [0.0]
    info = load_service_account_info(p.extra["vertex_credentials"])
    provider = TokenProvider(service_account_refresher(info), clock=lambda: now[0])
    v = VertexAdapter(tokens=lambda _: provider)
    req = v.chat_request(p, {"messages": HI}, stream=False)
    assert vertex.oauth is not None
    first = asyncio.run(v.authorize(p, req))
    now[0] = time.time() + vertex.oauth.lifetime - 10  # the token is 10 s from expiry: a new exchange
    second = asyncio.run(v.authorize(p, req))
    assert vertex.oauth.exchanges == 2 and first.headers != second.headers
    assert send(first)[0] == send(second)[0] == 200
    status, raw = send(req)  # no bearer at all
    f = v.failure(p, status, raw)
    assert (status, f.status) == (401, 502) and "Vertex AI service-account credentials" in f.message
    wrong_project = ProviderParams("vertex_ai", "gemini-2.5-pro", api_base=vertex.url,
                                   extra={**p.extra, "vertex_project": "someone-else"})
    status, raw = send(asyncio.run(v.authorize(wrong_project, v.chat_request(wrong_project, {"messages": HI}, False))))
    assert (status, v.failure(wrong_project, status, raw).status) == (403, 502)
    stranger = FakeServiceAccount.generate(vertex.token_uri, key=rsa.generate_private_key(65537, 2048))
    with pytest.raises(GoogleAuthError, match="token exchange failed"):
        asyncio.run(TokenProvider(service_account_refresher(stranger.info)).token())
    assert vertex.oauth.refusals == ["Invalid JWT Signature."]


def test_e2e_claude_on_vertex(vertex: FakeVertex) -> None:
    stub = StubAnthropic()
    p = on(vertex, "claude-sonnet-4-5@20250929")
    v = VertexAdapter(claude=stub)
    unary = asyncio.run(v.authorize(p, v.chat_request(p, {"messages": HI, "max_tokens": 32}, stream=False)))
    status, raw = send(unary)
    assert status == 200, raw
    out, usage = v.chat_reply(p, raw, "m")
    assert out["text"] == vertex.claude_text and usage == core.Usage(prompt_tokens=11, completion_tokens=6)
    streamed = asyncio.run(v.authorize(p, v.chat_request(p, {"messages": HI}, stream=True)))
    status, raw = send(streamed)
    s = v.chat_stream(p, "m", include_usage=True)
    s.feed(raw)
    assert status == 200 and s.usage == usage
    # The Messages body as Anthropic's own API takes it (with `model`, no anthropic_version) is refused.
    native = stub.chat_request(p, {"messages": HI}, stream=False)
    status, raw = send(UpstreamRequest(unary.url, unary.headers, native.body))
    assert status == 400 and v.failure(p, status, raw).type == "from-anthropic-adapter"
