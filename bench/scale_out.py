"""Two llmbill proxies plus Redis on one PostgreSQL, under load (issue 16): limits admitted against
those configured, budget overshoot, and throughput beside one proxy with and without Redis.

    .venv/bin/python bench/scale_out.py [--workers 1] [--rpm 300] [--parallel 8] [--hold 1.0]
        [--parallel-seconds 6] [--budget 0.05] [--concurrency 200] [--tp-concurrency 8,64]
        [--tp-seconds 5] [--rounds 3] [--out F.json]

Everything runs on this machine as its own process: PostgreSQL (tests/python/pg.py, fsync off),
Debian's redis-server (tests/python/redis_server.py), bench/fake_openai (C++, the fast upstream:
12 + 7 tokens a call; built here with the bench preset if missing), and proxies A and B (llmbill-proxy,
`--workers` each) on one database with `general_settings.redis_url`. A third proxy, C, runs on its own
database of the same server without Redis: the throughput baseline. Billing to Lago is off (no
callbacks); spend goes to the database. A "slow" deployment points at a FakeOpenAI (tests/python/fakes)
in this process that holds every call `--hold` seconds and counts the calls inside it at once.

  A  rpm        a key with rpm_limit R; 2R calls at --concurrency, spread over A and B, inside one
                UTC minute (the run waits for a minute with 20 s left): admitted must be R exactly
  B  parallel   a key with max_parallel_requests P on the slow deployment; --concurrency clients
                over A and B for --parallel-seconds, a refused client sending again at once: the
                peak of calls held at the upstream at once must be P (a held call is inside its
                slot, so the upstream never sees more in flight than the proxies admitted)
  C  budget     a key with max_budget B, then a customer (`user`) with max_budget B: 1.2 B worth of
                calls at --concurrency over A and B, then, each after the settled-cost hold (4 s),
                bursts of --concurrency calls until one admits nothing and the budget refused some
                of it. Then one call at a time on each proxy, each stopping at its first budget
                refusal, in rounds after the hold until one admits nothing: what the parallel calls
                left unspent. Spend read from the database; overshoot = spend − B in units of one
                call's upper bound (llmbill's own upper_bound_cost on the body sent): must be ≤ 1
  throughput    wrk (one thread per proxy, keep-alive) on a key with max_budget and rpm_limit and a
                customer with max_budget, so every call goes through Redis: A and B together (half
                the connections each), A alone, C alone (no Redis); --rounds rounds, the order rotated
                each round, --tp-seconds each. req/s, p50, CPU per call of the proxies, Redis, PostgreSQL

After each limit phase, what Redis still holds for calls that have ended is read (in-flight slots and
budget reservations expiring later than a settled cost's hold): a release that failed leaves its
slot or reservation there for an hour, and the budget or parallel limit is that much smaller.

The run exits 1 if a limit admitted other than its value, a call was refused with another status
than its limit's (429, or 422 for a budget), a budget was overshot by more than one call's upper
bound or refused while a whole upper bound still fitted, the database's spend differs from the sum
of the replies' cost headers, or a throughput call failed. The machine is shared: `uptime` is
recorded before each phase and with every throughput point. Not run in CI nor by bench/run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import proxy_bench as pb  # noqa: E402
from tests.python.fakes.openai_upstream import FakeOpenAI  # noqa: E402
from tests.python.http_load import http_request  # noqa: E402
from tests.python.pg import create_database, start_postgres  # noqa: E402
from tests.python.redis_server import RedisServer  # noqa: E402

from llmbill.proxy.errors import BUDGET_EXCEEDED_STATUS  # noqa: E402

MASTER = "sk-bench-scaleout-" + os.urandom(8).hex()
PRICES = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}  # 12 + 7 tokens: $0.000026 a call
MAX_TOKENS = 10
SETTLED_HOLD_S = 4.0  # redis_limits.py: a settled call's cost stands in Redis this long


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def log(msg: str) -> None:
    print(f"[scale_out {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def body(model: str, user: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say hello."}],
                           "max_tokens": MAX_TOKENS}
    if user is not None:
        out["user"] = user
    return out


# ---- the upstream that holds calls ----------------------------------------------------------------

class HeldUpstream(FakeOpenAI):
    """FakeOpenAI holding every call `hold` seconds; counts the calls inside it at once (peak, and the
    time-weighted mean since `reset`)."""

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.delay = hold
        self._gauge = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._gauge:
            self.inside, self.peak, self.area, self.since = 0, 0, 0.0, time.monotonic()
            self.last = self.since
            self.requests.clear()

    def _move(self, by: int) -> None:
        with self._gauge:
            now = time.monotonic()
            self.area += self.inside * (now - self.last)
            self.last = now
            self.inside += by
            self.peak = max(self.peak, self.inside)

    def mean_inside(self) -> float:
        self._move(0)
        return self.area / max(1e-9, self.last - self.since)

    def _handle(self, h: Any, path: str, body: dict[str, Any]) -> None:
        self._move(1)
        try:
            super()._handle(h, path, body)
        finally:
            self._move(-1)


# ---- load: many keep-alive connections over several proxies, one asyncio loop ---------------------

@dataclass(frozen=True)
class Outcome:
    proxy: int  # index into the ports hammered
    status: int  # 0: the connection broke
    cost: Decimal | None  # x-litellm-response-cost of a 200


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, dict[str, str]]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "content-length" not in headers:  # every reply of these routes has one (no streams are asked for)
        raise ValueError(f"reply without content-length: {head[:200]!r}")
    await reader.readexactly(int(headers["content-length"]))
    return int(head.split(b" ", 2)[1]), headers


async def _connection(index: int, port: int, raw: bytes, go: Callable[[], bool], out: list[Outcome],
                      stop_on: int | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        status = 0
        while status != stop_on and go():
            try:
                status, headers = await asyncio.wait_for(_exchange(reader, writer, raw), 120)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                out.append(Outcome(index, 0, None))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            cost = headers.get("x-litellm-response-cost")
            out.append(Outcome(index, status, Decimal(cost) if status == 200 and cost is not None else None))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def hammer(ports: list[int], auth: str, payload: dict[str, Any], conns: int, *, count: int | None = None,
           seconds: float | None = None, stop_on: int | None = None) -> tuple[list[Outcome], float]:
    """`conns` connections, connection i on ports[i % len(ports)], each sending the same call again as
    soon as its reply is in, until `count` calls were sent or `seconds` passed (a call in flight then is
    still waited for); a connection stops at its first reply of status `stop_on`. Returns the outcomes
    and the wall time."""
    raw = http_request("POST", "/chat/completions", json.dumps(payload).encode(),
                       [(b"authorization", f"Bearer {auth}".encode()), (b"content-type", b"application/json")])
    sent = 0
    deadline = time.monotonic() + seconds if seconds is not None else math.inf

    def go() -> bool:
        nonlocal sent
        if (count is not None and sent >= count) or time.monotonic() >= deadline:
            return False
        sent += 1
        return True

    out: list[Outcome] = []

    async def main() -> None:
        await asyncio.gather(*(_connection(i % len(ports), ports[i % len(ports)], raw, go, out, stop_on)
                               for i in range(conns)))

    started = time.monotonic()
    asyncio.run(main())
    return out, time.monotonic() - started


def tally(outcomes: list[Outcome], proxies: int) -> dict[str, Any]:
    statuses = Counter(o.status for o in outcomes)
    return {"sent": len(outcomes), "admitted": statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "admitted_per_proxy": [sum(1 for o in outcomes if o.status == 200 and o.proxy == p) for p in range(proxies)]}


# ---- processes ------------------------------------------------------------------------------------

@dataclass
class Proxy:
    name: str
    child: pb.Child
    port: int
    database_url: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, reply = pb.http("POST", self.url + path, payload, MASTER)
        if status != 200:
            raise RuntimeError(f"{self.name}: {path} → {status} {reply}")
        result: dict[str, Any] = reply
        return result

    def key(self, **fields: Any) -> str:
        return str(self.admin("/key/generate", fields)["key"])


def config(fast_port: int, slow_port: int, database_url: str, redis_url: str | None) -> dict[str, Any]:
    general: dict[str, Any] = {"master_key": MASTER, "database_url": database_url}
    if redis_url:
        general["redis_url"] = redis_url
    return {"model_list": [
        {"model_name": "fast", "litellm_params": {"model": "openai/fast", "api_base": f"http://127.0.0.1:{fast_port}/v1",
                                                  "api_key": "sk-upstream-fake", **PRICES}},
        {"model_name": "slow", "litellm_params": {"model": "openai/slow", "api_base": f"http://127.0.0.1:{slow_port}/v1",
                                                  "api_key": "sk-upstream-fake", "timeout": 60, **PRICES}}],
        "litellm_settings": {"callbacks": []}, "general_settings": general}


def start_proxy(name: str, cfg: dict[str, Any], work: Path, workers: int) -> Proxy:
    workdir = work / name
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    port = pb._free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "LLMBILL_", "DATABASE_URL", "REDIS_"))}
    env["LLMBILL_SPOOL_DIR"] = str(workdir / "spool")
    logfile = workdir / "proxy.log"
    child = pb.Child(name, [str(ROOT / ".venv" / "bin" / "llmbill-proxy"), "--config", str(workdir / "config.yaml"),
                            "--port", str(port), "--host", "127.0.0.1", "--workers", str(workers)],
                     env=env, cwd=workdir, log_path=logfile)
    deadline = time.monotonic() + 90
    while logfile.read_text(errors="replace").count(" ready (spool ") < workers:  # every worker up
        if child.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{logfile.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    pb.wait_healthy(f"http://127.0.0.1:{port}", child, 30)
    return Proxy(name, child, port, cfg["general_settings"]["database_url"])


def ensure_fake_openai() -> Path:
    exe = pb.BIN / "fake_openai"
    if not exe.exists():
        log("building fake_openai (cmake --preset bench; only that target)")
        subprocess.run(["cmake", "--preset", "bench"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", "--preset", "bench", "--target", "fake_openai"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return exe


async def _spend(url: str, kind: str, ident: str) -> Decimal:
    from llmbill.proxy.store import open_store

    store = open_store(url)
    await store.open()
    try:
        return (await store.spends_of(kind, [ident])).get(ident, Decimal(0))
    finally:
        await store.close()


def spend_in_database(url: str, kind: str, ident: str) -> Decimal:
    return asyncio.run(_spend(url, kind, ident))


def upper_bound(cfg: dict[str, Any], payload: dict[str, Any]) -> Decimal:
    """One call's upper bound, as the proxy reserves it (its own function, on the body sent)."""
    from llmbill.proxy.config import load_config_dict
    from llmbill.proxy.upper_bound import upper_bound_cost

    deployment = next(d for d in load_config_dict(cfg).deployments if d.model_name == payload["model"])
    return upper_bound_cost(deployment, "chat", payload).cost


