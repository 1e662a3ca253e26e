"""Where llmbill-proxy's own CPU goes at concurrency 1: its request path with features taken away one
at a time, each variant its own proxy, measured beside `floor` (bench/floor_proxy.py: the same server
and upstream client with none of llmbill's request path) and the direct path in the same run.

    .venv/bin/python bench/ablation.py [--variants full,no-lago,...] [--modes chat,stream] [--rounds 3]
        [--seconds 4] [--concurrency 1] [--json F]
    .venv/bin/python bench/ablation.py --pieces [--revs REV_A,REV_B] [--runs 3]

Variants (proxy_bench.py's llmbill-sqlite set-up is `full`):
  full         virtual key with max_budget, customer with max_budget (the body's `user`), spend to the
               database, Lago on (each event spooled, each spend row journaled before the reply)
  no-lago      no `lago` callback: no spool append and no spend journal (the journal lives in the
               spool's slot)
  no-journal   Lago on, the spend journal's append patched out (so no-lago − no-journal is the spool)
  master       the master key instead of the virtual key (no key budget, no key record)
  no-cust-budget  the customer without max_budget (still named by `user`: the Lago event's charge id)
  no-customer  the body without `user`: no customer at all. Not in the default set: with Lago on and
               LAGO_API_CHARGE_BY=end_user_id, an event without a customer is dead-lettered by the
               C++ pipeline, ~2 ms a call (measured in process), which is not the request path's cost
  no-metrics   observe's metrics patched out (note_settled and finish: no Prometheus increments)
  bare         master key, no customer, no Lago, no metrics: validation, admission, cost, the spend
               ledger and the spend log row are what is left
  bare-nospend bare with SpendTracker.record patched out (no ledger entry, no spend log row)
  no-idle-poll full with general_settings.idle_poll_us: 0 (proxy/idle_poll.py; 200 µs, adaptive, by
               default): not more work, the loop sleeping through its waits instead of polling

What cannot be turned off in config (metrics, the journal, spend) is patched out by this program
itself: it starts those proxies as `ablation.py --launch PATCHES -- <llmbill-proxy arguments>`,
which replaces the named functions with no-ops and runs llmbill-proxy's main in the same process.
The patched variants do not bill correctly; they only say what their part costs.

--pieces times the request path's parts one by one, in process: the full variant's app (key, customer
budget, Lago on a fake) called as ASGI with no server, warmed by 300 calls, then each part called
20,000 times with the arguments of a real call (timeit, the best of 5; `full call` is a whole call
through the app, its upstream the same fake; `full call, upstream in process` the same with the
fake's reply handed back in process, no socket — the request path's own CPU, steady to ~3 µs where
the round trip moves `full call` by ±20; `… after one loop turn` the same with the reply awaited for one
turn of the loop, as a socket's is — what suspending and waking the call's task adds;
`upstream.call, loop asleep / polling (wall)` the round trip
to the fake alone, in wall time, without and with idle polling). Microseconds on this machine, meaningful side by side
only. With --revs each revision's python/llmbill (git archive, as ab_proxy.py does) is timed in turn,
alternately, --runs times each, and the best of each is reported with the difference: the way to see
a cut of a few microseconds that no wrk run resolves on a shared machine.

Every round measures each mode's direct path, floor, then every variant (their order rotated each
round so the machine's drifting load does not fall on one variant). Reported per variant: medians
over rounds of p50, of p50 − floor's p50 (same round) and of CPU/request − floor's CPU/request (same
round; the proxy process's utime+stime over wrk's requests): the last is the figure to read on a
shared machine, where p50 moves with the other tenants.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tempfile
import shutil
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-lago": {"lago": False},
    "no-journal": {"patches": ["journal"]},
    "master": {"master": True},
    "no-cust-budget": {"customer_budget": False},
    "no-customer": {"customer": False},
    "no-metrics": {"patches": ["metrics"]},
    "bare": {"lago": False, "master": True, "customer": False, "patches": ["metrics"]},
    "bare-nospend": {"lago": False, "master": True, "customer": False, "patches": ["metrics", "spend"]},
    "no-idle-poll": {"general": {"idle_poll_us": 0}},
}


# ---- the patched proxy (runs inside the proxy's process) --------------------------------------------

def apply_patches(names: list[str]) -> None:
    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    if "metrics" in names:
        from llmbill.proxy import observe

        observe.note_settled = nothing  # type: ignore[assignment]
        observe.finish = nothing  # type: ignore[assignment]
    if "journal" in names:
        from llmbill.proxy.spend_journal import SpendJournal

        SpendJournal.append = nothing  # type: ignore[method-assign]
    if "spend" in names:
        from llmbill.proxy.spend import SpendTracker

        SpendTracker.record = nothing  # type: ignore[method-assign]


def launch(patches: str, argv: list[str]) -> int:
    apply_patches([p for p in patches.split(",") if p])
    from llmbill.proxy.cli import main

    return main(argv)


# ---- the run ----------------------------------------------------------------------------------------

def start_variant(name: str, spec: dict[str, Any], upstream: int, work: Path) -> pb.System:
    """proxy_bench.start_llmbill with the variant's config; the full variant is exactly that."""
    if not spec:
        return pb.start_llmbill(name, upstream, f"sqlite:///{work}/{name}/llmbill.db", work / name, anthropic=False)
    workdir = work / name
    workdir.mkdir(parents=True, exist_ok=True)
    lago = pb.Child(f"{name} fake_lago", [str(pb.BIN / "fake_lago")], port_from_stdout=True)
    config: dict[str, Any] = {"model_list": pb.model_list(upstream),
                              "general_settings": {"master_key": pb.MASTER,
                                                   "database_url": f"sqlite:///{workdir}/llmbill.db",
                                                   **spec.get("general", {})}}
    if spec.get("lago", True):
        config["litellm_settings"] = {"callbacks": ["lago"]}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    port = pb._free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAGO_", "LLMBILL_", "DATABASE_URL"))}
    env.update(pb.lago_env(lago), LLMBILL_SPOOL_DIR=str(workdir / "spool"))
    args = ["--config", str(workdir / "config.yaml"), "--port", str(port), "--host", "127.0.0.1"]
    argv = [str(pb.ROOT / ".venv" / "bin" / "python"), str(Path(__file__).resolve()), "--launch",
            ",".join(spec.get("patches", [])), "--", *args]
    proc = pb.Child(name, argv, env=env, cwd=workdir, log_path=workdir / "proxy.log")
    s = pb.System(name, f"http://127.0.0.1:{port}", f"Bearer {pb.MASTER}", proc, lago)
    s.startup_s = pb.wait_healthy(s.url, proc, 60)
    if not spec.get("master"):
        status, key = pb.http("POST", s.url + "/key/generate", {"max_budget": 1_000_000, "key_alias": "bench"}, pb.MASTER)
        if status != 200:
            raise RuntimeError(f"{name}: /key/generate → {status} {key}")
        s.auth = f"Bearer {key['key']}"
    customer: dict[str, Any] = {"user_id": pb.CUSTOMER}
    if spec.get("customer_budget", True):
        customer["max_budget"] = 1_000_000
    status, body = pb.http("POST", s.url + "/customer/new", customer, pb.MASTER)
    if status != 200:
        raise RuntimeError(f"{name}: /customer/new → {status} {body}")
    return s


