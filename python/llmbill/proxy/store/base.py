"""The proxy's storage contract: one interface, two backends (SQLite, PostgreSQL), same behaviour.

Records are plain dicts (JSON-compatible, plus `Decimal` for money and timezone-aware `datetime` for
times). Each entity kind has an id field and a `spend` (exact Decimal USD) that only `apply_spend`
changes, atomically, so many proxy processes can share one database.

Entity kinds and their id field:
    key       token_hash   (sha256 hex of the raw key; the raw key is never stored)
    team      team_id
    user      user_id      (internal users)
    customer  user_id      (end users: the OpenAI `user` field)
    budget    budget_id    (pricing tiers; no spend of their own)
    member    member_id    (a team member's spend in that team: member_id(team_id, user_id); created by
                           the first call of one of its keys, holding nothing but spend and its window)

Indexed fields a `list` may filter on: key: team_id, user_id, key_alias; team: —; user: user_email;
customer: budget_id. Every other field lives in the record and round-trips unchanged.

Every change made through `insert`/`update`/`delete` bumps `version()` and records which (kind, id)
changed in the same transaction, so other processes drop exactly what they hold of it: `changes(since)`
reads them (a short log, CHANGES_KEPT versions), and PostgreSQL also pushes a NOTIFY at commit
(`listen`). Spend changes (apply_spend, the window resets) are not changes: caches re-read spend.
"""

from __future__ import annotations

import abc
import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

Record = dict[str, Any]

KINDS: dict[str, str] = {
    "key": "token_hash",
    "team": "team_id",
    "user": "user_id",
    "customer": "user_id",
    "budget": "budget_id",
    "member": "member_id",
}
UPSERTED = frozenset({"customer", "member"})  # apply_spend creates them when missing
# Budget windows (`budget_reset_at`); a member's runs by its team's `team_member_budget_duration`.
WINDOWED = frozenset({"key", "team", "user", "customer", "member"})
INDEXED: dict[str, tuple[str, ...]] = {
    "key": ("team_id", "user_id", "key_alias"),
    "team": (),
    "user": ("user_email",),
    "customer": ("budget_id",),
    "budget": (),
    "member": (),
}


def member_id(team_id: str, user_id: str) -> str:
    """The id of a team member's spend record: unambiguous whatever characters the two ids hold.

    >>> member_id("t/1", "u")
    '["t/1","u"]'
    """
    return json.dumps([team_id, user_id], separators=(",", ":"), ensure_ascii=False)


class StoreError(Exception):
    """A storage failure (connection lost, constraint broken) the caller reports as a 5xx/503."""


class RecordError(StoreError):
    """A write refused for the data it carries — a value the database cannot store (NUL in text, an
    index entry over its size limit, a number out of range): retrying the same data fails the same way."""


class DuplicateError(StoreError):
    """insert() of an id that exists, or apply_spend() of a log whose request_id is stored (then
    nothing of that batch was applied: it most likely was already, by an earlier attempt)."""


@dataclass
class SpendLog:
    """One row per billed call (GET /spend/logs). Not frozen: one is made per call on the request
    path, and a frozen dataclass's __init__ (object.__setattr__ per field) costs ~3x; never changed
    once made."""

    request_id: str
    call_type: str  # chat_completion | completion | embedding
    model: str  # the model name the client asked for
    api_key: str  # token_hash ("" for the master key)
    user: str  # internal user id of the key
    team_id: str
    end_user: str  # customer
    spend: Decimal
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    start_time: datetime
    end_time: datetime
    status: str  # success
    metadata: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"unpriced": true, "estimated": true}
    response_id: str = ""  # the upstream reply's `id` (chatcmpl-…, msg_…, resp_…); "" when it had none


@dataclass
class SpendBatch:
    """What a flush writes in one transaction: spend increments per (kind, id), and the log rows.

    Customers in `increments` that do not exist yet are created (upserted) with that spend; other
    missing entities are skipped (their record was deleted meanwhile)."""

    increments: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    logs: list[SpendLog] = field(default_factory=list)

    def add(self, kind: str, ident: str, amount: Decimal) -> None:
        if ident:
            key = (kind, ident)
            self.increments[key] = self.increments.get(key, Decimal(0)) + amount

    def __bool__(self) -> bool:
        return bool(self.increments or self.logs)


