"""The process-wide billing pipeline, configured from the environment the way LiteLLM's Lago logger is.

Environment:
    LAGO_API_BASE        Lago's URL (with or without /api/v1). Unset: events go to a local JSON-lines
                         file, LLMBILL_SINK_FILE (default <spool dir>/../events.jsonl).
    LAGO_API_KEY         Lago API key (Bearer).
    LAGO_API_EVENT_CODE  the billable metric code(s), comma-separated; required with LAGO_API_BASE.
    LAGO_API_CHARGE_BY   end_user_id (default), user_id or team_id: the id billed.
    LAGO_CHECK_SUBSCRIPTIONS  1: the proxy sends a billed id's events only once Lago has an active
                         subscription with that external_id (checked by its watcher, never on the
                         request path); the events of an id without one are held as dead letters.
    LAGO_AUTO_PROVISION_PLAN  a plan code: such an id gets its Lago customer and subscription on this
                         plan instead (implies LAGO_CHECK_SUBSCRIPTIONS).
    LLMBILL_SPOOL_DIR    the durable spool (default ~/.local/state/llmbill/spool).
    LLMBILL_FSYNC        always | interval (default) | never;  LLMBILL_FSYNC_INTERVAL_MS (default 20).
    LLMBILL_SPOOL_MAX_BYTES  disk bound of the spool (default 1 GiB).
    LLMBILL_SPOOL_RESERVE_BYTES  room kept free, under that bound and on the filesystem, for calls
                         already admitted (default 4 MiB, at most a quarter of the bound): while it is
                         not free, `Pipeline.can_accept()` is false and the proxy refuses billable calls.
    LLMBILL_EXIT_FLUSH_SECONDS  how long interpreter exit waits for delivery (default 5).

Delivery is guaranteed by the spool, not by waiting: `flush()` waits for Lago, `close()` stops the
sender and leaves the rest on disk for the next start. An event the spool cannot take (the disk
filled after the call was admitted) is held in memory and retried until it is durable; ask
`get_pipeline().can_accept()` before billable work to refuse it while that is so.

>>> settings = LagoSettings.from_env({"LAGO_API_CHARGE_BY": "team_id"})
>>> settings.charge_by
'team_id'
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._native import core
from .errors import Error

CHARGE_BY = ("end_user_id", "user_id", "team_id")
FSYNC = ("always", "interval", "never")


class ConfigError(Error):
    """A setting with a wrong value; the message names the setting."""


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llmbill"


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name}: must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class LagoSettings:
    api_base: str
    api_key: str = field(repr=False)  # a secret stays out of reprs (tracebacks, debug output)
    event_codes: tuple[str, ...]
    charge_by: str
    spool_dir: Path
    sink_file: Path
    fsync: str
    fsync_interval_s: float
    max_spool_bytes: int
    exit_flush_s: float
    spool_reserve_bytes: int = 4 << 20
    check_subscriptions: bool = False  # LAGO_CHECK_SUBSCRIPTIONS (or a provisioning plan)
    provision_plan: str = ""  # LAGO_AUTO_PROVISION_PLAN

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LagoSettings:
        env = os.environ if env is None else env
        api_base = env.get("LAGO_API_BASE", "").strip()
        codes = tuple(c.strip() for c in env.get("LAGO_API_EVENT_CODE", "").split(",") if c.strip())
        if api_base and not codes:
            raise ConfigError("LAGO_API_EVENT_CODE: required with LAGO_API_BASE (the billable metric's code)")
        charge_by = env.get("LAGO_API_CHARGE_BY", "").strip() or "end_user_id"
        if charge_by not in CHARGE_BY:
            raise ConfigError(f"LAGO_API_CHARGE_BY: {charge_by!r} is not one of {', '.join(CHARGE_BY)}")
        fsync = env.get("LLMBILL_FSYNC", "interval").strip()
        if fsync not in FSYNC:
            raise ConfigError(f"LLMBILL_FSYNC: {fsync!r} is not one of {', '.join(FSYNC)}")
        spool_dir = Path(env.get("LLMBILL_SPOOL_DIR") or _default_state_dir() / "spool")
        sink = Path(env.get("LLMBILL_SINK_FILE") or spool_dir.parent / "events.jsonl")
        plan = env.get("LAGO_AUTO_PROVISION_PLAN", "").strip()
        check = env.get("LAGO_CHECK_SUBSCRIPTIONS", "").strip().lower()
        if check not in ("", "0", "1", "true", "false"):
            raise ConfigError(f"LAGO_CHECK_SUBSCRIPTIONS: expected 1 or 0, got {check!r}")
        if (plan or check in ("1", "true")) and not api_base:
            raise ConfigError("LAGO_CHECK_SUBSCRIPTIONS / LAGO_AUTO_PROVISION_PLAN: need LAGO_API_BASE (a Lago to ask)")
        return cls(
            api_base=api_base,
            api_key=env.get("LAGO_API_KEY", ""),
            event_codes=codes or ("llm_usage",),
            charge_by=charge_by,
            spool_dir=spool_dir,
            sink_file=sink,
            fsync=fsync,
            fsync_interval_s=_number(env, "LLMBILL_FSYNC_INTERVAL_MS", 20) / 1000,
            max_spool_bytes=int(_number(env, "LLMBILL_SPOOL_MAX_BYTES", 1 << 30)),
            exit_flush_s=_number(env, "LLMBILL_EXIT_FLUSH_SECONDS", 5),
            spool_reserve_bytes=int(_number(env, "LLMBILL_SPOOL_RESERVE_BYTES", 4 << 20)),
            check_subscriptions=bool(plan) or check in ("1", "true"),
            provision_plan=plan,
        )

    def describe(self) -> str:
        target = f"Lago {self.api_base}" if self.api_base else f"file {self.sink_file}"
        return f"{target} (code {','.join(self.event_codes)}, charge by {self.charge_by}, spool {self.spool_dir})"


def open_pipeline(settings: LagoSettings, gate: bool = False) -> core.Pipeline:
    """A new pipeline for these settings (recovers what the spool holds and starts sending). `gate`:
    hold each billed id's events until a watcher says whether Lago has its subscription (only a
    process that runs that watcher, the proxy, may ask for it)."""
    return core.Pipeline(
        spool_dir=settings.spool_dir,
        event_codes=list(settings.event_codes),
        charge_by=settings.charge_by,
        api_base=settings.api_base,
        api_key=settings.api_key,
        sink_file=settings.sink_file,
        fsync=settings.fsync,
        fsync_interval=settings.fsync_interval_s,
        max_spool_bytes=settings.max_spool_bytes,
        spool_reserve_bytes=settings.spool_reserve_bytes,
        gate_subscriptions=gate and settings.check_subscriptions,
    )


_lock = threading.Lock()
_pipeline: core.Pipeline | None = None
_exit_flush_s = 5.0


def get_pipeline() -> core.Pipeline:
    """The process-wide pipeline, opened from the environment on first use; closed at exit."""
    global _pipeline, _exit_flush_s
    with _lock:
        if _pipeline is None:
            settings = LagoSettings.from_env()
            _pipeline = open_pipeline(settings)
            _exit_flush_s = settings.exit_flush_s
        return _pipeline


def flush(timeout: float = 10.0) -> bool:
    """Waits until every event so far is delivered (or dead-lettered). False on timeout."""
    with _lock:
        pipeline = _pipeline
    return True if pipeline is None else pipeline.flush(timeout)


log = logging.getLogger("llmbill")


def close_pipeline(pipeline: core.Pipeline, timeout: float) -> bool:
    """Closes a pipeline and logs, as errors, what its close could not keep: events still held in
    memory that the spool could not take even then (their calls need `llmbill reconcile --fix`), or
    a failed final fsync. Nothing else reads the pipeline's warnings at exit."""
    done = pipeline.close(timeout)
    for warning in pipeline.warnings():
        if warning.startswith("billing pipeline:"):
            log.error("%s", warning)
    return done


def close(timeout: float | None = None) -> bool:
    """Flushes within `timeout` and stops the sender; undelivered events stay in the spool."""
    global _pipeline
    with _lock:
        pipeline, _pipeline = _pipeline, None
    if pipeline is None:
        return True
    return close_pipeline(pipeline, _exit_flush_s if timeout is None else timeout)


atexit.register(close)
