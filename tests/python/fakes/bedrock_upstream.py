"""A strict fake Bedrock Runtime: Converse, ConverseStream (real binary event-stream frames) and
InvokeModel for Titan and Cohere embeddings, behind AWS Signature V4.

Strict where Bedrock is: every request's signature is recomputed with botocore from the fake's
credentials (a wrong secret, a tampered body, an unknown key, a clock off by more than five minutes →
403 with Bedrock's error shape: `x-amzn-ErrorType` header, `{"message"}` body); Converse bodies are
checked as Bedrock checks them (roles user/assistant only, first user, alternating, known block
shapes, no blank text, toolResult ids answering the previous turn's toolUse ids, toolConfig present
when tool blocks are). It records every request so tests can see what was sent.

    with FakeBedrock() as bedrock:              # http://127.0.0.1:<port>, region us-east-1
        bedrock.usage = {"inputTokens": 12, "outputTokens": 7, "cacheReadInputTokens": 100}
        bedrock.fail_next(1, "ThrottlingException")
        bedrock.stream_split = 5                 # frames leave in 5-byte pieces

Runnable as a process: `python tests/python/fakes/bedrock_upstream.py --port N`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import calendar
import hmac
import json
import math
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote

try:
    from tests.python.fakes import aws_eventstream as es
except ImportError:  # run as a script
    import aws_eventstream as es  # type: ignore[no-redef]

Json = dict[str, Any]
ACCESS_KEY = "AKIDFAKEBEDROCK0001"
SECRET_KEY = "fake/secret+key/for/bedrock"
REGION = "us-east-1"
CHAT_MODELS = {"anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0",
               "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-pro-v1:0"}
EMBED_MODELS = {"amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v1", "cohere.embed-english-v3",
                "cohere.embed-multilingual-v3"}
_ERROR_STATUS = {"ThrottlingException": 429, "ModelNotReadyException": 429, "ServiceUnavailableException": 503,
                 "ValidationException": 400, "AccessDeniedException": 403, "ResourceNotFoundException": 404,
                 "ModelTimeoutException": 408, "InternalServerException": 500, "ModelErrorException": 424,
                 "ServiceQuotaExceededException": 400}
_BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                  "Secret Access Key and signing method. Consult the service documentation for details.")
Reply = tuple[int, dict[str, str], "bytes | list[bytes]"]


def error(status: int, name: str, message: str) -> Reply:
    headers = {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "content-type": "application/json"}
    return status, headers, json.dumps({"message": message}).encode()


class FakeBedrock:
    def __init__(self, port: int = 0, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                 session_token: str | None = None, region: str = REGION,
                 clock: Callable[[], float] = time.time) -> None:
        self.port = port
        self.access_key, self.secret_key, self.session_token = access_key, secret_key, session_token
        self.region = region
        self.clock = clock
        self.usage: Json = {"inputTokens": 12, "outputTokens": 7}
        self.reply_text = "Hello from the fake Bedrock."
        self.stop_reason = "end_turn"
        self.tool_use: Json | None = None  # {"toolUseId", "name", "input"}: the reply calls a tool
        self.stream_split: int | None = None  # write the stream in pieces of this many bytes
        self.stream_exception: tuple[int, str, str] | None = None  # (after n frames, type, message)
        self.requests: list[Json] = []
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, n: int = 1, exception: str = "ThrottlingException") -> None:
        with self._lock:
            self._failures += [exception] * n

    def start(self) -> FakeBedrock:
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

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the service ---------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Reply:
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            self.requests.append({"method": method, "path": raw_path, "headers": headers, "body": parsed, "raw": body})
        denied = self._check_signature(method, raw_path, headers, body)
        if denied:
            return denied
        parts = raw_path.split("?")[0].split("/")
        if method != "POST" or len(parts) != 4 or parts[1] != "model" or parts[3] not in (
                "converse", "converse-stream", "invoke"):
            return error(404, "UnknownOperationException", "Unknown operation")
        model, operation = unquote(parts[2]), parts[3]
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            return error(_ERROR_STATUS.get(failure, 500), failure, f"fake {failure}")
        if not isinstance(parsed, dict):
            return error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")
        if operation == "invoke":
            return self._invoke(model, parsed)
        if model not in CHAT_MODELS:
            return error(400, "ValidationException", "The provided model identifier is invalid.")
        problem = check_converse(parsed)
        if problem:
            return error(400, "ValidationException", problem)
        if operation == "converse-stream":
            return 200, {"content-type": "application/vnd.amazon.eventstream"}, self._frames()
        return 200, {"content-type": "application/json"}, json.dumps(self._converse_reply()).encode()

    def _check_signature(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Reply | None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        auth = headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        key, day, region, service, _ = (fields.get("Credential", "") + "////").split("/")[:5]
        signed = fields.get("SignedHeaders", "").split(";")
        if key != self.access_key:
            return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if self.session_token is not None and headers.get("x-amz-security-token") != self.session_token:
            return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if service != "bedrock" or region != self.region:
            return error(403, "InvalidSignatureException",
                         f"Credential should be scoped to a valid region and service 'bedrock' ({region}/{service}).")
        if "host" not in signed or "x-amz-date" not in signed:
            return error(403, "InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.")
        stamp = headers.get("x-amz-date", "")
        try:
            when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return error(403, "IncompleteSignatureException", "X-Amz-Date is not a valid timestamp.")
        if abs(when - self.clock()) > 300 or day != stamp[:8]:
            return error(403, "InvalidSignatureException", f"Signature expired: {stamp} is now earlier than allowed.")
        request = AWSRequest(method=method, url=f"http://{headers.get('host', '')}{raw_path}", data=body,
                             headers={name: headers.get(name, "") for name in signed})
        request.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key, self.session_token), "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            return error(403, "InvalidSignatureException", _BAD_SIGNATURE)
        return None

    def _content(self) -> list[Json]:
        blocks: list[Json] = [{"text": self.reply_text}] if self.reply_text else []
        if self.tool_use:
            blocks.append({"toolUse": dict(self.tool_use)})
        return blocks

    def _usage(self) -> Json:
        u = dict(self.usage)
        u["totalTokens"] = sum(u.get(k, 0) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens",
                                                      "cacheWriteInputTokens"))
        return u

    def _converse_reply(self) -> Json:
        return {"output": {"message": {"role": "assistant", "content": self._content()}},
                "stopReason": "tool_use" if self.tool_use else self.stop_reason,
                "usage": self._usage(), "metrics": {"latencyMs": 42}}

    def _frames(self) -> list[bytes]:
        pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"  # Bedrock pads events with "p"
        frames = [es.event("messageStart", {"role": "assistant", "p": pad[:7]})]
        index = 0
        if self.reply_text:
            for i, word in enumerate(self.reply_text.split(" ")):
                frames.append(es.event("contentBlockDelta", {"contentBlockIndex": 0, "p": pad[: 3 + i % 9],
                                                             "delta": {"text": word if i == 0 else " " + word}}))
            frames.append(es.event("contentBlockStop", {"contentBlockIndex": 0, "p": pad[:5]}))
            index = 1
        if self.tool_use:
            start = {"toolUseId": self.tool_use["toolUseId"], "name": self.tool_use["name"]}
            frames.append(es.event("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": start}}))
            arguments = json.dumps(self.tool_use["input"])
            for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
                frames.append(es.event("contentBlockDelta", {"contentBlockIndex": index,
                                                             "delta": {"toolUse": {"input": piece}}}))
            frames.append(es.event("contentBlockStop", {"contentBlockIndex": index}))
        frames.append(es.event("messageStop", {"stopReason": "tool_use" if self.tool_use else self.stop_reason,
                                               "p": pad[:2]}))
        frames.append(es.event("metadata", {"usage": self._usage(), "metrics": {"latencyMs": 42}, "p": pad[:4]}))
        if self.stream_exception:
            after, kind, message = self.stream_exception
            frames = frames[:after] + [es.exception(kind, message)]
        return frames

    def _invoke(self, model: str, body: Json) -> Reply:
        if model not in EMBED_MODELS:
            return error(400, "ValidationException", "The provided model identifier is invalid.")
        if model.startswith("amazon.titan"):
            text, dims = body.get("inputText"), body.get("dimensions", 1024)
            allowed = {"inputText", "dimensions", "normalize", "embeddingTypes"} if "v2" in model else {"inputText"}
            if set(body) - allowed or not isinstance(text, str) or not text or dims not in (256, 512, 1024):
                return error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")
            tokens = _tokens(text)
            vector = [round(0.001 * (i + len(text)), 6) for i in range(dims)]
            reply: Json = {"embedding": vector, "inputTextTokenCount": tokens, "embeddingsByType": {"float": vector}}
        else:
            texts, kind = body.get("texts"), body.get("input_type")
            if (set(body) - {"texts", "input_type", "truncate", "embedding_types"} or not isinstance(texts, list)
                    or not 1 <= len(texts) <= 96 or not all(isinstance(t, str) for t in texts)
                    or kind not in ("search_document", "search_query", "classification", "clustering")):
                return error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")
            tokens = sum(_tokens(t) for t in texts)
            reply = {"embeddings": [[0.5, -0.25, float(len(t))] for t in texts], "id": "fake-embed-id",
                     "response_type": "embeddings_floats", "texts": texts}
        return 200, {"content-type": "application/json", "X-Amzn-Bedrock-Input-Token-Count": str(tokens)}, \
            json.dumps(reply).encode()


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 5))


# --- Converse body rules -----------------------------------------------------------------------
_TOP = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
        "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig"}


def check_converse(body: Json) -> str | None:
    """Bedrock's complaint about a Converse body, or None when it would accept it."""
    extra = set(body) - _TOP
    if extra:
        return f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
    for i, block in enumerate(body.get("system") or []):
        if not (isinstance(block, dict) and len(block) == 1 and (_nonblank(block.get("text")) or "cachePoint" in block)):
            return f"The system content block at system.{i} is malformed or blank."
    tool_blocks = False
    previous_uses: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant") or set(msg) != {"role", "content"}:
            return f"messages.{i}: role must be user or assistant"
        if i == 0 and msg["role"] != "user":
            return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
        if i and msg["role"] == messages[i - 1]["role"]:
            return "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
        content = msg["content"]
        if not isinstance(content, list) or not content:
            return f"messages.{i}.content must be a non-empty list"
        uses: set[str] = set()
        results: set[str] = set()
        for j, block in enumerate(content):
            problem = _check_block(block, msg["role"], f"messages.{i}.content.{j}")
            if problem:
                return problem
            if "toolUse" in block:
                uses.add(block["toolUse"]["toolUseId"])
                tool_blocks = True
            if "toolResult" in block:
                tool_blocks = True
                results.add(block["toolResult"]["toolUseId"])
                if block["toolResult"]["toolUseId"] not in previous_uses:
                    return (f"messages.{i}.content.{j}: the toolResult's toolUseId "
                            f"{block['toolResult']['toolUseId']} does not match a toolUse of the previous turn")
        if msg["role"] == "user" and previous_uses - results:
            return (f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                    f"{', '.join(sorted(previous_uses - results))}")
        previous_uses = uses if msg["role"] == "assistant" else set()
    inference = body.get("inferenceConfig")
    if inference is not None and (not isinstance(inference, dict)
                                  or set(inference) - {"maxTokens", "temperature", "topP", "stopSequences"}):
        return "inferenceConfig is malformed"
    return _check_tools(body.get("toolConfig"), tool_blocks)


