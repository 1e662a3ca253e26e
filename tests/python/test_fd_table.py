"""proxy/fd_table.py: the descriptor table grown once, to the open-files limit (capped)."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
from typing import Any

import pytest

from llmbill.proxy import fd_table


def _in_child(code: str) -> str:
    """A fresh process: this one's table may have been grown already by what ran before."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_presize_grows_the_table_to_the_limit_capped_and_leaves_no_descriptor_open() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(soft, 4096)
    out = _in_child(
        "import os; from llmbill.proxy import fd_table as t; before = t.table_size(); n = len(os.listdir('/proc/self/fd')); "
        f"got = t.presize({want}); print(before, got, t.table_size(), len(os.listdir('/proc/self/fd')) - n)")
    before, got, after, leaked = map(int, out.split())
    assert before < want <= after and got == want and leaked == 0


def test_presize_keeps_below_a_low_limit_and_does_nothing_under_64() -> None:
    out = _in_child(
        "import resource; from llmbill.proxy import fd_table as t; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
        "print(t.presize(), t.table_size()); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
        "print(t.presize())")
    first, second = out.splitlines()
    got, size = map(int, first.split())
    assert got == 300 and 300 <= size < 1024
    assert second == "0"
    assert fd_table.table_size() > 0


def test_a_worker_grows_its_table_at_start_up(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbill.proxy.app import ProxyApp
    from llmbill.proxy.config import load_config_dict

    calls: list[int] = []

    def presize() -> int:
        calls.append(1)
        return 0
    monkeypatch.setattr(fd_table, "presize", presize)
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "general_settings": {"master_key": "sk-master-0123456789abcdef",
                                   "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}}
    app = ProxyApp(load_config_dict(config))
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"] and calls == [1]
