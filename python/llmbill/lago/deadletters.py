"""Dead letters across every spool slot: list, show, replay, drop — with an audit trail.

A dead letter is an event that was never stored by Lago: Lago refused it for good (a 422 on a field,
a 400), its code is held (not a billable metric in Lago), or the call had no id to charge. Each
keeps the event exactly as built, Lago's reply and the reason.

Replay re-spools the event through a normal pipeline, then removes the letter (in that order: a
crash in between leaves a duplicate that Lago's dedup absorbs, never a loss). Because the event was
never stored, replay may bring it in line with the current settings first ("rebase"): a code no
longer configured becomes the configured code(s), with the transaction ids they imply, and an event
without a charge id takes it from its properties per LAGO_API_CHARGE_BY. Timestamps and properties
never change.

Drop removes a letter for good; the letter is first appended to `<spool base>/deadletters-audit.jsonl`
(mode 0600, with who and when), so even a dropped event can be recovered by hand. Replays are audited too.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import billing
from .._native import core
from . import slots

log = logging.getLogger("llmbill.ops")
AUDIT_FILE = "deadletters-audit.jsonl"


class ReplayRefused(Exception):
    """This letter cannot be replayed as things stand; the message says what to fix."""


@dataclass(frozen=True)
class Letter:
    id: str
    slot: str  # "slot-0"
    file: Path
    event_json: str
    reason: str
    reply: str
    at: float  # Unix seconds

    @property
    def event(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.event_json)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.at)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        event = self.event or {}
        props: dict[str, Any] = event["properties"] if isinstance(event.get("properties"), dict) else {}
        return {"id": self.id, "slot": self.slot, "age_s": round(self.age_s(now), 3), "reason": self.reason,
                "code": event.get("code"), "billed_id": event.get("external_subscription_id"),
                "response_cost": props.get("response_cost"), "at": self.at}

    def to_json(self) -> dict[str, Any]:
        try:
            reply: Any = json.loads(self.reply) if self.reply else None
        except ValueError:
            reply = self.reply
        return {"id": self.id, "slot": self.slot, "file": str(self.file), "at": self.at, "reason": self.reason,
                "reply": reply, "event": self.event if self.event is not None else self.event_json}


class DeadLetterBook:
    """Every slot's dead letters under one spool base (the files may be in use by running proxies:
    the core's store locks them across processes)."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def _stores(self) -> list[tuple[Path, core.DeadLetterStore]]:
        return [(f, core.DeadLetterStore(f)) for f in slots.dead_letter_files(self.base)]

    def letters(self) -> list[Letter]:
        out = [Letter(d["id"], f.parent.name, f, d["event"], d["reason"], d["reply"], d["at"])
               for f, store in self._stores() for d in store.list()]
        return sorted(out, key=lambda letter: (letter.at, letter.slot, letter.id))

    def find(self, ident: str) -> list[Letter]:
        return [letter for letter in self.letters() if letter.id == ident]

    def ids(self) -> dict[str, str]:
        """transaction id -> reason, for every letter (reconciliation marks these)."""
        return {letter.id: letter.reason for letter in self.letters()}

    def count_and_oldest(self, now: float | None = None) -> tuple[int, float | None]:
        """How many letters, and the age in seconds of the oldest (None when there is none)."""
        count, oldest = 0, None
        for _, store in self._stores():
            count += store.count()
            at = store.oldest_at()
            if at is not None and (oldest is None or at < oldest):
                oldest = at
        return count, (None if oldest is None else max(0.0, (time.time() if now is None else now) - oldest))

    def remove(self, letter: Letter) -> bool:
        """Removes this letter; a newer letter with the same id (the replayed event refused again)
        stays."""
        return core.DeadLetterStore(letter.file).remove(letter.id, letter.at)

    def audit(self, action: str, letter: Letter, **extra: Any) -> None:
        """Appends one line to the audit file (fsynced before the caller changes anything)."""
        self.base.mkdir(parents=True, exist_ok=True)
        entry = {"at": time.time(), "action": action, "by": f"{getpass.getuser()}@{socket.gethostname()}",
                 "id": letter.id, "slot": letter.slot, "reason": letter.reason, "reply": letter.reply,
                 "event": letter.event_json, **extra}
        # Owner only, like the spool and the letters: the entries hold whole events (customers, amounts).
        fd = os.open(self.base / AUDIT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # a file made by an older version
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def drop(self, ident: str) -> list[Letter]:
        """Removes every letter with this id, each audited (event kept in the audit file) and logged."""
        dropped = []
        for letter in self.find(ident):
            self.audit("drop", letter)
            if self.remove(letter):
                log.warning("dead letter %s (%s) dropped by %s: %s", letter.id, letter.slot, getpass.getuser(),
                            letter.reason)
                dropped.append(letter)
        return dropped


def rebase(letter: Letter, settings: billing.LagoSettings) -> list[str]:
    """The event(s) to send for this letter under the current settings (see the module docstring).
    The letter's own JSON, byte for byte, when nothing needs to change. Raises ReplayRefused."""
    event = letter.event
    if event is None or not isinstance(event.get("transaction_id"), str) or not isinstance(event.get("code"), str):
        raise ReplayRefused(f"{letter.id}: the dead letter does not hold a Lago event; drop it")
    codes = settings.event_codes
    old_code, old_id = event["code"], event["transaction_id"]
    base_id = old_id[: -len(old_code) - 1] if old_id.endswith(":" + old_code) else old_id
    targets = [old_code] if old_code in codes else list(codes)
    subscription = event.get("external_subscription_id")
    if not isinstance(subscription, str) or not subscription:
        props: dict[str, Any] = event["properties"] if isinstance(event.get("properties"), dict) else {}
        subscription = props.get(settings.charge_by)
        if not isinstance(subscription, str) or not subscription:
            raise ReplayRefused(f"{letter.id}: the call has no {settings.charge_by} to charge "
                                f"(LAGO_API_CHARGE_BY={settings.charge_by}); change the setting, or drop the letter")
    out = []
    for code in targets:
        new_id = base_id if len(codes) == 1 else f"{base_id}:{code}"
        if (code, new_id, subscription) == (old_code, old_id, event.get("external_subscription_id")):
            out.append(letter.event_json)  # unchanged: resent exactly as built
            continue
        out.append(json.dumps({**event, "transaction_id": new_id, "code": code,
                               "external_subscription_id": subscription, "external_customer_id": subscription},
                              separators=(",", ":")))
    return out


@dataclass
class ReplayOutcome:
    letter: Letter
    sent: list[str]  # transaction ids re-spooled
    refused: str = ""  # why it was not replayed


def replay(book: DeadLetterBook, letters: list[Letter], pipeline: core.Pipeline, settings: billing.LagoSettings,
           unknown_codes: frozenset[str] = frozenset(),
           inactive: frozenset[str] = frozenset()) -> list[ReplayOutcome]:
    """Re-spools each letter's event(s) through `pipeline`, then removes the letter (audited).

    A letter whose target code is in `unknown_codes` (not a billable metric in Lago), or whose billed
    id is in `inactive` (no active subscription), is refused: Lago would store it and never bill it,
    and its transaction id would then be taken for good.
    """
    outcomes = []
    for letter in letters:
        try:
            events = rebase(letter, settings)
            held = sorted({json.loads(e)["code"] for e in events} & unknown_codes)
            if held:
                raise ReplayRefused(f"{letter.id}: code {', '.join(held)} is still not a billable metric in Lago; "
                                    "create it in Lago or fix LAGO_API_EVENT_CODE first")
            missing = sorted({json.loads(e).get("external_subscription_id") for e in events} & inactive)
            if missing:
                raise ReplayRefused(f"{letter.id}: Lago still has no active subscription {', '.join(missing)}; "
                                    "create it first (Lago would store the event and never bill it)")
        except ReplayRefused as exc:
            outcomes.append(ReplayOutcome(letter, [], str(exc)))
            continue
        for event in events:
            pipeline.submit_event(event)  # spooled (durable) before the letter goes
        sent = [json.loads(e)["transaction_id"] for e in events]
        book.audit("replay", letter, sent=sent)
        book.remove(letter)
        outcomes.append(ReplayOutcome(letter, sent))
    return outcomes