def _nonblank(text: object) -> bool:
    return isinstance(text, str) and bool(text.strip())


def _check_block(block: object, role: str, where: str) -> str | None:
    if not isinstance(block, dict) or len(block) != 1:
        return f"{where}: a content block has exactly one member"
    (kind, value), = block.items()
    if kind == "text":
        return None if _nonblank(value) else f"The text field in the ContentBlock object at {where} is blank."
    if kind == "cachePoint":
        return None if value == {"type": "default"} else f"{where}: cachePoint is malformed"
    if kind == "image":
        fmt, data = value.get("format"), (value.get("source") or {}).get("bytes")
        try:
            ok = fmt in ("png", "jpeg", "gif", "webp") and isinstance(data, str) and base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            ok = False
        return None if ok else f"{where}: the image block is malformed"
    if kind == "toolUse" and role == "assistant":
        ok = isinstance(value, dict) and set(value) == {"toolUseId", "name", "input"} and isinstance(value["input"], dict)
        return None if ok and value["toolUseId"] and value["name"] else f"{where}: the toolUse block is malformed"
    if kind == "toolResult" and role == "user":
        content = value.get("content") if isinstance(value, dict) else None
        ok = isinstance(content, list) and all(isinstance(c, dict) and len(c) == 1 and
                                               ("text" in c or "json" in c or "image" in c) for c in content)
        return None if ok and isinstance(value.get("toolUseId"), str) else f"{where}: the toolResult block is malformed"
    return f"{where}: a {kind} block is not allowed in a {role} message"


