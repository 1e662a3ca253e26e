"""HTTP plumbing for the fakes: a keep-alive JSON server in a background thread.

It knows nothing of Lago: each request becomes a `RecordedRequest` handed to an `App` that returns
`(status, body, headers)`, or None to close the connection without a reply. Set up as
docs/benchmarks.md asks of fake servers: a 1024-deep accept queue, HTTP/1.1 keep-alive, Nagle off,
and each reply's headers and body written together then flushed. `close()` unblocks and joins
every handler thread, so tests leave no socket open.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Callable
from urllib.parse import parse_qsl

Json = dict[str, Any]
Answer = tuple[int, Json, dict[str, str]]


@dataclass
class RecordedRequest:
    """One request as received. The app sets `status` (None: closed without a reply) and `fault`."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes
    connection: int  # 1-based number of the TCP connection it came on
    status: int | None = None
    fault: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def to_json(self) -> Json:
        return {"method": self.method, "path": self.path, "query": self.query, "headers": self.headers,
                "body": self.body.decode("utf-8", "replace"), "connection": self.connection,
                "status": self.status, "fault": self.fault}


App = Callable[[RecordedRequest], "Answer | None"]


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 turns 64 concurrent clients into multi-second stalls
    daemon_threads = False  # close() joins every handler thread
    block_on_close = True
    owner: BackgroundServer

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's own version does a reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, on the accepting thread, so that close() finds every accepted socket.
        self.owner._connected(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-reply is the client's business


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # else ~40 ms delayed-ACK stalls per keep-alive request
    wbufsize = 1 << 16  # buffered: headers and body leave in one write, on flush
    server_version = "FakeServer/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.number = self.server.owner._number(self.connection)

    def finish(self) -> None:
        self.server.owner._disconnected(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_expect_100(self) -> bool:
        # libcurl sends "Expect: 100-continue" with bodies over 1 KiB and waits up to 1 s for it:
        # the buffered writer must not sit on the interim reply.
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def do_GET(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send((400, {"status": 400, "error": "Bad Request"}, {}))
            return
        # The target as sent: http.server folds a leading "//" into "/", which would hide a
        # sender's doubled slash from a route check.
        words = self.requestline.split()
        path, _, query = (words[1] if len(words) == 3 else self.path).partition("?")
        request = RecordedRequest(self.command, path, dict(parse_qsl(query, keep_blank_values=True)),
                                  {name.lower(): value for name, value in self.headers.items()},
                                  body, self.number)
        try:
            answer = self.server.owner.app(request)
        except Exception as error:  # a bug in the fake must not look like a network fault
            traceback.print_exc()
            answer = (500, {"status": 500, "error": f"fake server error: {error!r}"}, {})
        if answer is None:
            self.close_connection = True  # closed without a reply
        else:
            self._send(answer)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, answer: Answer) -> None:
        status, body, headers = answer
        payload = json.dumps(body, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class BackgroundServer:
    """Serves `app` on (host, port) from a background thread; port 0 picks a free port."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._connections = 0
        self._open: dict[socket.socket, int] = {}  # open connection -> its number
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._connections

    def reset_count(self) -> None:
        with self._lock:
            self._connections = 0

    def start(self) -> None:
        deadline = time.monotonic() + 2
        while True:
            try:
                server = _Server((self.host, self.port), _Handler)
                break
            except OSError:  # reopening a fixed port just closed: retry a moment
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-server:{self.port}", daemon=True)
        self._thread.start()

    def stop_accepting(self) -> None:
        """Close the listener (new connections are refused); open connections carry on.
        Safe from a handler thread, unlike close()."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._thread = None
        server.shutdown()
        thread.join()
        server.socket.close()

    def close(self) -> None:
        """Stop accepting, close the listener and every open connection, join all threads."""
        self.stop_accepting()
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:  # wakes handlers blocked reading the next keep-alive request
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # closes the listener and joins the handler threads

    def _connected(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._open[sock] = self._connections

    def _number(self, sock: socket.socket) -> int:
        with self._lock:
            return self._open.get(sock, 0)

    def _disconnected(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)
