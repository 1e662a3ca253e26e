"""A strict fake Anthropic Messages API as a real HTTP server: POST /v1/messages (JSON or SSE) and
POST /v1/messages/count_tokens, with the request rules of fakes/anthropic_checks.py.

    with FakeAnthropic() as up:           # http://127.0.0.1:<port>, key up.api_key
        up.fail_next(1, 529)              # then 429, 401, 500 ... in Anthropic's error shape
        ...
        up.requests[-1]["body"]["max_tokens"]

Authentication: `x-api-key` (or `Authorization: Bearer`, which the SDKs since Python 2.0 send) must
be the fake's key; `anthropic-version` must be one Anthropic has published. Replies are
deterministic: a token is 4 characters of text (at least 1 per block), an image 100 tokens, output
tokens are words. Prompt caching is simulated per fake: each cache_control marks a prefix (tools,
then system, then messages); a prefix seen before is read from the cache, the rest up to the last
mark is written, 1-hour or 5-minute as its mark says. When the request has tools and the last user
turn names one (or tool_choice forces one) the reply calls it with an input built from its schema;
a turn of tool results is answered with their text.

Runnable as a process: `python tests/python/fakes/anthropic_upstream.py --port N`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:
    from .anthropic_checks import VERSIONS, Invalid, check_request
except ImportError:  # run as a script
    from anthropic_checks import VERSIONS, Invalid, check_request  # type: ignore[no-redef]

Json = dict[str, Any]
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}


def tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.fake._handle(self, self.path, {k.lower(): v for k, v in self.headers.items()}, raw)

    do_GET = do_PUT = do_DELETE = do_POST

    def send_json(self, status: int, data: Json, extra: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
        head += "request-id: req_fake\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
        self.wfile.write(head.encode() + b"\r\n" + payload)
        self.wfile.flush()

    def send_stream(self, events: list[bytes], cut_after: int | None) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                         b"cache-control: no-cache\r\nrequest-id: req_fake\r\ntransfer-encoding: chunked\r\n\r\n")
        for i, event in enumerate(events):
            if cut_after is not None and i >= cut_after:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeAnthropic:
    def __init__(self, port: int = 0, api_key: str = "sk-ant-fake") -> None:
        self.port = port
        self.api_key = api_key
        self.reply_text = "Hello from the fake Anthropic."
        self.model_id = ""  # "" → the reply names the requested model
        self.requests: list[Json] = []
        self.cut_stream_after: int | None = None  # close the connection after this many events
        self.stream_error_after: int | None = None  # send an overloaded error event after this many
        self._failures: list[tuple[int, str, str]] = []
        self._cache: set[str] = set()
        self._calls = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAnthropic:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def forget_cache(self) -> None:
        """Empties the simulated prompt cache (the next call writes again)."""
        with self._lock:
            self._cache.clear()

    def fail_next(self, n: int = 1, status: int = 529, message: str | None = None) -> None:
        """The next n calls fail with `status` in Anthropic's shape (529 overloaded, 429, 401 ...)."""
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        with self._lock:
            self._failures += [(status, kind, message or f"fake {kind}")] * n

    # ---- requests ----------------------------------------------------------------------------

    def _handle(self, h: _Handler, path: str, headers: dict[str, str], raw: bytes) -> None:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            failure = self._failures.pop(0) if self._failures else None
        status, answer = self._refusal(h.command, path, headers, body)
        if status == 0 and failure:
            status, answer = failure[0], _error(failure[1], failure[2])
        if status:
            h.send_json(status, answer, {"retry-after": "1"} if status == 429 else None)
            return
        try:
            turns = check_request(body, version=headers["anthropic-version"], count_tokens=path.endswith("/count_tokens"))
        except Invalid as exc:
            h.send_json(400, _error("invalid_request_error", str(exc)))
            return
        if path.endswith("/count_tokens"):
            h.send_json(200, {"input_tokens": sum(n for _, n, _ in _units(body, turns))})
            return
        message = self._message(body, turns)
        if body.get("stream"):
            h.send_stream(self._events(message), self.cut_stream_after)
        else:
            h.send_json(200, message)

    def _refusal(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Json]:
        if path.split("?")[0] not in ("/v1/messages", "/v1/messages/count_tokens"):
            return 404, _error("not_found_error", f"Not found: {path}")
        if method != "POST":
            return 405, _error("invalid_request_error", f"{method} is not allowed")
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else "")
        if not key:
            return 401, _error("authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return 401, _error("authentication_error", "invalid x-api-key")
        version = headers.get("anthropic-version")
        if version is None:
            return 400, _error("invalid_request_error", "anthropic-version: header is required")
        if version not in VERSIONS:
            return 400, _error("invalid_request_error", f"anthropic-version: {version!r} is not a valid version")
        if body is None:
            return 400, _error("invalid_request_error", "request body is not valid JSON")
        return 0, {}

    # ---- replies -----------------------------------------------------------------------------

    def _message(self, body: Json, turns: list[Json]) -> Json:
        with self._lock:
            self._calls += 1
            call = self._calls
        blocks, stop_reason, stop_sequence = self._content(body, turns, call)
        output = sum(len(b["text"].split()) if b["type"] == "text" else tokens(json.dumps(b.get("input", b.get(
            "thinking", "")))) for b in blocks)
        return {"id": f"msg_fake{call:04d}", "type": "message", "role": "assistant",
                "model": self.model_id or body["model"], "content": blocks, "stop_reason": stop_reason,
                "stop_sequence": stop_sequence, "usage": {**self._input_usage(body, turns), "output_tokens": output,
                                                          "service_tier": "standard"}}

    def _content(self, body: Json, turns: list[Json], call: int) -> tuple[list[Json], str, str | None]:
        blocks: list[Json] = []
        if (body.get("thinking") or {}).get("type") == "enabled":
            blocks.append({"type": "thinking", "thinking": "Thinking it over.", "signature": "sig-fake"})
        last = turns[-1]["content"] if turns[-1]["role"] == "user" else []
        results = [b for b in last if b.get("type") == "tool_result"]
        tool = None if results else _chosen_tool(body, last)
        if tool is not None:
            if (body.get("tool_choice") or {}).get("type", "auto") == "auto":
                blocks.append({"type": "text", "text": f"Calling {tool['name']}."})
            blocks.append({"type": "tool_use", "id": f"toolu_fake{call:04d}", "name": tool["name"],
                           "input": _sample(tool.get("input_schema") or {})})
            return blocks, "tool_use", None
        text = ("Tool said: " + " ".join(_text_of(b.get("content")) for b in results)) if results else self.reply_text
        for stop in body.get("stop_sequences") or []:
            if stop and stop in text:
                blocks.append({"type": "text", "text": text[:text.index(stop)] or "-"})
                return blocks, "stop_sequence", stop
        words = text.split()
        if len(words) > body["max_tokens"]:
            blocks.append({"type": "text", "text": " ".join(words[:body["max_tokens"]]) or "-"})
            return blocks, "max_tokens", None
        blocks.append({"type": "text", "text": text})
        return blocks, "end_turn", None

    def _input_usage(self, body: Json, turns: list[Json]) -> Json:
        units = _units(body, turns)
        total = sum(n for _, n, _ in units)
        marks = [i for i, (_, _, ttl) in enumerate(units) if ttl]
        read = writes_5m = writes_1h = 0
        if marks:
            keys = [_prefix_key(body["model"], units[: i + 1]) for i in marks]
            with self._lock:
                hits = [k for k, key in enumerate(keys) if key in self._cache]
                self._cache.update(keys)
            start = marks[hits[-1]] + 1 if hits else 0
            read = sum(n for _, n, _ in units[:start])
            for i in range(start, marks[-1] + 1):  # each written unit at the ttl of the mark that ends its segment
                ttl = units[next(m for m in marks if m >= i)][2]
                if ttl == "1h":
                    writes_1h += units[i][1]
                else:
                    writes_5m += units[i][1]
        return {"input_tokens": total - read - writes_5m - writes_1h, "cache_creation_input_tokens": writes_5m + writes_1h,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": writes_5m, "ephemeral_1h_input_tokens": writes_1h}}

    def _events(self, message: Json) -> list[bytes]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 1}}
        events: list[Json] = [{"type": "message_start", "message": start}, {"type": "ping"}]
        for i, block in enumerate(message["content"]):
            events += _block_events(i, block)
        events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                          "stop_sequence": message["stop_sequence"]},
                       "usage": {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                                       "cache_read_input_tokens", "output_tokens")}})
        events.append({"type": "message_stop"})
        if self.stream_error_after is not None:
            events = events[: self.stream_error_after] + [_error("overloaded_error", "Overloaded")]
        return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