def leftovers(redis_url: str) -> dict[str, Any]:
    """What Redis still holds for calls that ended (call only when none is in flight): entries of the
    entities' indexes of calls in flight (`y:` sets, members 'call:reserved nano-units', lua/entity.lua)
    expiring later than a settled cost's hold would. Each is a call whose release never ran: it takes a
    parallel slot and its reservation until its TTL (an hour) passes. By entity ("kind:id", ids shortened)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        seconds, micros = client.time()
        now = seconds + micros / 1e6
        out: dict[str, Any] = {}
        for name in client.scan_iter(match="llmbill:y:*", count=1000):
            entity = name.decode()[10:].replace("\x1f", ":")[:24]
            members = client.zrangebyscore(name, now + 2 * SETTLED_HOLD_S, "+inf")
            stale = [m for m in members if isinstance(m, bytes) and m]  # "" at +inf keeps the set
            if stale:
                reserved = sum(Decimal(int(m.rsplit(b":", 1)[1])) for m in stale) * Decimal("1e-9")
                out[entity] = {"parallel_slots": len(stale), "reservations": sum(not m.endswith(b":0") for m in stale),
                               "reserved_usd": str(reserved)}
        return out
    finally:
        client.close()


# ---- phases ---------------------------------------------------------------------------------------

def wait_for_minute(left_needed: float) -> None:
    """rpm windows are UTC minutes (Redis's clock, this machine's): a burst must start and end in one."""
    left = 60 - time.time() % 60
    if left < left_needed:
        log(f"waiting {left:.0f} s for the next UTC minute")
        time.sleep(left + 0.2)


def phase_rpm(a: Proxy, b: Proxy, args: argparse.Namespace) -> dict[str, Any]:
    key = a.key(rpm_limit=args.rpm, key_alias="bench-rpm")
    wait_for_minute(20)
    minute = int(time.time() // 60)
    # Proxy B reads the key created through A on its first call (on demand, from the database).
    outcomes, wall = hammer([a.port, b.port], key, body("fast"), args.concurrency, count=2 * args.rpm)
    one_minute = int(time.time() // 60) == minute
    result = {"rpm_limit": args.rpm, "sent_at_concurrency": args.concurrency, "seconds": round(wall, 2),
              "req_per_s": round(len(outcomes) / wall, 1), "one_utc_minute": one_minute, **tally(outcomes, 2)}
    result["exact"] = one_minute and result["admitted"] == args.rpm
    return result


def phase_parallel(a: Proxy, b: Proxy, held: HeldUpstream, args: argparse.Namespace) -> dict[str, Any]:
    key = a.key(max_parallel_requests=args.parallel, key_alias="bench-parallel")
    held.reset()
    outcomes, wall = hammer([a.port, b.port], key, body("slow"), args.concurrency, seconds=args.parallel_seconds)
    return {"max_parallel_requests": args.parallel, "hold_s": args.hold, "clients": args.concurrency,
            "seconds": round(wall, 2), "peak_in_flight_at_upstream": held.peak,
            "mean_in_flight_at_upstream": round(held.mean_inside(), 2), "upstream_calls": len(held.requests),
            "exact": held.peak == args.parallel, **tally(outcomes, 2)}


def phase_budget(a: Proxy, b: Proxy, kind: str, cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    budget = Decimal(args.budget)
    if kind == "key":
        auth = a.key(max_budget=str(budget), key_alias="bench-budget")
        payload, ident = body("fast"), hashlib.sha256(auth.encode()).hexdigest()
    else:
        ident = "bench-budget-customer"
        a.admin("/customer/new", {"user_id": ident, "max_budget": str(budget)})
        auth = a.key(key_alias="bench-budget-customer-key")
        payload = body("fast", ident)
    bound = upper_bound(cfg, payload)
    per_call = Decimal("0.000026")  # 12 x 1e-6 + 7 x 2e-6 (checked against the replies' cost headers below)
    ports = [a.port, b.port]
    outcomes: list[Outcome] = []

    def rounds(conns: int, first: int, then: int, stop_on: int | None) -> list[dict[str, Any]]:
        """Bursts until one admits nothing and the budget refused some of it; between two, the settled
        costs' hold passes (until then a process counts a settled call twice, refusing early)."""
        out: list[dict[str, Any]] = []
        for i in range(30):
            if i:
                time.sleep(SETTLED_HOLD_S + 1)
            got, wall = hammer(ports, auth, payload, conns, count=first if i == 0 else then, stop_on=stop_on)
            outcomes.extend(got)
            out.append({"seconds": round(wall, 2), **tally(got, 2)})
            if out[-1]["admitted"] == 0 and str(BUDGET_EXCEEDED_STATUS) in out[-1]["statuses"]:
                break
        return out

    # The measured part: --concurrency calls at once until refused, 20 % past the budget at first.
    parallel = rounds(args.concurrency, math.ceil(budget / per_call * Decimal("1.2")), args.concurrency, None)
    time.sleep(2)  # the last spend flush (every 0.5 s) is in the database
    after_parallel = spend_in_database(a.database_url, kind, ident)
    # Then one call at a time on each proxy, each stopping at its first budget refusal: what is left
    # shows whether the parallel calls were refused for the budget, or early (by a held cost, a 503).
    drain = rounds(2, 10_000, 10_000, BUDGET_EXCEEDED_STATUS)
    time.sleep(2)
    spend = spend_in_database(a.database_url, kind, ident)
    headers = sum((o.cost for o in outcomes if o.cost is not None), Decimal(0))
    return {"entity": kind, "max_budget": str(budget), "call_cost": str(per_call), "call_upper_bound": str(bound),
            "call_costs_seen": sorted({str(o.cost) for o in outcomes if o.cost is not None}),
            "clients": args.concurrency, "parallel_bursts": parallel, "sequential_rounds": drain,
            "admitted_parallel": sum(r["admitted"] for r in parallel),
            "admitted_sequential": sum(r["admitted"] for r in drain),
            "spend_after_parallel": str(after_parallel), "spend_in_database": str(spend),
            "sum_of_cost_headers": str(headers), "spend_equals_headers": spend == headers,
            "overshoot": str(spend - budget), "overshoot_in_upper_bounds": round(float((spend - budget) / bound), 3),
            "within_one_upper_bound": spend - budget <= bound,
            # Refused while a whole call's upper bound still fitted: a reservation was never given back.
            "refused_early": budget - spend >= bound,
            "left_after_parallel_in_upper_bounds": round(float((budget - after_parallel) / bound), 3),
            **tally(outcomes, 2)}


