"""Starts the real `llmbill-proxy` process for end-to-end tests, on a free port, with its own
directory (database, spool, events file), and stops it with SIGTERM (a clean shutdown flushes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    def __init__(self, config: dict[str, Any] | None, env: dict[str, str] | None = None,
                 workdir: Path | None = None, workers: int = 1, args: list[str] | None = None) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="llmbill-proxy-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = self.dir / "config.yaml"
            self.config_path.write_text(yaml.safe_dump(config))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "LLMBILL_", "DATABASE_URL", "REDIS_"))}
        self.env.update({"LLMBILL_SPOOL_DIR": str(self.dir / "spool")})
        self.env.update(env or {})
        self.workers = workers
        self.args = list(args or [])  # more llmbill-proxy options, e.g. ["--log-format", "json"]
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        """Everything the proxy printed so far (read continuously by a background thread)."""
        return "".join(self._lines)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    def start(self, timeout: float = 30) -> Proxy:
        cmd = [sys.executable, "-m", "llmbill.proxy.cli", "--port", str(self.port), "--host", "127.0.0.1",
               "--workers", str(self.workers)]
        if self.config_path:
            cmd += ["--config", str(self.config_path)]
        cmd += self.args
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.output}")
            # Up when every worker has said so (each prints "worker <pid> ready") and answers.
            if self.output.count(" ready (spool ") >= self.workers:
                try:
                    with urllib.request.urlopen(self.url + "/health/liveliness", timeout=1) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"proxy did not come up in {timeout}s:\n{self.output}")

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
            self._reader = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.output

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        output = self.stop()
        if exc_type is not None:  # a failing test shows what the proxy said
            print(f"--- llmbill-proxy output ({self.url}) ---\n{output[-4000:]}", file=sys.stderr)

    def request(self, method: str, path: str, body: Any = None, key: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        """curl-style raw HTTP: returns (status, parsed JSON or text, headers)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"content-type": "application/json", **(headers or {})}
        if key:
            h["authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                return r.status, _parse(text), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            e.close()
            return e.code, _parse(text), {k.lower(): v for k, v in e.headers.items()}


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
