"""Where llmbill-proxy's own CPU goes at concurrency 1: its request path with features taken away one
at a time, each variant its own proxy, measured beside `floor` (bench/floor_proxy.py: the same server
and upstream client with none of llmbill's request path) and the direct path in the same run.

    .venv/bin/python bench/ablation.py [--variants full,no-lago,...] [--modes chat,stream] [--rounds 3]
        [--seconds 4] [--concurrency 1] [--json F]

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

What cannot be turned off in config (metrics, the journal, spend) is patched out by this program
itself: it starts those proxies as `ablation.py --launch PATCHES -- <llmbill-proxy arguments>`,
which replaces the named functions with no-ops and runs llmbill-proxy's main in the same process.
The patched variants do not bill correctly; they only say what their part costs.

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
import sys
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
                                                   "database_url": f"sqlite:///{workdir}/llmbill.db"}}
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--launch":
        rest = sys.argv[3:]
        sys.exit(launch(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest))
    sys.exit(main())
