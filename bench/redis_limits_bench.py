"""What Redis adds to one call's admission and release (proxy/redis_limits.py), at c=1.

    .venv/bin/python bench/redis_limits_bench.py [--calls 5000] [--rounds 5] [--redis-url URL] [--json F]

Each round times `calls` admissions + releases of a call with a key, user, team and customer slot
(rpm, parallel and a budget on each) twice, interleaved: once in this process's Limiter, once in
Redis (one EVALSHA to admit; the release's EVALSHA is awaited too, so its cost is counted here even
though the proxy runs it behind the reply). Added p50 = p50(redis) − p50(in-process). Without
--redis-url a redis-server (Debian's) is started on a free port. The load average is recorded with
the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbill.proxy.limits import InProcess, Limiter, Slot  # noqa: E402
from llmbill.proxy.redis_limits import RedisLimiter, connect  # noqa: E402

SLOTS = [Slot((kind, f"{kind}-1"), Decimal("0.0001"), Decimal("1000000"), rpm=10**9, parallel=10**6)
         for kind in ("key", "user", "team", "customer")]


async def timed(limits: InProcess | RedisLimiter, n: int, tag: str) -> tuple[list[float], list[float]]:
    """(admission alone, admission + release) per call."""
    out, admits = [], []
    for i in range(n):
        t = time.perf_counter()
        assert await limits.admit(f"{tag}{i}", SLOTS) is None
        admits.append(time.perf_counter() - t)
        if isinstance(limits, RedisLimiter):
            await limits._run_release(f"{tag}{i}", SLOTS, 10, Decimal("0.00005"))
        else:
            limits.release(f"{tag}{i}", SLOTS, 10)
        out.append(time.perf_counter() - t)
    return admits, out


async def main(args: argparse.Namespace) -> dict[str, object]:
    server = None
    url = args.redis_url
    if url is None:
        from tests.python.redis_server import RedisServer
        server = RedisServer.start()
        url = server.url
    redis = connect(url, 600, "fail_closed", Limiter())
    local = InProcess(Limiter())
    rounds = []
    try:
        await timed(redis, 500, "warm")
        for r in range(args.rounds):
            la, a = await timed(local, args.calls, f"l{r}-")
            ra, b = await timed(redis, args.calls, f"r{r}-")
            rounds.append({"in_process_p50_ms": statistics.median(a) * 1e3, "redis_p50_ms": statistics.median(b) * 1e3,
                           "admit_added_p50_ms": (statistics.median(ra) - statistics.median(la)) * 1e3})
    finally:
        await redis.close()
        if server is not None:
            server.close()
    added = statistics.median(float(r["redis_p50_ms"]) - float(r["in_process_p50_ms"]) for r in rounds)
    admit = statistics.median(r["admit_added_p50_ms"] for r in rounds)
    return {"rounds": rounds, "added_p50_ms": added, "admit_added_p50_ms": admit, "loadavg": os.getloadavg(), "cpus": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url")
    parser.add_argument("--json")
    result = asyncio.run(main(parser.parse_args()))
    text = json.dumps(result, indent=2)
    print(text)
    if parser.parse_args().json:
        Path(parser.parse_args().json).write_text(text)
