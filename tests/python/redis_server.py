"""A throwaway Redis for tests, from Debian's `redis-server` package (no systemd needed).

    server = RedisServer.start()   # on a free port, no persistence, files in a temp directory
    server.url                     # redis://127.0.0.1:PORT/0
    server.stop(); server.restart()  # to test what the proxy does while Redis is down
    server.close()                 # stops it and removes its directory

A missing binary raises: a test that needs Redis fails rather than skips (scripts/deps installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    port: int
    root: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server (scripts/deps)")
        server = cls(_free_port(), tempfile.mkdtemp(prefix="llmbill-redis-"))
        server.restart()
        return server

    def restart(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.root, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # polls until it answers: it listens before it loads dump.rdb
            if self._loaded():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _loaded(self) -> bool:
        """True once the server answers with its data loaded: a caller may then delete dump.rdb, and
        no client gets -LOADING. It answers only from its event loop, which starts after the load."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"INFO persistence\r\n")
                return b"loading:0" in s.recv(65536)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def flush(self) -> None:
        """Empties every key (tests share one server)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(64)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
