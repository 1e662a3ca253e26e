"""The floor of llmbill-proxy's stack: a pass-through with nothing of llmbill's request path.

The same server (uvicorn on uvloop with llmbill's one-write httptools protocol) and the same upstream
client (llmbill.proxy.httpclient, pooled keep-alive) as llmbill-proxy, and nothing else: no key, no
guard, no admission, no usage, no cost, no spool, no spend, no metrics. A POST is forwarded with its
body unchanged and the reply returned as it came (a stream relayed read by read, pushed the way the
proxy's relay pushes it). What llmbill-proxy adds over this system in the same run is the cost of
its own work; what this system adds over the direct path is the cost of a Python hop on this stack.

    .venv/bin/python bench/floor_proxy.py --upstream http://127.0.0.1:PORT/v1 --port N
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from llmbill.proxy.httpclient import Target
from llmbill.proxy.httpclient_pool import Client
from llmbill.proxy.server_protocol import OneWriteHttpToolsProtocol, body_writer


class FloorApp:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.client = Client()
        self.targets: dict[str, Target] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":  # the harness's health check
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        path = scope["path"].removeprefix("/v1")
        target = self.targets.get(path)
        if target is None:
            target = self.targets[path] = Target(self.upstream + path, {"content-type": "application/json"})
        reply = await self.client.post(target, body)
        if not reply.content_type.startswith("text/event-stream"):
            data = await reply.read()
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": [(b"content-type", reply.content_type.encode()),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(b"content-type", b"text/event-stream")]})
        writer = body_writer(send)
        assert writer is not None
        await reply.pipe(writer.write, 600, writer.drain)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(FloorApp(args.upstream), host="127.0.0.1", port=args.port, loop="uvloop",
                http=OneWriteHttpToolsProtocol, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
