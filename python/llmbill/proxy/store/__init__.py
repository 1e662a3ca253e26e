"""The proxy's storage: `open_store(url)` picks the backend; base.Store is the contract.

>>> open_store("sqlite:///llmbill.db").path
'llmbill.db'
"""

from __future__ import annotations

from .base import INDEXED as INDEXED
from .base import KINDS as KINDS
from .base import DuplicateError as DuplicateError
from .base import Record as Record
from .base import RecordError as RecordError
from .base import SpendBatch as SpendBatch
from .base import SpendLog as SpendLog
from .base import Store as Store
from .base import member_id as member_id
from .base import StoreError as StoreError
from .codec import redact_url

__all__ = ["INDEXED", "KINDS", "DuplicateError", "Record", "RecordError", "SpendBatch", "SpendLog", "Store",
           "StoreError", "member_id", "open_store"]

_SQLITE = "sqlite:///"


def open_store(url: str) -> Store:
    """A store for `url`, not yet opened (call `await store.open()`).

    `sqlite:///relative.db`, `sqlite:////absolute/path.db` or `postgresql://user:pass@host/db`
    (`postgres://` too); anything else raises ValueError naming the URL (without its password).
    The PostgreSQL backend imports asyncpg only when asked for.
    """
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        from .sqlite import SqliteStore

        return SqliteStore(url[len(_SQLITE):])
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {redact_url(url)!r}: expected sqlite:///path or "
                     "postgresql://user@host/db")
