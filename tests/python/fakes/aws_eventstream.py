"""An encoder of AWS event-stream messages (`application/vnd.amazon.eventstream`), the framing of
Bedrock's ConverseStream, so the fake Bedrock answers with real binary frames.

One message:

    total length (u32) | headers length (u32) | prelude CRC32 (u32, of the 8 bytes before)
    headers: name length (u8) | name | value type (u8, 7 = string) | value length (u16) | value
    payload
    message CRC32 (u32, of everything before it)

All integers big-endian. Tests decode these frames with botocore's parser, so the encoder and the
adapter's decoder are checked against a third party, not against each other.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

_STRING = 7


def encode_headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        out += struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    head = encode_headers(headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """A ConverseStream event frame, e.g. event("messageStart", {"role": "assistant"})."""
    return encode_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                          json.dumps(payload, separators=(",", ":")).encode())


def exception(exception_type: str, message: str) -> bytes:
    """An exception frame in the stream, e.g. exception("throttlingException", "Too many requests")."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())
