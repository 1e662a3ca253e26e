"""Wrong master keys at /ui/login, remembered per client so one client's flood cannot lock out the
others, in bounded memory.

The login route tests the key first: the right key is always accepted, from any client, whatever
was refused before (behind a load balancer every browser may share one address, the attacker's
too). This limit therefore does not slow a guesser down — the master key's length does that, and
`Authorization: Bearer` on any route accepts it without a limit anyway. What it bounds is the
work and the warnings a flood of wrong keys costs: a limited client is answered 429 with
Retry-After, and logged once rather than once per attempt.

A client is its address; an IPv6 client is its /64 prefix, since one host may hold all of it.

>>> wrong = WrongKeys(limit=2, window_s=60)
>>> wrong.note("192.0.2.1", now=0.0), wrong.note("192.0.2.1", now=1.0)
(False, True)
>>> wrong.retry_after("192.0.2.1", now=30.0), wrong.retry_after("192.0.2.2", now=30.0)
(30.0, 0.0)
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque

from ..http import Request

MAX_WRONG_PER_MINUTE = 10  # per client
MAX_CLIENTS = 4096  # clients remembered at once; the least recently wrong is forgotten first
UNKNOWN_CLIENT = "(unknown)"  # no address in the ASGI scope (a Unix socket): one client for all


def client_of(request: Request) -> str:
    """The client a wrong key is counted against."""
    client = request.scope.get("client")
    host = client[0] if client else None
    if not isinstance(host, str):
        return UNKNOWN_CLIENT
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)  # an IPv4 client of a dual-stack socket
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class WrongKeys:
    def __init__(self, limit: int = MAX_WRONG_PER_MINUTE, window_s: float = 60.0,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.limit, self.window_s, self.max_clients = limit, window_s, max_clients
        # Per client, the times of its last `limit` wrong keys (older ones cannot matter).
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until `client` may be told again whether a key is wrong; 0 when it may now."""
        times = self._times.get(client)
        if times is None or len(times) < self.limit:
            return 0.0
        now = time.time() if now is None else now
        return max(0.0, times[0] + self.window_s - now)

    def note(self, client: str, now: float | None = None) -> bool:
        """Counts a wrong key; True when it is the one that reaches the limit (log that once)."""
        now = time.time() if now is None else now
        times = self._times.pop(client, None)
        if times is None:
            times = deque(maxlen=self.limit)
        times.append(now)
        self._times[client] = times  # the most recently wrong go last
        while len(self._times) > self.max_clients:
            self._times.popitem(last=False)
        return len(times) == self.limit and self.retry_after(client, now) > 0

    def __len__(self) -> int:
        return len(self._times)