def _error(kind: str, message: str) -> Json:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def _units(body: Json, turns: list[Json]) -> list[tuple[Json, int, str]]:
    """(unit, tokens, ttl or "") in cache prefix order: tools, system blocks, message blocks."""
    system = body.get("system") or []
    system = [{"type": "text", "text": system}] if isinstance(system, str) else system
    out = []
    for unit in list(body.get("tools") or []) + list(system) + [b for t in turns for b in t["content"]]:
        mark = unit.get("cache_control") or {}
        plain = {k: v for k, v in unit.items() if k != "cache_control"}
        n = 100 if unit.get("type") == "image" else tokens(_text_of(plain) if "text" in plain else json.dumps(plain))
        out.append((plain, n, mark.get("ttl", "5m") if mark else ""))
    return out


def _prefix_key(model: str, units: list[tuple[Json, int, str]]) -> str:
    return hashlib.sha256(json.dumps([model] + [u for u, _, _ in units], sort_keys=True).encode()).hexdigest()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    return " ".join(_text_of(part) for part in content or [])


def _chosen_tool(body: Json, last: list[Json]) -> Json | None:
    tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None
    if choice["type"] == "tool":
        return next(t for t in tools if t["name"] == choice["name"])
    said = _text_of([b for b in last if b.get("type") == "text"])
    named = next((t for t in tools if t["name"] in said), None)
    return named or (tools[0] if choice["type"] == "any" else None)


def _sample(schema: Json) -> Any:
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _sample(v) for k, v in props.items() if k in (schema.get("required") or list(props))}
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(str(kind))


def _block_events(i: int, block: Json) -> list[Json]:
    kind = block["type"]
    if kind == "text":
        words = block["text"].split(" ")
        deltas = [{"type": "text_delta", "text": w if k == 0 else " " + w} for k, w in enumerate(words)]
        start: Json = {"type": "text", "text": ""}
    elif kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                  {"type": "signature_delta", "signature": block["signature"]}]
        start = {"type": "thinking", "thinking": "", "signature": ""}
    else:
        text = json.dumps(block["input"])
        third = max(1, len(text) // 3)
        deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
            {"type": "input_json_delta", "partial_json": text[k:k + third]} for k in range(0, len(text), third)]
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
    return ([{"type": "content_block_start", "index": i, "content_block": start}]
            + [{"type": "content_block_delta", "index": i, "delta": d} for d in deltas]
            + [{"type": "content_block_stop", "index": i}])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeAnthropic(args.port).start()
    print(f"listening on {fake.url}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    fake.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
