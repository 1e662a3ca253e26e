"""A strict fake Azure OpenAI resource: deployments at `/openai/deployments/<name>/…?api-version=…`.

As Azure does: a request without `api-version` gets 404 "Resource not found", an unknown version 400,
a wrong or missing `api-key` (or Entra ID bearer token) 401, an unknown deployment 404
DeploymentNotFound; replies name the deployment's base model (`gpt-4o-2024-08-06`), not the
deployment, and a stream starts with Azure's prompt-filter chunk (no choices, empty model). Chat and
embeddings replies, streams and usage rules are FakeOpenAI's (fakes/openai_upstream.py).

    with FakeAzure() as azure:                  # api_base = azure.url
        azure.filter_next()                     # the next call is refused as content_filter (400)
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

try:
    from tests.python.fakes.openai_upstream import FakeOpenAI, Json, _Handler
except ImportError:  # run as a script
    from openai_upstream import FakeOpenAI, Json, _Handler  # type: ignore[no-redef]

API_KEY = "fake-azure-key"
AD_TOKEN = "fake-entra-token"
API_VERSIONS = {"2024-06-01", "2024-10-21", "2024-12-01-preview", "2025-01-01-preview", "2025-03-01-preview"}
DEPLOYMENTS = {"prod-4o": "gpt-4o-2024-08-06", "mini": "gpt-4o-mini-2024-07-18", "embed": "text-embedding-3-small"}
_ACCESS_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                  "key for an active subscription and use a correct regional API endpoint for your resource.")
_FILTERED = ("The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
             "Please modify your prompt and retry.")


class FakeAzure(FakeOpenAI):
    def __init__(self, port: int = 0, api_key: str = API_KEY, ad_token: str = AD_TOKEN,
                 deployments: dict[str, str] | None = None) -> None:
        super().__init__(port)
        self.api_key, self.ad_token = api_key, ad_token
        self.deployments = dict(DEPLOYMENTS if deployments is None else deployments)
        self.rejected: list[Json] = []  # requests refused before reaching a deployment
        self._filter = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def filter_next(self, n: int = 1) -> None:
        with self._lock:
            self._filter += n

    def _handle(self, h: _Handler, path: str, body: Json) -> None:
        answer = self._refusal(h, path, body)
        if answer is not None:
            with self._lock:
                self.rejected.append({"path": path, "body": body, "headers": dict(h.headers.items()),
                                      "status": answer[0]})
            h.send_json(*answer)
            return
        parts = urlsplit(path).path.split("/")
        if parts[1:3] == ["openai", "responses"]:  # the Responses API: the body's model names the deployment
            super()._handle(h, "/v1/responses", {**body, "model": self.deployments[body["model"]]})
            return
        deployment, route = unquote(parts[3]), "/".join(parts[4:])
        # Azure ignores the body's model: the deployment decides, and the reply names its base model.
        body = {**body, "model": self.deployments[deployment]}
        super()._handle(h, f"/v1/{route}", body)

    def _refusal(self, h: _Handler, path: str, body: Json) -> tuple[int, Json] | None:
        url = urlsplit(path)
        parts = url.path.split("/")
        versions = parse_qs(url.query).get("api-version")
        known_route = len(parts) >= 5 and parts[1:3] == ["openai", "deployments"] and \
            "/".join(parts[4:]) in ("chat/completions", "embeddings", "completions")
        responses = parts[1:] == ["openai", "responses"]
        if not (known_route or responses) or not versions:
            return 404, {"error": {"code": "404", "message": "Resource not found"}}
        key, bearer = h.headers.get("api-key"), h.headers.get("authorization")
        if key != self.api_key and bearer != f"Bearer {self.ad_token}":
            return 401, {"error": {"code": "401", "message": _ACCESS_DENIED}}
        if versions[0] not in API_VERSIONS:
            return 400, {"error": {"code": "BadRequest", "message": "API version not supported"}}
        if (body.get("model") if responses else unquote(parts[3])) not in self.deployments:
            return 404, {"error": {"code": "DeploymentNotFound", "message": (
                "The API deployment for this resource does not exist. If you created the deployment within the "
                "last 5 minutes, please wait a moment and try again.")}}
        with self._lock:
            if self._filter:
                self._filter -= 1
                return 400, {"error": {"message": _FILTERED, "type": None, "param": "prompt", "code": "content_filter",
                                       "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                                     "content_filter_result": {
                                                                         "hate": {"filtered": True, "severity": "high"}}}}}
        return None

    def _chat_events(self, body: Json, model: str, reply_id: str) -> list[bytes]:
        # Azure's first chunk reports the prompt's filter results: no choices and an empty model.
        head = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
        first = b"data: " + json.dumps(head, separators=(",", ":")).encode() + b"\n\n"
        return [first] + super()._chat_events(body, model, reply_id)

