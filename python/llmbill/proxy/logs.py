"""Logging for the proxy: plain text for people, or one JSON object per line for log shippers
(`llmbill-proxy --log-format json`). Records may carry `fields` (a dict, e.g. the access line's):
text appends them as key=value, JSON puts them at the top level.

Workers started by uvicorn are fresh processes: they configure logging from LLMBILL_LOG_LEVEL and
LLMBILL_LOG_FORMAT, which `llmbill-proxy` sets.

>>> record = logging.LogRecord("llmbill.proxy.access", logging.INFO, "", 0, "GET /models 200", None, None)
>>> record.fields = {"request_id": "r1", "status": 200}
>>> line = json.loads(JsonFormatter().format(record))
>>> line["message"], line["request_id"], line["status"]
('GET /models 200', 'r1', 200)
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={'-' if v is None or v == '' else v}" for k, v in _fields(record).items())
        return f"{line} {extra}" if extra else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "message": record.getMessage()}
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "warning", fmt: str = "text") -> None:
    """One handler on stderr for every logger (uvicorn's too), in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_from_env() -> None:
    level = os.environ.get("LLMBILL_LOG_LEVEL", "warning")
    fmt = os.environ.get("LLMBILL_LOG_FORMAT", "text")
    configure(level if level in LEVELS else "warning", fmt if fmt in FORMATS else "text")