def body_of(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = dict(pb.BODIES[mode])
    if not spec.get("customer", True):
        body.pop("user", None)
    return body


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(points: list[dict[str, Any]], variants: list[str], modes: list[str], rounds: int) -> str:
    by = {(p["system"], p["mode"], p["round"]): p for p in points}
    loads = [p["load1"] for p in points]
    out = [f"{rounds} rounds; 1-minute load {min(loads):.1f}–{max(loads):.1f}; medians over rounds; "
           "Δ = the variant minus floor in the same round", "",
           "| mode | system | p50 ms | p50 Δ floor ms | CPU ms/req | CPU Δ floor ms/req | CPU Δ full ms/req |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for mode in modes:
        rs = range(rounds)
        for name in ["direct", "floor", *variants]:
            ps = [by[(name, mode, r)] for r in rs if (name, mode, r) in by]
            p50 = med([p["p50_ms"] for p in ps])
            if name == "direct":
                out.append(f"| {mode} | direct | {p50:.3f} | | | | |")
                continue
            cpu = med([p["cpu_ms_per_req"] for p in ps])
            if name == "floor":
                out.append(f"| {mode} | floor | {p50:.3f} | | {cpu:.3f} | | |")
                continue
            dp = med([by[(name, mode, r)]["p50_ms"] - by[("floor", mode, r)]["p50_ms"] for r in rs])
            dc = med([by[(name, mode, r)]["cpu_ms_per_req"] - by[("floor", mode, r)]["cpu_ms_per_req"] for r in rs])
            df = (med([by[(name, mode, r)]["cpu_ms_per_req"] - by[("full", mode, r)]["cpu_ms_per_req"] for r in rs])
                  if "full" in variants else float("nan"))
            out.append(f"| {mode} | {name} | {p50:.3f} | {dp:+.3f} | {cpu:.3f} | {dc:+.3f} | {df:+.3f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "no-customer"))
    ap.add_argument("--modes", default="chat,stream")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--json", help="every point, raw")
    ap.add_argument("--pieces", action="store_true", help="time the request path's parts in process instead")
    ap.add_argument("--revs", default="", help="with --pieces: REV_A,REV_B (git revisions) instead of the installed package")
    ap.add_argument("--runs", type=int, default=3, help="with --pieces: runs of each revision, alternately")
    args = ap.parse_args()
    if args.pieces:
        print(pieces([r for r in args.revs.split(",") if r], args.runs))
        return 0
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"ablation: unknown variants {unknown} (of {', '.join(VARIANTS)})")
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="llmbill-ablation-"))
    points: list[dict[str, Any]] = []
    try:
        upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
        direct = pb.System("direct", f"http://127.0.0.1:{upstream.port}/v1", "")
        floor = pb.start_floor(upstream.port, work / "floor")
        systems = {v: start_variant(v, VARIANTS[v], upstream.port, work) for v in variants}
        bodies: dict[tuple[str, str], Path] = {}
        for mode in modes:
            for name in ["direct", "floor", *variants]:
                bodies[(name, mode)] = work / f"{name}-{mode}.json"
                bodies[(name, mode)].write_text(json.dumps(body_of(mode, VARIANTS.get(name, {}))))
        for s in [floor, *systems.values()]:  # warm-up: imports, caches, pools
            for mode in modes:
                pb.wrk(s.url, s.auth, bodies[(s.name, mode)], 8, 2, work / "warm.json", pb.endpoint(s, mode))
            pb.settle(s)
        for r in range(args.rounds):
            shift = r % len(variants)
            order = variants[shift:] + variants[:shift]
            for mode in modes:
                for s in [direct, floor, *(systems[v] for v in order)]:
                    p = pb.measure(s, mode, args.concurrency, args.seconds, work, bodies[(s.name, mode)])
                    pb.settle(s)
                    p["round"] = r
                    points.append(p)
                    pb.log(f"round {r + 1}/{args.rounds} {mode} {s.name:13} p50 {p['p50_ms']:.3f} ms  "
                           f"CPU {p['cpu_ms_per_req'] or 0:.3f} ms/req  errors {p['errors']}  load {p['load1']:.1f}")
        text = report(points, variants, modes, args.rounds)
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "points": points, "table": text}, indent=1))
        return 1 if any(p["errors"] for p in points) else 0
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        shutil.rmtree(work, ignore_errors=True)