class Store(abc.ABC):
    """Async storage. Implementations: store.sqlite.SqliteStore, store.postgres.PostgresStore."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects and creates or migrates the schema (idempotent; safe for concurrent processes)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the database answers (readiness)."""

    @abc.abstractmethod
    async def insert(self, kind: str, record: Record) -> Record:
        """Stores a new record (spend 0 unless given); DuplicateError when the id exists."""

    @abc.abstractmethod
    async def get(self, kind: str, ident: str) -> Record | None: ...

    @abc.abstractmethod
    async def update(self, kind: str, ident: str, fields: Mapping[str, Any]) -> Record | None:
        """Merges `fields` into the record (a None value stores None); returns the new record or None
        when absent. `spend` cannot be set here (ValueError: use apply_spend / reset_spend), nor the id."""

    @abc.abstractmethod
    async def delete(self, kind: str, idents: Sequence[str]) -> list[str]:
        """Deletes those that exist; returns their ids."""

    @abc.abstractmethod
    async def list(self, kind: str, filters: Mapping[str, Any] | None = None, offset: int = 0,
                   limit: int | None = None) -> list[Record]:
        """Records matching every filter (equality on INDEXED fields; None matches None), ordered by
        creation."""

    @abc.abstractmethod
    async def apply_spend(self, batch: SpendBatch) -> None:
        """Adds every increment and inserts every log in one transaction (all or nothing).
        Raises DuplicateError when a log's request_id is already stored, RecordError when a value of
        the batch cannot be stored (nothing applied either way)."""

    @abc.abstractmethod
    async def reset_spend(self, kind: str, ident: str, next_reset_at: datetime | None) -> Record | None:
        """Sets spend to 0 and the record's `budget_reset_at` (budget windows); returns the record or
        None when absent.

        Only when a reset is due: if the stored `budget_reset_at` is still in the future, another
        process has already started the new window and nothing changes (the current record is
        returned), so processes that notice the same expiry cannot wipe each other's new spend."""

    async def set_spend(self, kind: str, ident: str, amount: Decimal) -> Record | None:
        """Sets the record's spend to `amount` (an operator's correction or reset, /key/update `spend`);
        returns the record or None when absent. Increments applied later add to it."""
        raise NotImplementedError

    @abc.abstractmethod
    async def spend_logs(self, filters: Mapping[str, Any] | None = None, start: datetime | None = None,
                         end: datetime | None = None, limit: int = 1000) -> builtins.list[SpendLog]:
        """Logs in [start, end) by start_time, newest first; filters: api_key, user, team_id,
        end_user, model, request_id, response_id."""

    # Admin UI sessions (proxy/ui/sessions.py), by the sha256 of the session id; times in ms.
    async def put_ui_session(self, digest: str, csrf: str, expires_ms: int, now_ms: int, keep: int) -> None:
        """Stores a session; drops expired ones, and the oldest while `keep` or more remain."""
        raise NotImplementedError

    async def ui_session(self, digest: str) -> tuple[str, int] | None:
        """(csrf token, expires_ms) of a stored session, expired or not; None when unknown."""
        raise NotImplementedError

    async def end_ui_session(self, digest: str) -> None:
        raise NotImplementedError

    async def count_ui_sessions(self, now_ms: int) -> int:
        raise NotImplementedError

    async def logged_request_ids(self, request_ids: Sequence[str]) -> set[str]:
        """Which of these calls already have a spend log row (the spend journal's recovery applies
        only the others). The default reads them one by one; SQL stores ask once per chunk."""
        found: set[str] = set()
        for rid in request_ids:
            if await self.spend_logs({"request_id": rid}, limit=1):
                found.add(rid)
        return found

    @abc.abstractmethod
    async def insert_many(self, kind: str, records: Sequence[Record]) -> int:
        """Stores new records in one transaction (bulk loads); DuplicateError, and nothing stored, when
        an id exists. Other processes' caches drop every cached record of the kind."""

    @abc.abstractmethod
    async def get_many(self, kind: str, idents: Sequence[str]) -> dict[str, Record]:
        """The records of those ids that exist, by id (a few statements, whatever the count)."""

    @abc.abstractmethod
    async def spends_of(self, kind: str, idents: Sequence[str]) -> dict[str, Decimal]:
        """The spend of those ids that exist, by id, without decoding their records."""

    @abc.abstractmethod
    async def count(self, kind: str, filters: Mapping[str, Any] | None = None) -> int:
        """How many records match (the filters of `list`)."""

    @abc.abstractmethod
    async def reset_windows(self, kind: str, due: Mapping[str, datetime], now: datetime) -> None:
        """Starts the next budget window of each id whose stored `budget_reset_at` is at or before `now`:
        spend 0 and the new reset time `due[id]`. One statement per kind, guarded by the stored time, so
        processes that notice the same expiry cannot wipe each other's new spend."""

    @abc.abstractmethod
    async def start_windows(self, kind: str, starts: Mapping[str, datetime]) -> None:
        """Sets `budget_reset_at` of each id that has none (a window that never started)."""

    @abc.abstractmethod
    async def changes(self, since: int) -> tuple[int, builtins.list[tuple[str, str]] | None]:
        """(the current version, the (kind, id) changed after version `since`). None instead of the list
        when the log no longer holds them all: the caller must forget everything it cached. An id "*"
        stands for every record of its kind (insert_many)."""

    async def listen(self, wake: Callable[[], None]) -> bool:
        """Calls `wake` whenever another process commits a change (PostgreSQL LISTEN). False when the
        backend cannot push (SQLite) or the listening connection cannot be made: poll `changes`."""
        return False

    async def spends(self, kind: str) -> dict[str, Decimal]:
        """Every record's spend by id: what a cache needs to see other processes' spend without
        decoding every record again."""
        return {r[KINDS[kind]]: r["spend"] for r in await self.list(kind)}

    @abc.abstractmethod
    async def version(self) -> int:
        """A number that grows with every insert/update/delete (not with spend)."""
