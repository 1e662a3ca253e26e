"""What Redis adds to one call's admission and release (proxy/redis_limits.py), at c=1, and where it goes.

    .venv/bin/python bench/redis_limits_bench.py [--calls 5000] [--rounds 5] [--redis-url URL] [--json F]

Each round times `calls` operations of each of these, in an order rotated round by round (the machine
drifts, so every figure is a median over rounds of a per-round difference):

- raw: a PING round trip on a bare asyncio stream (the floor: loop wake-ups, syscalls, Redis itself);
- ping: redis-py's `ping()` (its pool and command path);
- noop: redis-py's EVALSHA of `return 1` (`Script`, as redis_limits.py called it before);
- wire: an admission's arguments packed and sent by redis_limits_wire.py to a script that returns at
  once (our client path, and Redis taking the arguments);
- in_process: admission (+ release) of a call with a key, user, team and customer slot (rpm, parallel
  and a budget on each, the headroom a little lower each call) in this process's Limiter;
- redis: the same in Redis, with no tickets (one EVALSHA to admit; the release's EVALSHA is awaited
  too, so its cost is counted here though the proxy runs it behind the reply);
- tickets: the same as the proxy runs it: tickets on (redis_tickets.py), the confirmation back
  before the next call, the release carried by the next admission.

Added p50 = p50(redis admission) − p50(in_process admission): what a call that must wait for Redis
pays; tickets_admit_added: what a call pays as the proxy runs it (the figure of the target, ≤ 0.1 ms).
Shares: floor = raw; redis-py's command path = ping − raw; its script call = noop − ping; our client
path = wire − raw; our script = redis − wire. Apart from the timed rounds, the scripts' time inside
Redis is read from `INFO commandstats` (mean usec per EVALSHA over `calls` admissions, then their
releases: a mean, so a loaded machine's preemptions inflate it), and the admission's packed size and
packing time are reported. Without --redis-url a redis-server (Debian's) is started on a free port.
The load average is recorded with the figures: the machine is shared. 
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbill.proxy.limits import InProcess, Limiter, Slot  # noqa: E402
from llmbill.proxy.redis_limits import RedisLimiter, connect  # noqa: E402

try:
    from llmbill.proxy.redis_limits_wire import Script
except ImportError:  # code from before the packed path, run for a "before" figure
    Script = None  # type: ignore[assignment,misc]

KINDS = ("key", "user", "team", "customer")
UPPER_BOUND, COST = Decimal("0.0001"), Decimal("0.00005")
PHASES = ("raw", "ping", "noop", "wire", "in_process", "redis", "tickets")
NO_RELEASES: tuple[int, list[bytes]] = (0, [])


def slots(i: int) -> list[Slot]:
    """A call's slots; each headroom a little lower than the last call's, as spend grows."""
    return [Slot((kind, f"{kind}-1"), UPPER_BOUND, Decimal(1000000) - i * COST, rpm=10**9, parallel=10**6)
            for kind in KINDS]


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


async def timed(op: Callable[[int], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t)
    return out


async def release(redis: RedisLimiter, call_id: str, call: list[Slot]) -> None:
    """A release, awaited (the proxy runs it behind the reply). With tickets, as at concurrency 1 in
    the proxy: the confirmation of the call is back before the next call comes (its upstream took
    longer), and the release waits for the next admission to carry it."""
    redis.release(call_id, call, 10, COST)
    if redis.tickets.on:
        while redis._pending:
            await asyncio.gather(*redis._pending)
    else:
        await redis.flush_releases()


async def timed_limits(limits: InProcess | RedisLimiter, n: int, tag: str) -> tuple[list[float], list[float]]:
    """(admission alone, admission + release) per call."""
    out, admits = [], []
    for i in range(n):
        call = slots(i)
        t = time.perf_counter()
        assert await limits.admit(f"{tag}{i}", call) is None
        admits.append(time.perf_counter() - t)
        if isinstance(limits, RedisLimiter):
            await release(limits, f"{tag}{i}", call)
        else:
            limits.release(f"{tag}{i}", call, 10)
        out.append(time.perf_counter() - t)
    return admits, out


async def evalsha_usec(redis: RedisLimiter, run: Callable[[], Awaitable[None]]) -> float:
    """usec per EVALSHA inside Redis while `run` runs (from INFO commandstats, before and after)."""
    def stat(info: dict[str, Any]) -> tuple[int, int]:
        s = info.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        return int(s["calls"]), int(s["usec"])
    calls0, usec0 = stat(await redis.client.info("commandstats"))
    await run()
    calls1, usec1 = stat(await redis.client.info("commandstats"))
    return (usec1 - usec0) / max(calls1 - calls0, 1)


async def server_side(redis: RedisLimiter, noop: Any, n: int) -> dict[str, float]:
    async def admits() -> None:
        for i in range(n):
            await redis.admit(f"s{i}", slots(i))

    async def releases() -> None:
        for i in range(n):
            await release(redis, f"s{i}", slots(i))

    async def noops() -> None:
        for _ in range(n):
            await noop()
    return {"admit_usec": await evalsha_usec(redis, admits), "release_usec": await evalsha_usec(redis, releases),
            "noop_usec": await evalsha_usec(redis, noops)}


def packing(redis: RedisLimiter, n: int) -> dict[str, float]:
    count, body, _ = redis.args.admit("p", slots(0), None, lambda s: None, NO_RELEASES)
    calls = [slots(i) for i in range(n)]
    t = time.perf_counter()
    for i in range(n):
        redis.args.admit(f"p{i}", calls[i], None, lambda s: None, NO_RELEASES)
    return {"admit_args": 3 + count, "admit_bytes": len(body) + len(redis._admit.head) + 6,
            "admit_pack_us": (time.perf_counter() - t) / n * 1e6}


def shares(rounds: list[dict[str, float]], med: Callable[[Callable[[dict[str, float]], float]], float]
           ) -> dict[str, float]:
    """Where the admission's time goes (ms, medians over rounds of per-round differences)."""
    out = {"floor_raw_round_trip": med(lambda r: r["raw"]),
           "redis_py_command_path": med(lambda r: r["ping"] - r["raw"]),
           "redis_py_script_call": med(lambda r: r["noop"] - r["ping"]),
           "admission_above_floor": med(lambda r: r["redis_admit"] - r["in_process_admit"] - r["raw"])}
    if "wire" in rounds[0]:
        out["our_client_path"] = med(lambda r: r["wire"] - r["raw"])  # packing, wire, an empty script's run
        out["our_script"] = med(lambda r: r["redis_admit"] - r["wire"])  # ADMIT's run in Redis
    else:
        out["ours_above_redis_py_noop"] = med(lambda r: r["redis_admit"] - r["noop"])
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    url = args.redis_url
    if url is None:
        from tests.python.redis_server import RedisServer
        server = RedisServer.start()
        url = server.url
    redis = connect(url, 600, "fail_closed", Limiter(), tickets=False)  # every admission waits for Redis
    ticketed = connect(url, 600, "fail_closed", Limiter())  # as the proxy runs it
    local = InProcess(Limiter())
    noop = redis.client.register_script("return 1")
    kwargs = redis.client.connection_pool.connection_kwargs
    host, port = kwargs["host"], kwargs["port"]
    reader, writer = await asyncio.open_connection(host, port)

    async def raw(_: int) -> None:
        writer.write(b"PING\r\n")
        await reader.readexactly(7)  # +PONG\r\n

    async def ping(_: int) -> None:
        await redis.client.ping()

    async def script(_: int) -> None:
        await noop()

    wire = getattr(redis, "wire", None)  # absent before the packed path (a "before" run): phase skipped
    empty = Script("return {}") if wire is not None else None

    async def wire_empty(i: int) -> None:
        assert wire is not None and empty is not None
        await wire.run(empty, *redis.args.admit(f"w{i}", slots(i), None, lambda s: None, NO_RELEASES)[:2])

    rounds: list[dict[str, float]] = []
    try:
        await timed_limits(redis, 500, "warm")
        await timed_limits(ticketed, 500, "warm-t")
        phases = PHASES if wire is not None else tuple(p for p in PHASES if p != "wire")
        ops = {"raw": raw, "ping": ping, "noop": script, "wire": wire_empty}
        for phase in phases:
            if phase in ops:
                await timed(ops[phase], 500)
        for r in range(args.rounds):
            got: dict[str, float] = {}
            order = phases[r % len(phases):] + phases[:r % len(phases)]
            for phase in order:
                if phase in ("in_process", "redis", "tickets"):
                    limits: InProcess | RedisLimiter = local if phase == "in_process" else (
                        redis if phase == "redis" else ticketed)
                    admits, both = await timed_limits(limits, args.calls, f"{phase}{r}-")
                    got[f"{phase}_admit"], got[f"{phase}_admit_release"] = p50_ms(admits), p50_ms(both)
                else:
                    got[phase] = p50_ms(await timed(ops[phase], args.calls))
            rounds.append(got)
        server_usec = await server_side(redis, noop, args.calls)
        packed = packing(redis, args.calls)
    finally:
        writer.close()
        await redis.close()
        await ticketed.close()
        if server is not None:
            server.close()

    def med(f: Callable[[dict[str, float]], float]) -> float:
        return round(statistics.median(f(r) for r in rounds), 4)
    return {
        "p50_ms": {k: med(lambda r, k=k: r[k]) for k in rounds[0]},  # type: ignore[misc]
        "admit_added_p50_ms": med(lambda r: r["redis_admit"] - r["in_process_admit"]),
        "admit_release_added_p50_ms": med(lambda r: r["redis_admit_release"] - r["in_process_admit_release"]),
        "tickets_admit_added_p50_ms": med(lambda r: r["tickets_admit"] - r["in_process_admit"]),
        "shares_ms": shares(rounds, med),
        "inside_redis_usec": {k: round(v, 2) for k, v in server_usec.items()},
        "packing": {k: round(v, 2) for k, v in packed.items()},
        "rounds": rounds, "calls": args.calls, "loadavg": os.getloadavg(), "cpus": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url")
    parser.add_argument("--json")
    parsed = parser.parse_args()
    load_before = os.getloadavg()
    result = asyncio.run(main(parsed))
    result["loadavg_before"] = load_before
    text = json.dumps(result, indent=2)
    print(text)
    if parsed.json:
        Path(parsed.json).write_text(text)