# ---- --pieces: the request path's parts timed in process ---------------------------------------------

def _pieces_main() -> None:
    """Runs in its own process (the revision's tree first on sys.path): prints `name: us` lines."""
    import asyncio
    import timeit
    from decimal import Decimal

    import uvloop

    work = Path(tempfile.mkdtemp(prefix="llmbill-pieces-"))
    upstream = pb.Child("fake_openai", [str(pb.BIN / "fake_openai")], port_from_stdout=True)
    lago = pb.Child("fake_lago", [str(pb.BIN / "fake_lago")], port_from_stdout=True)
    os.environ.update(pb.lago_env(lago), LLMBILL_SPOOL_DIR=str(work / "spool"))
    from llmbill import settle as billing_rules
    from llmbill._native import core
    from llmbill.proxy import (auth, budget_fallbacks, call_limits, call_margin, fallback_request, fallbacks, guards,
                               observe, request_fields, spend_journal, upper_bound)
    from llmbill.proxy import settle as settle_mod
    from llmbill.proxy.app import ProxyApp
    from llmbill.proxy.config import load_config_dict
    from llmbill.proxy.http import JSON_HEADERS, Request, Response
    from llmbill.proxy.routes import llm
    from llmbill.proxy.upstream import UpstreamReply
    import orjson

    sys.path.insert(0, str(pb.ROOT))  # the tests' helpers (no llmbill package there to shadow the revision's)
    from tests.python.asgi_lifespan import running

    config = {"model_list": pb.model_list(upstream.port), "litellm_settings": {"callbacks": ["lago"]},
              "general_settings": {"master_key": pb.MASTER, "database_url": f"sqlite:///{work}/llmbill.db"}}
    try:  # thread CPU of the calls themselves: the loop never polls between them (the rows below time that)
        from llmbill.proxy.idle_poll import IdlePoll  # noqa: F401
        config["general_settings"]["idle_poll_us"] = 0
    except ImportError:  # a revision before idle polling
        pass
    app = ProxyApp(load_config_dict(config))
    seen: dict[str, Any] = {}
    real_settle = llm.settle

    def settle_seen(call: Any, usage: Any) -> Any:
        seen["call"], seen["usage"] = call, usage
        return real_settle(call, usage)

    def scope_of(raw: bytes, key: str) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/chat/completions", "query_string": b"",
                "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode()),
                            (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]}

    async def asgi(method: str, path: str, body: Any, key: str) -> list[dict[str, Any]]:
        raw = json.dumps(body).encode()
        scope = dict(scope_of(raw, key), method=method, path=path)
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": raw, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    async def run() -> None:
        async with running(app):
            await measure()

    async def measure() -> None:
        key = json.loads((await asgi("POST", "/key/generate", {"max_budget": 1_000_000, "key_alias": "bench"},
                                     pb.MASTER))[-1]["body"])["key"]
        await asgi("POST", "/customer/new", {"user_id": pb.CUSTOMER, "max_budget": 1_000_000}, pb.MASTER)
        body = pb.BODIES["chat"]
        llm.settle = settle_seen
        for _ in range(300):
            await asgi("POST", "/chat/completions", body, key)
        llm.settle = real_settle
        call, usage, state = seen["call"], seen["usage"], app.state
        principal, d, model = call.principal, call.d, call.model
        raw = json.dumps(body).encode()
        bound = upper_bound.upper_bound_cost(d, "chat", body)
        billed = settle_mod.priced(call, usage)

        async def attempt(c: Any, b: Any) -> Response:
            return Response(200, b"{}")

        def admitted_call() -> Any:
            return llm.Call(state, principal, "chat", model, d, pb.CUSTOMER, 0.0, guards.Admission(state, [], Decimal(0)))

        parts: dict[str, Any] = {
            "Request": lambda: Request(scope_of(raw, key), None, 1 << 20),  # type: ignore[arg-type]
            "hash_key": lambda: auth.hash_key(key),
            "_validate": lambda: llm._validate("chat", body),
            "check_model_access": lambda: guards.check_model_access(state, principal, model),
            "upper_bound_cost": lambda: upper_bound.upper_bound_cost(d, "chat", body),
            "billed_bound": lambda: call_margin.billed_bound(state, model, pb.CUSTOMER, bound.cost),
            "guards._plan": lambda: guards._plan(state, principal, pb.CUSTOMER, bound, model),
            "call_tags": lambda: call_limits.call_tags(state, principal, body),
            "request_fields.read": lambda: request_fields.read(body),
            "fallback_request.read": lambda: fallback_request.read(body, principal.key, llm.ROUTES["chat"].validate),
            "Call": lambda: llm.Call(state, principal, "chat", model, d, pb.CUSTOMER, 0.0, call.admission),
            "the reply's header list (llm._forward)": lambda: (
                call.reply_headers(Decimal("0.0001"), JSON_HEADERS) if hasattr(call, "reply_headers")
                else list(JSON_HEADERS) + [(k.encode(), v.encode()) for k, v in call.headers(Decimal("0.0001")).items()]),
            "settle.priced": lambda: settle_mod.priced(call, usage),
            "settle.spend_log": lambda: settle_mod.spend_log(call, billed),
            "spend_journal.encode": lambda: spend_journal.encode(settle_mod.spend_log(call, billed)),
            "spend.record (+spend_log)": lambda: state.spend.record(usage, billed.cost_detail,
                                                                     settle_mod.spend_log(call, billed), model=model),
            "journal.append (+spend_log)": lambda: state.spend.journal.append(settle_mod.spend_log(call, billed)),
            "spool (Lago event)": lambda: billing_rules.spool(state.pipeline, billed),
            # A revision that settles a call at cost in one step with the core: its three steps above, together.
            **({"core.settle_call (priced, ledger, Lago event)": lambda: core.settle_call(
                state.spend.ledger, state.pipeline, call.price, usage, call.call_id, billed.timestamp_ms, model,
                principal.token_hash, billed.key_alias, billed.user_id, billed.team_id, billed.end_user_id)}
               if hasattr(core, "settle_call") else {}),
            "settle (all)": lambda: settle_mod.settle(call, usage),
            "observe.note_settled": lambda: observe.note_settled(call, usage, billed.billed),
            "observe.finish": lambda: observe.finish(info, 200),  # last: a finished request counts at once
        }
        awaited: dict[str, Any] = {
            "fallbacks.serve (no-op attempt)": lambda: fallbacks.serve(admitted_call(), body, attempt, llm.ROUTES["chat"]),
            "budget_fallbacks.admit": lambda: budget_fallbacks.admit(state, principal, pb.CUSTOMER, model, d, body,
                                                                     llm.ROUTES["chat"]),
            "full call": lambda: asgi("POST", "/chat/completions", body, key),
        }
        for name, make in awaited.items():
            n, best = (1000 if name == "full call" else 3000), float("inf")
            for _ in range(5):
                t0 = time.thread_time()
                for _ in range(n):
                    got = await make()
                    if name == "budget_fallbacks.admit":
                        got[2].release()
                best = min(best, (time.thread_time() - t0) / n)
            print(f"part {name}: {best * 1e6:.2f}", flush=True)
        # The upstream round trip alone, in wall time: the loop asleep through the wait, then polling
        # through it (proxy/idle_poll.py; the expect() stands for the client's after the write).
        try:
            from llmbill.proxy.idle_poll import IdlePoll
        except ImportError:  # a revision before idle polling
            IdlePoll = None  # type: ignore[assignment, misc]
        if IdlePoll is not None:
            upstream_body = {**body, "model": d.upstream_model}
            for name, window in (("upstream.call, loop asleep (wall)", 0.0), ("upstream.call, loop polling (wall)", 1e-3)):
                poll, best = IdlePoll(window), float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    for _ in range(2000):
                        poll.expect()
                        await state.upstream.call(d, "chat", upstream_body)
                    best = min(best, (time.perf_counter() - t0) / 2000)
                await asyncio.sleep(0.01)  # the window passes: the loop sleeps again
                print(f"part {name}: {best * 1e6:.2f}", flush=True)
        # The same call with the upstream answered in process (its reply as the fake sends it, no
        # socket): the request path's own CPU, without the round trip whose kernel work and wake-ups
        # move "full call" by ±20 µs from run to run. Best of 10 blocks of 1,000.
        reply = (await state.upstream.call(d, "chat", {**body, "model": d.upstream_model})).body

        async def in_process(dep: Any, route: str, upstream_body: dict[str, Any]) -> Any:
            orjson.dumps(upstream_body)  # as Upstream.call encodes it
            return UpstreamReply(200, reply, "application/json")

        loop = asyncio.get_running_loop()

        async def one_turn(dep: Any, route: str, upstream_body: dict[str, Any]) -> Any:
            # The same, but the reply awaited for one turn of the loop, as a socket's would be (no
            # socket): what a suspension and the wake-up of the call's task cost the path.
            orjson.dumps(upstream_body)
            turned = loop.create_future()
            loop.call_soon(turned.set_result, None)
            await turned
            return UpstreamReply(200, reply, "application/json")

        for name, stub in (("full call, upstream in process", in_process),
                           ("full call, upstream in process after one loop turn", one_turn)):
            state.upstream.call = stub  # type: ignore[method-assign]
            best = float("inf")
            for _ in range(10):
                t0 = time.thread_time()
                for _ in range(1000):
                    await asgi("POST", "/chat/completions", body, key)
                best = min(best, (time.thread_time() - t0) / 1000)
            del state.upstream.call  # the class's own again
            print(f"part {name}: {best * 1e6:.2f}", flush=True)
        info = observe.begin("POST", "/chat/completions")  # a request open for `call`, as settle sees one
        info.call = call
        for name, fn in parts.items():
            print(f"part {name}: {min(timeit.repeat(fn, number=20_000, repeat=5)) / 20_000 * 1e6:.2f}", flush=True)

    try:
        uvloop.run(run())
    finally:
        for c in reversed(pb.ALL):
            c.stop(10)
        shutil.rmtree(work, ignore_errors=True)


