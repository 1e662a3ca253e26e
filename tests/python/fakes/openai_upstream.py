"""A fake OpenAI-compatible upstream for the proxy's tests: chat, completions, embeddings, SSE
streams with OpenAI's usage rules, the Responses API (/v1/responses: usage in the reply, streamed in
`response.completed`), and faults (an error status, a reply without usage, a stream cut mid-way, a
slow reply). It records every request so tests can see what the proxy forwarded.
Like OpenAI it answers `n` (and `best_of`) with that many choices. With `usage_from_request` it bills
each request as an upstream using everything it allows: about 4 bytes a text token over messages,
prompt, input, tools, functions and response_format, `image_tokens` per image part, and every
choice running to max_completion_tokens / max_tokens (finish_reason "length").

    with FakeOpenAI() as up:             # http://127.0.0.1:<port>/v1
        up.usage = {"prompt_tokens": 12, "completion_tokens": 7}
        up.fail_next(1, 500)
        up.gate = threading.Event()      # requests wait until the test sets it; up.arrived counts them
        ...
        up.requests[-1]["body"]["stream_options"]

Runnable as a process for benchmarks: `python tests/python/fakes/openai_upstream.py --port N`.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = dict[str, Any]


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 stalls concurrent clients
    daemon_threads = True
    fake: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else ~40 ms delayed-ACK stalls on keep-alive
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        self.server.fake._handle(self, self.path, body)

    def send_json(self, status: int, data: Json) -> None:
        payload = json.dumps(data).encode()
        head = (f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\n\r\n").encode()
        self.wfile.write(head + payload)
        self.wfile.flush()

    def send_stream(self, events: list[bytes], cut_after: int | None, delay: float) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        self.wfile.write(head)
        for i, event in enumerate(events):
            if cut_after is not None and i >= cut_after:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
            if delay:
                time.sleep(delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 1


class FakeOpenAI:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.usage: Json = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
        self.reply_text = "Hello from the fake upstream."
        self.requests: list[Json] = []
        self.delay = 0.0
        self.chunk_delay = 0.0
        self.omit_usage = False
        self.cut_stream_after: int | None = None
        self.usage_from_request = False
        self.image_tokens = 1_445  # gpt-4o at detail "high", the largest image it bills (8 tiles)
        self._failures: list[tuple[int, Json]] = []
        self.gate: threading.Event | None = None  # set by a test: each request waits for it (a call held in flight)
        self.arrived = threading.Semaphore(0)  # released once per request received
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
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

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, n: int = 1, status: int = 500, error: Json | None = None) -> None:
        body = error or {"error": {"message": f"fake upstream error {status}", "type": "server_error",
                                   "param": None, "code": None}}
        with self._lock:
            self._failures += [(status, body)] * n

    def calls(self, path_suffix: str = "") -> list[Json]:
        with self._lock:
            return [r for r in self.requests if r["path"].endswith(path_suffix)]

    # --- replies ------------------------------------------------------------------------------
    def _handle(self, h: _Handler, path: str, body: Json) -> None:
        with self._lock:
            self.requests.append({"path": path, "body": body, "headers": dict(h.headers.items())})
            reply_id = f"fake-{len(self.requests)}"  # each reply its own id, as OpenAI's are
            failure = self._failures.pop(0) if self._failures else None
        self.arrived.release()
        if self.gate is not None:
            self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        if failure:
            h.send_json(*failure)
            return
        model = body.get("model", "unknown")
        if path.endswith("/responses"):
            self._respond(h, body, model)
            return
        n = max(_count(body.get("n")), _count(body.get("best_of")))  # generated (and billed)
        finish = "length" if self.usage_from_request else "stop"
        if path.endswith("/chat/completions"):
            if body.get("stream"):
                h.send_stream(self._chat_events(body, model, "chatcmpl-" + reply_id), self.cut_stream_after,
                              self.chunk_delay)
                return
            reply: Json = {"id": "chatcmpl-" + reply_id, "object": "chat.completion", "created": int(time.time()),
                           "model": model, "choices": [{"index": i, "finish_reason": finish,
                                                        "message": {"role": "assistant", "content": self.reply_text}}
                                                       for i in range(n)]}
        elif path.endswith("/completions"):
            reply = {"id": "cmpl-" + reply_id, "object": "text_completion", "created": int(time.time()), "model": model,
                     "choices": [{"index": i, "text": self.reply_text, "finish_reason": finish}
                                 for i in range(_count(body.get("n")))]}
        elif path.endswith("/embeddings"):
            inputs = body.get("input")
            n = len(inputs) if isinstance(inputs, list) else 1
            reply = {"object": "list", "model": model,
                     "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)]}
            if not self.omit_usage:
                reply["usage"] = {"prompt_tokens": self.usage["prompt_tokens"], "total_tokens": self.usage["prompt_tokens"]}
            h.send_json(200, reply)
            return
        else:
            h.send_json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
            return
        if not self.omit_usage:
            reply["usage"] = self._usage_of(body, n)
        h.send_json(200, reply)

    def _usage_of(self, body: Json, choices: int) -> Json:
        if not self.usage_from_request:
            return dict(self.usage)
        text = [body.get(k) for k in ("messages", "prompt", "input", "tools", "functions", "response_format")]
        prompt = -(-len(json.dumps(text, separators=(",", ":")).encode()) // 4)
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    prompt += self.image_tokens
        per_choice = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        completion = per_choice * choices
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _chat_events(self, body: Json, model: str, reply_id: str) -> list[bytes]:
        base = {"id": reply_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        events = []
        for i, word in enumerate(self.reply_text.split(" ")):
            delta = {"content": word if i == 0 else " " + word}
            events.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage") and not self.omit_usage:
            events.append({**base, "choices": [], "usage": self._usage_of(body, _count(body.get("n")))})
        out = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events]
        return out + [b"data: [DONE]\n\n"]

    # --- the Responses API (POST /v1/responses) ---------------------------------------------------
    def _respond(self, h: _Handler, body: Json, model: str) -> None:
        """A Responses-shaped reply, or its SSE events ending with `response.completed` (which carries
        the usage, OpenAI's `usage` rendered as Responses' input/output tokens)."""
        if not isinstance(body.get("input"), (str, list)):
            h.send_json(400, {"error": {"message": "Missing required parameter: 'input'.",
                                        "type": "invalid_request_error", "param": "input",
                                        "code": "missing_required_parameter"}})
            return
        if body.get("stream"):
            h.send_stream(self._response_events(model), self.cut_stream_after, self.chunk_delay)
            return
        h.send_json(200, self._response(model, "completed"))

    def _response_usage(self) -> Json | None:
        if self.omit_usage:
            return None
        u = self.usage
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
        return {"input_tokens": u["prompt_tokens"], "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": u["completion_tokens"], "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}

    def _response(self, model: str, status: str) -> Json:
        done = status == "completed"
        text = {"type": "output_text", "text": self.reply_text, "annotations": []}
        message = {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant", "content": [text]}
        return {"id": "resp_fake", "object": "response", "created_at": int(time.time()), "status": status,
                "model": model, "output": [message] if done else [], "usage": self._response_usage() if done else None,
                "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
                "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0}

    def _response_events(self, model: str) -> list[bytes]:
        ids = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
        item = {"type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        events: list[Json] = [
            {"type": "response.created", "response": self._response(model, "in_progress")},
            {"type": "response.in_progress", "response": self._response(model, "in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {"type": "response.content_part.added", **ids, "part": part}]
        for i, word in enumerate(self.reply_text.split(" ")):
            events.append({"type": "response.output_text.delta", **ids, "delta": word if i == 0 else " " + word})
        final = self._response(model, "completed")
        events += [{"type": "response.output_text.done", **ids, "text": self.reply_text},
                   {"type": "response.content_part.done", **ids, "part": final["output"][0]["content"][0]},
                   {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
                   {"type": "response.completed", "response": final}]
        return [f"event: {e['type']}\ndata: ".encode() + json.dumps({**e, "sequence_number": n}).encode() + b"\n\n"
                for n, e in enumerate(events)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeOpenAI(args.port).start()
    print(f"listening on {fake.url}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    fake.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