def _check_tools(config: object, tool_blocks: bool) -> str | None:
    if config is None:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks." if tool_blocks else None
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        return "toolConfig.tools must be a non-empty list"
    names = set()
    for i, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) and len(tool) == 1 else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or \
                not isinstance((spec.get("inputSchema") or {}).get("json"), dict) or \
                set(spec) - {"name", "description", "inputSchema"}:
            return f"toolConfig.tools.{i} is malformed"
        names.add(spec["name"])
    choice = config.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1:
            return "toolConfig.toolChoice is malformed"
        (kind, value), = choice.items()
        if kind not in ("auto", "any", "tool") or (kind == "tool" and value.get("name") not in names):
            return "toolConfig.toolChoice is malformed"
    return None


# --- HTTP ------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    fake: FakeBedrock


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        words = self.requestline.split()
        raw_path = words[1] if len(words) == 3 else self.path  # as sent: the signature covers it
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, head, payload = self.server.fake.handle(self.command, raw_path, headers, body)
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in head.items()]
        if isinstance(payload, bytes):
            self.wfile.write(("\r\n".join(lines + [f"content-length: {len(payload)}", "", ""])).encode() + payload)
            self.wfile.flush()
            return
        self.wfile.write(("\r\n".join(lines + ["transfer-encoding: chunked", "", ""])).encode())
        data = b"".join(payload)
        step = self.server.fake.stream_split
        pieces = [data[i:i + step] for i in range(0, len(data), step)] if step else payload
        for piece in pieces:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_PUT = do_POST


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeBedrock(args.port).start()
    print(f"listening on {fake.url}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    fake.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
