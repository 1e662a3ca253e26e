"""Spool slots: each process that sends events (a proxy worker, an operator command) owns one
`<spool base>/slot-N/` directory, the first one whose lock is free, with its spool and its
`deadletters.jsonl`. A process that opens a slot a dead one left sends what that one had spooled.

The base is `LLMBILL_SPOOL_DIR`, else `spool/` beside the proxy's SQLite database (or in the working
directory for PostgreSQL) — the operator commands find the proxy's slots the same way.

>>> spool_base("sqlite:////var/lib/llmbill/llmbill.db", env={})
PosixPath('/var/lib/llmbill/spool')
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .. import billing
from .._native import core

MAX_SPOOL_SLOTS = 64
DEAD_LETTER_FILE = "deadletters.jsonl"
_SLOT = re.compile(r"slot-(\d+)\Z")


def state_dir(database_url: str) -> Path:
    """Where the proxy keeps its files: beside a SQLite database, else the working directory."""
    if database_url.startswith("sqlite:///"):
        return Path(database_url[len("sqlite:///"):]).parent
    return Path(os.getcwd())


def spool_base(database_url: str, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("LLMBILL_SPOOL_DIR") or state_dir(database_url) / "spool")


def sink_file(settings: billing.LagoSettings, database_url: str, env: Mapping[str, str] | None = None) -> Path:
    """The JSON-lines file events go to when LAGO_API_BASE is unset."""
    env = os.environ if env is None else env
    return settings.sink_file if env.get("LLMBILL_SINK_FILE") else state_dir(database_url) / "lago-events.jsonl"


def hold_free_slot(base: Path) -> tuple[int, Path]:
    """For a process that sends nothing to Lago but journals its spend (proxy/spend_journal.py): the
    first slot no other process holds, locked the way the spool locks it (flock on `slot-N/LOCK`),
    so no other process — with billing on or off — writes or recovers that slot's journal while this
    one lives. Returns the open descriptor (the lock lasts until it is closed) and the slot."""
    for slot in range(MAX_SPOOL_SLOTS):
        slot_dir = base / f"slot-{slot}"
        slot_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(slot_dir / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd, slot_dir
    raise core.Error(f"no free spool slot under {base}")


def slot_dirs(base: Path) -> list[Path]:
    """The slot directories that exist under `base`, in slot order."""
    try:
        found = [p for p in base.iterdir() if p.is_dir() and _SLOT.match(p.name)]
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda p: int(p.name[len("slot-"):]))


def dead_letter_files(base: Path) -> list[Path]:
    return [d / DEAD_LETTER_FILE for d in slot_dirs(base) if (d / DEAD_LETTER_FILE).exists()]


def open_free_slot(settings: billing.LagoSettings, base: Path, sink: Path,
                   gate: bool = False) -> tuple[core.Pipeline, Path]:
    """A pipeline on the first slot no other process holds (it recovers what the slot's spool holds)."""
    last: Exception | None = None
    for slot in range(MAX_SPOOL_SLOTS):
        slot_dir = base / f"slot-{slot}"
        try:
            pipeline = billing.open_pipeline(dataclasses.replace(settings, spool_dir=slot_dir, sink_file=sink), gate)
        except core.Error as exc:
            if "in use by another" in str(exc):
                last = exc
                continue
            raise
        return pipeline, slot_dir
    raise core.Error(f"no free spool slot under {base}: {last}")