def pieces(revs: list[str], runs: int) -> str:
    import ab_proxy

    work = Path(tempfile.mkdtemp(prefix="llmbill-pieces-trees-"))
    trees = {rev: ab_proxy.tree(rev, work / rev.replace("/", "_")) for rev in revs} if revs else {"installed": None}
    best: dict[str, dict[str, float]] = {rev: {} for rev in trees}
    try:
        for r in range(runs):
            for rev in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                env = dict(os.environ)
                if trees[rev] is not None:
                    env["PYTHONPATH"] = str(trees[rev])
                out = subprocess.run([str(pb.ROOT / ".venv" / "bin" / "python"), str(Path(__file__).resolve()),
                                      "--pieces-child"], env=env, capture_output=True, text=True, check=True).stdout
                for line in out.splitlines():
                    if not line.startswith("part "):
                        continue  # the proxy's own start-up lines
                    name, _, value = line[len("part "):].rpartition(": ")
                    best[rev][name] = min(best[rev].get(name, float("inf")), float(value))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = list(next(iter(best.values())))
    head = "| part | " + " | ".join(f"{rev} µs" for rev in trees) + (" | B − A µs |" if len(trees) == 2 else " |")
    out = [f"in process, the best of {runs} run(s) x 5; thread CPU (awaited parts) or timeit (the others)", "",
           head, "|---|" + "---:|" * (len(trees) + (1 if len(trees) == 2 else 0))]
    for name in names:
        cells = [f"{best[rev].get(name, float('nan')):.2f}" for rev in trees]
        diff = ""
        if len(trees) == 2:
            a, b = (best[rev].get(name, float("nan")) for rev in trees)
            diff = f" {b - a:+.2f} |"
        out.append(f"| {name} | " + " | ".join(cells) + " |" + diff)
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--pieces-child"]:
        _pieces_main()
        sys.exit(0)
    if len(sys.argv) > 2 and sys.argv[1] == "--launch":
        rest = sys.argv[3:]
        sys.exit(launch(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest))
    sys.exit(main())