def idle(pids: Callable[[], list[int]], limit: float = 30) -> None:
    """Until the proxies are idle (under 5 % of a core over 0.25 s): a point must not inherit queued work."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = pb.cpu_seconds(pids())
        time.sleep(0.25)
        if pb.cpu_seconds(pids()) - before < 0.0125:
            return


def phase_throughput(a: Proxy, b: Proxy, c: Proxy, redis: RedisServer, pg_port: int, args: argparse.Namespace,
                     work: Path) -> dict[str, Any]:
    payload = body("fast", "bench-tp-customer")
    body_file = work / "tp-body.json"
    body_file.write_text(json.dumps(payload))
    auth: dict[str, str] = {}
    for p in (a, c):  # A and B share a database; C has its own
        p.admin("/customer/new", {"user_id": "bench-tp-customer", "max_budget": 1_000_000})
        auth[p.database_url] = "Bearer " + p.key(max_budget=1_000_000, rpm_limit=10**9, key_alias="bench-tp")
    systems = {"2 proxies + Redis": [a, b], "1 proxy + Redis": [a], "1 proxy, no Redis": [c]}
    names = list(systems)
    redis_pid = redis.process.pid if redis.process is not None else 0

    def pids(ps: list[Proxy]) -> list[int]:
        return [pid for p in ps for pid in pb.children(p.child.pid)]

    def run(ps: list[Proxy], conns: int, seconds: float, tag: str) -> list[dict[str, Any]]:
        each = max(1, conns // len(ps))
        with ThreadPoolExecutor(len(ps)) as pool:
            return list(pool.map(lambda p: pb.wrk(p.url, auth[p.database_url], body_file, each, seconds,
                                                  work / f"wrk-{tag}-{p.name}.json"), ps))

    def point(r: int, conns: int, name: str) -> dict[str, Any]:
        ps = systems[name]
        idle(lambda: pids([a, b, c]))
        load = float(Path("/proc/loadavg").read_text().split()[0])
        db = pb.postgres_pids(pg_port)
        before = pb.cpu_seconds(pids(ps)), pb.cpu_seconds([redis_pid]), pb.cpu_seconds(db)
        out = run(ps, conns, args.tp_seconds, f"{r}-{conns}")
        after = pb.cpu_seconds(pids(ps)), pb.cpu_seconds([redis_pid]), pb.cpu_seconds(db)
        requests = sum(w["requests"] for w in out)
        errors = Counter[str]()
        for w in out:
            errors.update({k: v for k, v in w["errors"].items() if v})
        per_req = [round(1000 * (y - x) / max(1, requests), 3) for x, y in zip(before, after)]
        return {"round": r, "concurrency": conns, "system": name, "load1": load, "requests": requests,
                "req_per_s": round(requests / (max(w["duration_us"] for w in out) / 1e6), 1),
                "p50_ms": [round(w["latency_us"]["p50"] / 1000, 2) for w in out],
                "p99_ms": [round(w["latency_us"]["p99"] / 1000, 2) for w in out], "errors": dict(errors),
                "proxy_cpu_ms_per_req": per_req[0], "redis_cpu_ms_per_req": per_req[1], "db_cpu_ms_per_req": per_req[2]}

    for ps in systems.values():  # warm-up: connections, caches, the Redis scripts loaded
        run(ps, 8, 1, "warm")
    points: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for conns in args.tp_concurrency:
            for name in names[r % 3:] + names[:r % 3]:
                points.append(point(r, conns, name))
                log(f"throughput round {r} c={conns} {name}: {points[-1]['req_per_s']} req/s, "
                    f"errors {points[-1]['errors']}, load {points[-1]['load1']}")

    def median(conns: int, name: str, figure: str) -> float:
        mine = [p[figure] for p in points if p["system"] == name and p["concurrency"] == conns]
        return round(float(statistics.median(mine)), 3)

    def ratio(conns: int, x: str, y: str) -> float:  # the median of the per-round ratios
        by = {(p["round"], p["system"]): float(p["req_per_s"]) for p in points if p["concurrency"] == conns}
        return round(statistics.median(by[(r, x)] / by[(r, y)] for r in range(args.rounds)), 2)

    summary = []
    for conns in args.tp_concurrency:
        for name in names:
            mine = [p for p in points if p["system"] == name and p["concurrency"] == conns]
            errors = Counter[str]()
            for q in mine:
                errors.update(q["errors"])
            summary.append({"concurrency": conns, "system": name, "errors": dict(errors),
                            "p50_ms": " / ".join(f"{statistics.median(q['p50_ms'][i] for q in mine):.1f}"
                                                 for i in range(len(systems[name]))),
                            **{f: median(conns, name, f) for f in ("req_per_s", "proxy_cpu_ms_per_req",
                                                                    "redis_cpu_ms_per_req", "db_cpu_ms_per_req")}})
    ratios = {conns: {"pair_over_one_with_redis": ratio(conns, names[0], names[1]),
                      "one_with_redis_over_without": ratio(conns, names[1], names[2])} for conns in args.tp_concurrency}
    return {"seconds_per_point": args.tp_seconds, "rounds": args.rounds, "points": points, "medians": summary,
            "ratios": ratios}


# ---- report ---------------------------------------------------------------------------------------

def markdown(res: dict[str, Any]) -> str:
    rpm, par = res["rpm"], res["parallel"]

    def refused(r: dict[str, Any]) -> str:
        return ", ".join(f"{n} x {code}" for code, n in r["statuses"].items() if code != "200")

    lines = [f"workers per proxy: {res['workers']}; load: {res['uptime'][0]}", "",
             "| limit | configured | sent | admitted | refused | verdict |", "|---|---:|---:|---:|---|---|",
             f"| rpm_limit (one UTC minute, c={rpm['sent_at_concurrency']}) | {rpm['rpm_limit']} | {rpm['sent']} | "
             f"{rpm['admitted']} (A {rpm['admitted_per_proxy'][0]}, B {rpm['admitted_per_proxy'][1]}) | {refused(rpm)} "
             f"| {'exact' if rpm['exact'] else 'NOT EXACT'} |",
             f"| max_parallel_requests ({par['clients']} clients, {par['seconds']} s, hold {par['hold_s']} s) | "
             f"{par['max_parallel_requests']} | {par['sent']} | peak {par['peak_in_flight_at_upstream']} in flight "
             f"(mean {par['mean_in_flight_at_upstream']}); {par['admitted']} calls | {refused(par)} "
             f"| {'exact' if par['exact'] else 'NOT EXACT'} |", "",
             "| budget on | max_budget | one call, its upper bound | admitted at c=" + str(res["budget"][0]["clients"])
             + " (per burst) | spend then (headroom left, in upper bounds) | then admitted one at a time | final spend "
             "(= Σ cost headers) | overshoot, in upper bounds | refused | verdict |",
             "|---|---:|---|---|---|---:|---|---:|---|---|"]
    for b in res["budget"]:
        bursts = ", ".join(str(r["admitted"]) for r in b["parallel_bursts"])
        same = "yes" if b["spend_equals_headers"] else "NO: " + b["sum_of_cost_headers"]
        lines.append(f"| {b['entity']} | {b['max_budget']} | {b['call_cost']}, {b['call_upper_bound']} | "
                     f"{b['admitted_parallel']} ({bursts}) | {b['spend_after_parallel']} "
                     f"({b['left_after_parallel_in_upper_bounds']}) | {b['admitted_sequential']} | "
                     f"{b['spend_in_database']} ({same}) | {b['overshoot_in_upper_bounds']} | {refused(b)} | "
                     + ("OVERSHOT" if not b["within_one_upper_bound"] else "REFUSED EARLY" if b["refused_early"]
                        else "ok") + " |")
    tp = res["throughput"]
    lines += ["", f"Throughput, {tp['rounds']} rounds of {tp['seconds_per_point']} s a point, medians (c = wrk's "
              "connections in all, split evenly over the proxies; p50 per proxy):", "",
              "| c | system | req/s | ratio | p50 ms | proxy CPU ms/req | Redis CPU ms/req | PostgreSQL CPU ms/req "
              "| errors |",
              "|---:|---|---:|---|---|---:|---:|---:|---|"]
    for m in tp["medians"]:
        r = tp["ratios"][m["concurrency"]]
        note = {"2 proxies + Redis": f"{r['pair_over_one_with_redis']}x one with Redis",
                "1 proxy + Redis": f"{r['one_with_redis_over_without']}x one without"}.get(m["system"], "")
        lines.append(f"| {m['concurrency']} | {m['system']} | {m['req_per_s']:,.0f} | {note} | {m['p50_ms']} | "
                     f"{m['proxy_cpu_ms_per_req']} | {m['redis_cpu_ms_per_req']} | {m['db_cpu_ms_per_req']} | "
                     f"{m['errors'] or 0} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="workers of each proxy")
    parser.add_argument("--rpm", type=int, default=300, help="rpm_limit of the rpm key")
    parser.add_argument("--parallel", type=int, default=8, help="max_parallel_requests of the parallel key")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds the slow upstream holds each call")
    parser.add_argument("--parallel-seconds", type=float, default=6.0)
    parser.add_argument("--budget", default="0.05", help="max_budget (USD) of the budgeted key and customer")
    parser.add_argument("--concurrency", type=int, default=200, help="connections of the limit phases")
    parser.add_argument("--tp-concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[8, 64],
                        help="wrk connections of a throughput point, in all (comma-separated: each is measured)")
    parser.add_argument("--tp-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument("--out", help="write every figure as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmbill-scaleout-"))
    loads = [uptime()]
    fake = pb.Child("fake_openai", [str(ensure_fake_openai())], port_from_stdout=True)
    held = HeldUpstream(args.hold)
    held.start()
    redis = RedisServer.start()
    pg_url, stop_pg = start_postgres()
    pg_port = int(pg_url.rsplit(":", 1)[1].split("/")[0])
    result: dict[str, Any] = {"workers": args.workers, "cpus": os.cpu_count(), "args": vars(args)}
    try:
        shared = create_database(pg_url, "scaleout_shared")
        solo = create_database(pg_url, "scaleout_solo")
        cfg = config(fake.port, held.port, shared, redis.url)
        a = start_proxy("A", cfg, work, args.workers)
        b = start_proxy("B", cfg, work, args.workers)
        c = start_proxy("C", config(fake.port, held.port, solo, None), work, args.workers)
        log(f"up: A :{a.port}, B :{b.port} (Redis {redis.url}), C :{c.port} (no Redis); {uptime()}")
        result["rpm"] = phase_rpm(a, b, args)
        log(f"rpm: {result['rpm']}")
        loads.append(uptime())
        result["parallel"] = phase_parallel(a, b, held, args)
        time.sleep(2)  # the releases run behind the replies; unused tickets go back within 1.5 s
        result["parallel"]["left_in_redis"] = leftovers(redis.url)
        log(f"parallel: {result['parallel']}")
        loads.append(uptime())
        result["budget"] = []
        for kind in ("key", "customer"):
            result["budget"].append(phase_budget(a, b, kind, cfg, args))
            result["budget"][-1]["left_in_redis"] = leftovers(redis.url)
            log(f"budget: {result['budget'][-1]}")
            loads.append(uptime())
        result["throughput"] = phase_throughput(a, b, c, redis, pg_port, args, work)
        time.sleep(2)
        result["left_in_redis_at_end"] = leftovers(redis.url)
        loads.append(uptime())
    finally:
        for child in reversed(pb.ALL):
            child.stop()
        held.stop()
        redis.close()
        stop_pg()
    result["uptime"] = loads
    # Why a call got a 503: a proxy logs the first failure of its Redis client after a success
    # (fail_closed refuses every call until Redis answers again).
    result["redis_errors_logged"] = {
        p: Counter(line.split("fail_closed): ", 1)[1]
                   for line in (work / p / "proxy.log").read_text(errors="replace").splitlines()
                   if "Redis unreachable (fail_closed): " in line) for p in ("A", "B")}
    text = markdown(result)
    print(text)
    print("\nRedis failures the proxies logged (the first of each run of failures; calls were refused with a 503 "
          f"meanwhile): {result['redis_errors_logged']}")
    print("Left in Redis by calls that ended (releases that failed; each holds a slot or a reservation for an "
          f"hour):\n  after the parallel phase: {result['parallel']['left_in_redis']}\n  "
          + "\n  ".join(f"after the {b['entity']} budget: {b['left_in_redis']}" for b in result["budget"])
          + f"\n  at the end: {result['left_in_redis_at_end']}")
    print("\nload (uptime) before each phase and at the end:\n  " + "\n  ".join(loads))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    # Limits not exact, a call refused for anything but its limit, a budget overshot or refused early,
    # spend not what the replies said, or a throughput call that failed (a 503 from a Redis client out
    # of connections is one): the run is not a result.
    only_limits = set(result["rpm"]["statuses"]) | set(result["parallel"]["statuses"]) <= {"200", "429"} and all(
        set(b["statuses"]) <= {"200", str(BUDGET_EXCEEDED_STATUS)} for b in result["budget"])
    ok = only_limits and result["rpm"]["exact"] and result["parallel"]["exact"] and all(
        b["within_one_upper_bound"] and b["spend_equals_headers"] and not b["refused_early"]
        for b in result["budget"]) and not any(
        p["errors"] for p in result["throughput"]["points"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
