"""A throwaway PostgreSQL server for tests, from Debian's `postgresql` package (no systemd needed).

    url, stop = start_postgres()      # initdb + pg_ctl start on a free port, fsync off
    db = create_database(url, "t1")   # a fresh, empty database on that server
    stop()                            # pg_ctl stop, then the cluster directory is removed

The cluster lives in a `tempfile.mkdtemp()` directory owned by `postgres` (initdb refuses to run as
root; pytest's tmp_path is not reachable by that user), in RAM (/dev/shm) when there is room: a
session makes ~100 databases of 7.5 MB each, and on disk (ext4 mounted with `discard` here, busy with
other writers) creating one took 75-160 ms instead of ~50 and removing the cluster at the end of a
whole run took 96 s. Missing binaries raise: a test that needs PostgreSQL fails rather than skips (CI
installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PG_ROOT = Path("/usr/lib/postgresql")


def bin_dir() -> Path:
    """The newest installed server's bin directory ($LLMBILL_PG_BIN overrides)."""
    override = os.environ.get("LLMBILL_PG_BIN")
    found = [Path(override)] if override else sorted(
        (p for p in PG_ROOT.glob("*/bin") if p.parent.name.isdigit()), key=lambda p: int(p.parent.name))
    for path in reversed(found):
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    raise RuntimeError(f"PostgreSQL server binaries not found in {override or PG_ROOT / '*/bin'}: "
                       "apt-get install postgresql (or set LLMBILL_PG_BIN)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SHM_NEEDED = 3 * 2**30  # a whole session's cluster is ~1 GB; a container's default /dev/shm is 64 MB


def _cluster_parent() -> str | None:
    """/dev/shm when it is writable with room for a session's cluster (thrown away: RAM is enough),
    else None (tempfile's default directory)."""
    shm = "/dev/shm"
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)):
        return None
    fs = os.statvfs(shm)
    return shm if fs.f_bavail * fs.f_frsize >= SHM_NEEDED else None


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def start_postgres(settings: str = "") -> tuple[str, Callable[[], None]]:
    """Starts a server; returns the URL of its `postgres` database (user postgres, no password) and a
    function that stops it and deletes its files. `settings`: more `-c name=value` options, after (so
    over) the ones below."""
    pg = bin_dir()
    root = tempfile.mkdtemp(prefix="llmbill-pg-", dir=_cluster_parent())
    data, log = f"{root}/data", f"{root}/server.log"
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]

    def stop() -> None:
        try:
            if Path(data, "postmaster.pid").exists():  # immediate: no shutdown checkpoint of data deleted next
                _run([*as_postgres, str(pg / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(root, ignore_errors=True)

    try:
        _run([*as_postgres, str(pg / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync",
              "-E", "UTF8", "--locale=C.UTF-8"])
        for attempt in range(3):  # another process may take the free port before the server does
            port = _free_port()
            # max_wal_size: each CREATE DATABASE writes its 7.5 MB template to the WAL; recycling the
            # WAL early keeps the RAM the cluster takes to its databases.
            options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=64MB -c min_wal_size=32MB "
                       + settings)
            try:
                _run([*as_postgres, str(pg / "pg_ctl"), "-D", data, "-o", options, "-l", log, "-w", "start"])
                break
            except RuntimeError:
                if attempt == 2:
                    raise
    except RuntimeError as exc:
        server_log = Path(log).read_text(errors="replace")[-2000:] if Path(log).exists() else ""
        stop()
        raise RuntimeError(f"{exc}\n{server_log}") from None
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def create_database(url: str, name: str) -> str:
    """Creates database `name` on the server of `url`; returns its URL."""
    parts = urlsplit(url)
    _run([str(bin_dir() / "createdb"), "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
          "-U", parts.username or "postgres", name])
    return urlunsplit(parts._replace(path=f"/{name}"))
