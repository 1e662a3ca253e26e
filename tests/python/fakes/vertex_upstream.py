"""A strict fake of Vertex AI (Gemini and Claude publishers) with its own OAuth2 token endpoint.

    account = FakeServiceAccount.generate(token_uri)     # see google_oauth.py
    with FakeVertex(account, project="acme", location="us-east5") as up:
        up.url                                           # the api_base; up.token_uri is POST /token
        up.oauth.exchanges                               # token grants served

Routes, all on one server:
- `POST /token`: the service account's JWT grant (google_oauth.FakeGoogleOAuth);
- `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
  (and `:streamGenerateContent?alt=sse`): the Gemini body checks of gemini_checks.py (`gs://` file
  URIs allowed), the same replies as FakeGemini;
- `POST .../publishers/anthropic/models/{model}:rawPredict` (and `:streamRawPredict`): Claude's
  Messages body as Vertex wants it — `anthropic_version: vertex-2023-10-16`, no `model`, `messages`
  and `max_tokens`, `stream: true` exactly on the stream verb; answers Anthropic's message (or its
  SSE events) with `claude_usage`.
Every model route wants `Authorization: Bearer <a token /token issued and not expired>`, else
Google's 401 UNAUTHENTICATED; a wrong project or location gets 403 PERMISSION_DENIED.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .gemini_upstream import FakeGemini, Json, Reply, google_error
from .google_oauth import FakeGoogleOAuth, FakeServiceAccount

VERTEX_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/"
                         r"(?P<publisher>google|anthropic)/models/(?P<model>[A-Za-z0-9._@-]+):(?P<method>\w+)$")
ANTHROPIC_VERSION = "vertex-2023-10-16"


class FakeVertex(FakeGemini):
    def __init__(self, account: FakeServiceAccount | None = None, project: str = "fake-project",
                 location: str = "us-central1", port: int = 0) -> None:
        super().__init__(port=port)
        self.project, self.location = project, location
        self.account = account
        self.oauth: FakeGoogleOAuth | None = FakeGoogleOAuth(account) if account is not None else None
        self.claude_text = "Hello from the fake Claude on Vertex."
        self.claude_usage: Json = {"input_tokens": 11, "output_tokens": 6, "cache_read_input_tokens": 0,
                                   "cache_creation_input_tokens": 0}

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def trust(self, account: FakeServiceAccount) -> FakeGoogleOAuth:
        """Serve /token for `account` (made once the port, hence its token_uri, is known)."""
        self.account, self.oauth = account, FakeGoogleOAuth(account)
        return self.oauth

    def route(self, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes, body: Any) -> Reply:
        if path == "/token":
            if self.oauth is None:
                return Reply(404, {"error": "not_found"})
            status, answer = self.oauth.exchange(headers, raw)
            return Reply(status, answer)
        match = VERTEX_PATH.match(path)
        if match is None:
            return google_error(404, "NOT_FOUND", f"no route {path}")
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or self.oauth is None or not self.oauth.valid(auth[len("Bearer "):]):
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                                "OAuth 2 access token, login cookie or other valid authentication credential.",
                                "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        if (match["project"], match["location"]) != (self.project, self.location):
            return google_error(403, "PERMISSION_DENIED", f"Permission denied on resource project {match['project']}.")
        method, model = match["method"], match["model"]
        if match["publisher"] == "google":
            if method not in ("generateContent", "streamGenerateContent"):
                return google_error(404, "NOT_FOUND", f"no method {method}")
            return self.generate(model, method == "streamGenerateContent", query, raw, body, vertex=True)
        if method not in ("rawPredict", "streamRawPredict"):
            return google_error(404, "NOT_FOUND", f"no method {method} for Anthropic models")
        return self.claude(model, method == "streamRawPredict", body)

    # --- Claude --------------------------------------------------------------------------------
    def claude(self, model: str, stream: bool, body: Any) -> Reply:
        problem = self._claude_problem(body, stream)
        if problem is not None:
            return Reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": problem}})
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return failure
        message: Json = {"id": "msg_fake_vertex", "type": "message", "role": "assistant", "model": model,
                         "content": [{"type": "text", "text": self.claude_text}], "stop_reason": "end_turn",
                         "stop_sequence": None, "usage": dict(self.claude_usage)}
        return Reply(events=self._claude_events(message)) if stream else Reply(200, message)

    @staticmethod
    def _claude_problem(body: Any, stream: bool) -> str | None:
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if body.get("anthropic_version") != ANTHROPIC_VERSION:
            return f"anthropic_version: expected {ANTHROPIC_VERSION!r}, got {body.get('anthropic_version')!r}"
        if "model" in body:
            return "model: Extra inputs are not permitted (the model is in the URL)"
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return "messages: Field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required"
        if bool(body.get("stream")) != stream:
            return "stream must be true on streamRawPredict and absent or false on rawPredict"
        return None

    def _claude_events(self, message: Json) -> list[bytes]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        events: list[tuple[str, Json]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": self.claude_text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": usage["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]
