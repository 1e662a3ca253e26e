"""Logging for the proxy: plain text for people, or one JSON object per line for log shippers
(`llmbill-proxy --log-format json`). Records may carry `fields` (a dict, e.g. the access line's):
text appends them as key=value, JSON puts them at the top level.

Values come from clients (a customer id, a path, an alias): a text line escapes their control
characters and quotes field values, so a newline cannot forge a record nor a blank a field; JSON
escapes by construction. Both formats mask the passwords of URLs (redact.py) in messages and
tracebacks, whichever library logged them.

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
import re
import sys
from datetime import datetime, timezone
from typing import Any

from .. import redact

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


# What a text line must not carry raw: C0 and C1 controls and DEL (a newline would start a forged
# record, an escape sequence would rewrite the operator's terminal), Unicode's line and paragraph
# separators, and the bidirectional overrides that make text read differently than it is stored.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    c = match[0]
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(value: str) -> str:
    """`value` on one line, its control characters written as Python escapes (\\n, \\x1b, \\u2028).
    Backslashes are kept as they are: the point is one record per line, not a reversible encoding."""
    return value if value.isprintable() else _CONTROL.sub(_escape_char, value)


def _field(value: Any) -> str:
    """A key=value field's value, logfmt-style: `-` when empty; quoted when it holds a blank, `=`,
    `"` or a control character (a customer id `acme status=500` must not read as a second field),
    with `\\` and `"` escaped inside the quotes so that no value can close them early."""
    if value is None or value == "":
        return "-"
    text = str(value)
    if " " in text or "=" in text or '"' in text or not text.isprintable():
        return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    return text


class TextFormatter(logging.Formatter):
    """One record per line: `<time> <LEVEL> <logger>: <message> key=value ...`, every value escaped
    and URLs' passwords masked. A traceback follows on lines indented by two blanks, so that only a
    record's first line starts at the left margin whatever an exception's message holds."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(redact.text(record.getMessage()))
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extra = " ".join(f"{k}={_field(v)}" for k, v in _fields(record).items())
        if extra:
            line = f"{line} {extra}"
        trace = _trace(self, record)
        if trace:
            line += "".join("\n  " + escape(part) for part in redact.text(trace).split("\n"))
        return line


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's exception and stack, as logging.Formatter.format would append them."""
    parts = []
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: json.dumps escapes every control character (and, with its default
    ensure_ascii, U+2028/U+2029), so a value cannot break the line. URLs' passwords are masked."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "message": redact.text(record.getMessage())}
        out.update(_fields(record))
        trace = _trace(self, record)
        if trace:
            out["exception"] = redact.text(trace)
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
