"""Many raw HTTP/1.1 requests to a local proxy, fast: a few keep-alive connections in one asyncio
loop, requests as bytes (so a test can send what no HTTP library would: bad UTF-8, odd headers).

    replies = send_all(proxy.port, [http_request("GET", "/health/liveliness")] * 100)
    assert all(r.status == 200 for r in replies)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    index: int  # position of the request in the list sent
    status: int  # 0 when the connection broke before a reply
    body: bytes
    headers: dict[str, str]  # lower-case names


def http_request(method: str, path: str, body: bytes | None = None,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """One request as bytes; `path` may carry a query string (sent as given)."""
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if body is not None:
        lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    for line in head.strip().split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "chunked" not in headers.get("transfer-encoding", ""):
        return status, await reader.readexactly(int(headers.get("content-length", "0"))), headers
    parts = []
    while True:  # a streamed reply (SSE): chunks until the zero-length one
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return status, b"".join(parts), headers
        parts.append(data[:-2])


async def _connection(port: int, work: Iterator[tuple[int, bytes]], out: list[Reply], timeout: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, raw in work:
            try:
                writer.write(raw)
                status, body, headers = await asyncio.wait_for(_read_reply(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                # The server closed this connection (as it may on a malformed request): a new one.
                out.append(Reply(index, 0, b"", {}))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            out.append(Reply(index, status, body, headers))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def send_all(port: int, requests: Sequence[bytes], connections: int = 16, timeout: float = 30.0) -> list[Reply]:
    """Sends every request (each connection takes the next one when its reply is in); replies in the
    order of `requests`."""
    work = iter(enumerate(requests))
    out: list[Reply] = []

    async def main() -> None:
        await asyncio.gather(*(_connection(port, work, out, timeout) for _ in range(connections)))

    asyncio.run(main())
    return sorted(out, key=lambda r: r.index)
