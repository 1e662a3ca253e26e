"""Driving upstream's retry loop directly (test_routing.py, test_request_fields.py): a send that fails
once with a chosen error, then answers, recording each attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from llmbill.proxy import upstream
from llmbill.proxy.deployments import Deployment


class FailingOnce:
    def __init__(self) -> None:
        self.sent: list[str] = []  # the error type of each attempt

    def send(self, error: Exception) -> Callable[[], Awaitable[str]]:
        async def once() -> str:
            self.sent.append(type(error).__name__)
            if len(self.sent) == 1:
                raise error
            return "answered"
        return once


async def _keep(result: str) -> None:
    return None


def retrying(d: Deployment, send: Callable[[], Awaitable[str]]) -> str:
    """upstream's retry loop around `send` for deployment `d`, answered as a 200."""
    return asyncio.run(upstream._retrying(d, send, lambda r: (200, None), _keep))
