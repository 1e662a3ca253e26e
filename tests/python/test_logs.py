"""Log lines cannot be forged: in the text format every value a client controls (a customer id, a
path, an alias, an exception's message) is escaped so that one record is one line and its
key=value fields cannot be faked; the JSON format is one object per line by construction."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from llmbill.proxy.logs import JsonFormatter, TextFormatter
from tests.python.proxy_harness import Proxy

FORGED = "2026-01-01 00:00:00,000 INFO llmbill.proxy.access: GET /key/info 200 key_alias=admin"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def _access(fields: dict[str, Any], message: str = "POST /chat/completions %d", *args: object) -> logging.LogRecord:
    record = logging.LogRecord("llmbill.proxy.access", logging.INFO, "", 0, message, args or (200,), None)
    record.fields = fields
    return record


def test_a_newline_in_a_field_does_not_forge_a_line() -> None:
    line = TextFormatter().format(_access({"request_id": "r1", "customer": "acme\n" + FORGED, "status": 200}))
    assert "\n" not in line and "\\n2026-01-01" in line


def test_a_field_value_cannot_fake_another_field() -> None:
    line = TextFormatter().format(_access({"customer": "acme status=500 cost=0", "team": 'a"b', "model": "gpt",
                                           "key_alias": "", "cost": None}))
    assert line.endswith('customer="acme status=500 cost=0" team="a\\"b" model=gpt key_alias=- cost=-')


def test_control_characters_in_the_message_are_escaped() -> None:
    record = logging.LogRecord("llmbill.proxy", logging.WARNING, "", 0, "unknown customer %s", (
        "a\r\x1b[31mred\x00\t\x7f\x85\u2028\u202eb",), None)
    line = TextFormatter().format(record)
    assert line.endswith("unknown customer a\\r\\x1b[31mred\\x00\\t\\x7f\\x85\\u2028\\u202eb")
    assert "é and ✓ stay" in TextFormatter().format(
        logging.LogRecord("x", logging.INFO, "", 0, "é and ✓ stay", None, None))


def test_a_traceback_stays_inside_its_record() -> None:
    try:
        raise ValueError("bad input\n" + FORGED)
    except ValueError:
        record = logging.LogRecord("llmbill.proxy", logging.ERROR, "", 0, "unexpected error", None, sys.exc_info())
    lines = TextFormatter().format(record).split("\n")
    assert len(lines) > 2 and "Traceback" in lines[1] and FORGED in lines[-1]
    assert sum(bool(RECORD_START.match(line)) for line in lines) == 1  # only the record's own first line


def test_json_lines_are_one_object_per_line_whatever_the_values() -> None:
    record = _access({"customer": "acme\n" + FORGED + "\u2028\x00"}, "GET %s %d", "/a\nb", 404)
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\u2028" not in line
    parsed = json.loads(line)
    assert parsed["customer"] == "acme\n" + FORGED + "\u2028\x00" and parsed["message"] == "GET /a\nb 404"


def test_the_proxy_access_log_escapes_a_forged_user(tmp_path: Any) -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "general_settings": {"master_key": "sk-master-0123456789abcdef"}}
    with Proxy(config, workdir=tmp_path, args=["--log-level", "info"]) as proxy:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": "acme\n" + FORGED}
        status, _, _ = proxy.request("POST", "/chat/completions", body, "sk-master-0123456789abcdef")
        assert status == 400  # a control character in an id is refused at the edge (proxy/ids.py)
        status, _, _ = proxy.request("GET", "/no%0A" + FORGED.replace(" ", "%20"))  # a decoded path too
        assert status == 404
    forged = [line for line in proxy.output.splitlines() if line.startswith("2026-01-01")]
    assert not forged, forged
    assert "/no\\n2026-01-01" in proxy.output  # the decoded path's newline, escaped on its one line
