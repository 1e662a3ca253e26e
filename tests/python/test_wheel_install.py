"""`pip install llmbill` then `llmbill-proxy` serves: the built wheel goes into a fresh virtualenv
with nothing else, and its entry point answers a health check and a chat call on the embedded
defaults. (Dependencies come from the package index, as for a user.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.python.proxy_harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_plain_install_of_the_wheel_runs_the_proxy(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    # --no-build-isolation reuses this checkout's CMake build directory: seconds, not a full compile.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, timeout=600)
    wheel = next(wheels.glob("llmbill-*.whl"))
    venv = tmp_path / "venv"
    # The venv gets no pip of its own (ensurepip costs seconds): this pip installs into it (--python),
    # without byte-compiling the dependencies (their import compiles what the proxy runs). What the venv
    # holds is the same: the wheel and the dependencies its metadata names, nothing else.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-compile", str(wheel)], check=True, timeout=600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "LLMBILL_", "DATABASE_URL", "VIRTUAL_ENV"))}
    proc = subprocess.Popen([str(venv / "bin" / "llmbill-proxy"), "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "llmbill-proxy did not start"
                time.sleep(0.2)
        req = urllib.request.Request(url + "/chat/completions", method="POST", data=json.dumps(
            {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"authorization": "Bearer sk-1234", "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["choices"][0]["message"]["content"]
            assert r.headers["x-litellm-response-cost"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
