"""Makes the shared fakes importable as `tests.python.fakes` however pytest is started, and holds
the fixtures the Lago end-to-end tests share (a fake Lago, pipelines that are always closed).

`python -m pytest` already puts the repository root on sys.path; the `pytest` script does not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

# Every call the guard book admits is planned the slow way too and the two compared (proxy/guard_book.py),
# in this process and in every proxy a test starts: the whole suite checks the book against the plan.
os.environ["LLMBILL_GUARDS_ORACLE"] = "1"

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

if TYPE_CHECKING:
    from llmbill._core import Pipeline
    from tests.python.fakes.lago import FakeLago


@pytest.fixture
def fake_lago() -> Iterator[FakeLago]:
    """A strict fake Lago on a free loopback port, key `lago_support.KEY`, stopped afterwards."""
    from tests.python.fakes.lago import FakeLago
    from tests.python.lago_support import KEY

    with FakeLago(api_key=KEY) as lago:
        yield lago


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """A factory of llmbill Pipelines with test-speed timings (see `lago_support.FAST`), spooling
    under tmp_path/spool unless told otherwise. Every pipeline it made is closed at teardown."""
    import llmbill
    from tests.python.lago_support import FAST

    opened: list[Pipeline] = []

    def make(**options: Any) -> Pipeline:
        settings: dict[str, Any] = {"spool_dir": tmp_path / "spool", **FAST, **options}
        pipeline = llmbill.Pipeline(**settings)
        opened.append(pipeline)
        return pipeline

    yield make
    for pipeline in reversed(opened):
        pipeline.close(0.5)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session (tests/python/pg.py); fails when it is not installed."""
    from tests.python.pg import start_postgres

    url, stop = start_postgres()
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A Redis server for the whole session (tests/python/redis_server.py); fails when not installed."""
    from tests.python.redis_server import RedisServer

    server = RedisServer.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    """The session's Redis, emptied for this test."""
    if redis_server.process is None:
        redis_server.restart()
    redis_server.flush()
    url: str = redis_server.url
    return url


@pytest.fixture
def upstream() -> Iterator[Any]:
    """A fake OpenAI-compatible upstream (tests/python/fakes/openai_upstream.py), stopped afterwards."""
    from tests.python.fakes.openai_upstream import FakeOpenAI

    with FakeOpenAI() as up:
        yield up


@pytest.fixture
def lago() -> Iterator[Any]:
    """The fake Lago the proxy tests bill into: key "lago-key", with the billable metric
    "openai_tokens" they send (the proxy holds events of a code Lago does not know)."""
    from tests.python.fakes.lago import FakeLago

    with FakeLago(api_key="lago-key") as fake:
        fake.add_metric("openai_tokens")
        yield fake
