"""A strict fake of Google's Gemini API (AI Studio) for the adapter's end-to-end tests.

    with FakeGemini(api_key="k") as up:         # up.url = http://127.0.0.1:<port> (an api_base)
        up.thoughts, up.cached = 5, 3           # usageMetadata carries them when set
        up.function_calls = [{"name": "f", "args": {}}]
        up.fail_next(1, 429, "RESOURCE_EXHAUSTED")
        ...
        up.requests[-1]["body"]

It serves `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, checks
the `x-goog-api-key` header (a wrong key gets Google's 400 API_KEY_INVALID, none its 403) and every
body against gemini_checks.py, answers in Google's error shape, and frames a stream as Google does:
`data: {GenerateContentResponse}\\r\\n\\r\\n`, each chunk's usageMetadata the running total (the
candidates' count only complete in the last). Subclasses add routes (vertex_upstream.py).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .gemini_checks import check_generate_content

Json = dict[str, Any]
GEMINI_PATH = re.compile(r"^/v1beta/models/(?P<model>[A-Za-z0-9._@-]+)"
                         r":(?P<method>generateContent|streamGenerateContent)$")


class Reply:
    """What a route answers: a JSON body, or SSE events (bytes, already framed)."""

    def __init__(self, status: int = 200, body: Any = None, events: list[bytes] | None = None) -> None:
        self.status, self.body, self.events = status, body, events


def google_error(code: int, status: str, message: str, reason: str | None = None) -> Reply:
    err: Json = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com"}]
    return Reply(code, {"error": err})


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    fake: FakeGemini


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else ~40 ms delayed-ACK stalls on keep-alive
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self.server.fake.handle(split.path, dict(parse_qsl(split.query)), headers, raw)
        except Exception as error:  # a bug in the fake must not look like a network fault
            reply = Reply(500, {"error": {"code": 500, "message": f"fake error: {error!r}", "status": "INTERNAL"}})
        if reply.events is not None:
            self._send_events(reply.events)
        else:
            payload = json.dumps(reply.body).encode()
            self.wfile.write((f"HTTP/1.1 {reply.status} X\r\ncontent-type: application/json; charset=UTF-8\r\n"
                              f"content-length: {len(payload)}\r\n\r\n").encode() + payload)
            self.wfile.flush()

    def _send_events(self, events: list[bytes]) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeGemini:
    def __init__(self, api_key: str = "test-gemini-key", port: int = 0) -> None:
        self.api_key, self.port = api_key, port
        self.reply_text = "Hello from the fake Gemini."
        self.function_calls: list[Json] = []  # when set, the model calls these ({"name","args"[,"thoughtSignature"]})
        self.finish_reason = "STOP"
        self.prompt_tokens, self.candidates_tokens = 12, 7
        self.thoughts = 0  # thoughtsTokenCount, when > 0
        self.cached = 0  # cachedContentTokenCount, when > 0
        self.requests: list[Json] = []
        self._failures: list[Reply] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGemini:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, n: int, code: int, status: str, message: str = "scripted failure",
                  reason: str | None = None) -> None:
        with self._lock:
            self._failures += [google_error(code, status, message, reason)] * n

    # --- routing ---------------------------------------------------------------------------------
    def handle(self, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes) -> Reply:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append({"path": path, "query": query, "headers": headers, "body": body})
        return self.route(path, query, headers, raw, body)

    def route(self, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes, body: Any) -> Reply:
        match = GEMINI_PATH.match(path)
        if match is None:
            return google_error(404, "NOT_FOUND", f"no route {path}")
        key = headers.get("x-goog-api-key")
        if key is None:
            return google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers "
                                "without established identity). Please use API Key or other form of API consumer "
                                "identity to call this API.")
        if key != self.api_key:
            return google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                "API_KEY_INVALID")
        return self.generate(match["model"], match["method"] == "streamGenerateContent", query, raw, body,
                             vertex=False)

    def generate(self, model: str, stream: bool, query: dict[str, str], raw: bytes, body: Any,
                 vertex: bool) -> Reply:
        if body is None:
            return google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received: {raw[:80]!r}")
        problems = check_generate_content(body, vertex=vertex)
        if problems:
            return google_error(400, "INVALID_ARGUMENT", "\n".join(problems))
        if stream and query.get("alt") != "sse":
            return google_error(400, "INVALID_ARGUMENT", "this fake streams Server-Sent Events only (alt=sse)")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return failure
        count = (body.get("generationConfig") or {}).get("candidateCount", 1)
        return Reply(events=self.events(model, count)) if stream else Reply(200, self.reply(model, count))

    # --- replies ---------------------------------------------------------------------------------
    def usage(self, complete: bool) -> Json:
        meta: Json = {"promptTokenCount": self.prompt_tokens}
        if complete:
            meta["candidatesTokenCount"] = self.candidates_tokens
        if self.thoughts:
            meta["thoughtsTokenCount"] = self.thoughts
        if self.cached:
            meta["cachedContentTokenCount"] = self.cached
        meta["totalTokenCount"] = self.prompt_tokens + self.thoughts + (self.candidates_tokens if complete else 0)
        return meta

    def parts(self) -> list[Json]:
        if not self.function_calls:
            return [{"text": self.reply_text}]
        parts = []
        for call in self.function_calls:
            part: Json = {"functionCall": {"name": call["name"], "args": call.get("args", {})}}
            if call.get("thoughtSignature"):
                part["thoughtSignature"] = call["thoughtSignature"]
            parts.append(part)
        return parts

    def reply(self, model: str, count: int) -> Json:
        candidates = [{"content": {"role": "model", "parts": self.parts()}, "finishReason": self.finish_reason,
                       "index": i} for i in range(count)]
        return {"candidates": candidates, "usageMetadata": self.usage(True), "modelVersion": model,
                "responseId": "fake-response-1"}

    def events(self, model: str, count: int) -> list[bytes]:
        pieces: list[list[Json]] = [[p] for p in self.parts()] if self.function_calls else \
            [[{"text": w if i == 0 else " " + w}] for i, w in enumerate(self.reply_text.split(" "))]
        chunks = []
        for n, parts in enumerate(pieces):
            last = n == len(pieces) - 1
            candidates = []
            for i in range(count):
                cand: Json = {"content": {"role": "model", "parts": parts}, "index": i}
                if last:
                    cand["finishReason"] = self.finish_reason
                candidates.append(cand)
            chunks.append({"candidates": candidates, "usageMetadata": self.usage(last), "modelVersion": model,
                           "responseId": "fake-response-1"})
        return [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\r\n\r\n" for c in chunks]

