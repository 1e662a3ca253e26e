"""Makes the shared fakes importable as `tests.python.fakes` however pytest is started.

`python -m pytest` already puts the repository root on sys.path; the `pytest` script does not.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.python.pg import start_postgres  # noqa: E402


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session (tests/python/pg.py); fails when it is not installed."""
    url, stop = start_postgres()
    try:
        yield url
    finally:
        stop()
