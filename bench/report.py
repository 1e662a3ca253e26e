"""Merges one bench/run into bench/results/<date>-<host>.json and prints it as a Markdown table.

Inputs are the raw outputs of the run: Google Benchmark JSON from cost_bench and pipeline_bench,
cost_python.py's JSON, proxy_bench.py's JSON (scenarios 1 and 2: direct / llmbill / LiteLLM under
wrk), which also gets its own table and a chart (chart.py) beside the result, and stream_bench.py's
JSON (scenario 4: ~1,000 open streams, direct and through llmbill), which gets its own table. The
proxy's Anthropic modes get one more table: each beside the OpenAI pass-through row of the same
system, concurrency and round (anthropic_rows). Every figure is printed beside the same-run baseline it is read against and
the ratio between them; a benchmark that reported an error makes the whole run fail (a run with
errors is not a result).

    python bench/report.py [--cost-cpp A.json --pipeline LABEL=B.json [--pipeline LABEL2=B2.json]
                            --cost-python C.json] [--proxy P.json] [--stream S.json] --out R.json [--meta k=v ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_bench import MODES  # noqa: E402
from stream_bench import markdown as stream_markdown  # noqa: E402

SUFFIX = re.compile(r"/(iterations|repeats|min_time|manual_time|real_time):?.*$")


def figures(gbench: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """benchmark name → its median aggregate (or its single run), and the errors reported."""
    out: dict[str, dict[str, Any]] = {}
    errors = []
    for b in gbench.get("benchmarks", []):
        name = SUFFIX.sub("", b.get("run_name", b["name"]))
        if b.get("error_occurred"):
            errors.append(f"{b['name']}: {b.get('error_message', '')}")
            continue
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median":
            out[name] = b
        elif b.get("run_type") == "iteration" and name not in out:
            out[name] = b
    return out, errors


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value and base else None


def row(scenario: str, what: str, value: float | None, unit: str, base_name: str, base: float | None,
        target: str = "") -> dict[str, Any]:
    return {"scenario": scenario, "figure": what, "value": value, "unit": unit, "baseline": base_name,
            "baseline_value": base, "ratio": ratio(value, base), "target": target}


def build_rows(cpp: dict[str, dict[str, Any]], pipes: dict[str, dict[str, dict[str, Any]]],
               py: dict[str, Any]) -> list[dict[str, Any]]:
    def c(name: str, counter: str = "items_per_second") -> float | None:
        return cpp.get(name, {}).get(counter)

    rows = [
        row("6 cost, C++", "llmbill resolve + compute_cost", c("BM_llmbill_resolve_cost"), "calls/s",
            "same lookup + formula in doubles", c("BM_baseline_double_resolve_cost")),
        row("6 cost, C++", "llmbill compute_cost, pre-resolved", c("BM_llmbill_cost_preresolved"), "calls/s",
            "formula in doubles, pre-resolved", c("BM_baseline_double_cost_preresolved")),
    ]
    py_rows = {r["name"]: r for r in py.get("rows", [])}
    base = py_rows.get("pure-Python baseline", {}).get("calls_per_s")
    for r in py.get("rows", []):
        if r["name"] == "pure-Python baseline":
            continue
        value = r.get("calls_per_s")
        rows.append(row("6 cost, Python", r["name"] + ("" if value else f" ({r.get('note', '')})"), value, "calls/s",
                        "pure-Python dict+float", base))
        rows[-1]["ratio"] = r.get("ratio_to_baseline")  # median of same-round ratios
    lite = py_rows.get("litellm.completion_cost", {}).get("calls_per_s")
    if lite:
        table = py_rows["PriceTable.cost(model, Usage)"]["calls_per_s"]
        rows.append(row("6 cost, Python", "PriceTable.cost(model, Usage)", table, "calls/s",
                        "litellm.completion_cost", lite, "≥ 200x"))

    for label, pipe in pipes.items():
        rows += pipeline_rows(f"5 pipeline, {label}", pipe)
    for pipe in pipes.values():
        if "memory/transport_down" in pipe:
            m = pipe["memory/transport_down"]
            rows.append(row("5 pipeline", "memory per queued event (Lago down, VmRSS)", m.get("bytes_per_event"), "B",
                            "the event's JSON size", m.get("event_json_bytes")))
            rows.append(row("5 pipeline", "heap in use per queued event (mallinfo2)", m.get("heap_bytes_per_event"), "B",
                            "the event's JSON size", m.get("event_json_bytes")))
            break
    return rows


def pipeline_rows(scenario: str, pipe: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def p(name: str, counter: str) -> float | None:
        return pipe.get(name, {}).get(counter)

    er1, er4, iv = "pipeline/every_record/threads:1", "pipeline/every_record/threads:4", "pipeline/interval/threads:1"
    sync, write = "baseline/write+fdatasync", "baseline/write"
    direct = "baseline/transport_direct"
    return [
        row(scenario, "every_record, 1 thread: events/s to Lago", p(er1, "events_per_s"), "events/s",
            "write+fdatasync per record", p(sync, "events_per_s")),
        row(scenario, "every_record, 4 threads: events/s to Lago", p(er4, "events_per_s"), "events/s",
            "write+fdatasync per record", p(sync, "events_per_s")),
        row(scenario, "interval, 1 thread: events/s to Lago", p(iv, "events_per_s"), "events/s",
            "transport direct to the fake", p(direct, "events_per_s"), "≥ 50k/s"),
        row(scenario, "interval, 1 thread: events/s to Lago", p(iv, "events_per_s"), "events/s",
            "write(2) per record, no sync", p(write, "events_per_s")),
        row(scenario, "transport direct: the fake's ceiling (100-event batches)", p(direct, "events_per_s"), "events/s",
            "", None),
        row(scenario, "every_record submit p50", p(er1, "submit_p50_us"), "µs", "write+fdatasync p50",
            p(sync, "submit_p50_us")),
        row(scenario, "every_record submit p99", p(er1, "submit_p99_us"), "µs", "write+fdatasync p99",
            p(sync, "submit_p99_us")),
        row(scenario, "interval submit p50", p(iv, "submit_p50_us"), "µs", "write(2) p50", p(write, "submit_p50_us")),
        row(scenario, "interval submit p99", p(iv, "submit_p99_us"), "µs", "write(2) p99", p(write, "submit_p99_us"),
            "≤ 20 µs"),
        row(scenario, "interval: CPU per event, all threads of the process", p(iv, "cpu_us_per_event"), "µs",
            "write(2): CPU per record", p(write, "cpu_us_per_event")),
        row(scenario, "every_record: last submit → flush() returned", p(er1, "flush_ms"), "ms", "", None),
        row(scenario, "interval: last submit → flush() returned", p(iv, "flush_ms"), "ms", "", None),
    ]


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit in ("µs", "ms", "B") or v < 100:
        return f"{v:,.1f}"
    return f"{v:,.0f}"


def markdown(rows: list[dict[str, Any]], meta: dict[str, str]) -> str:
    lines = [
        f"llmbill benchmarks — {meta.get('date', '')} on {meta.get('host', '')} "
        f"({meta.get('mode', '')}; {meta.get('cpus', '?')} CPUs, load {meta.get('load', '?')}; commit {meta.get('commit', '?')})",
        "",
        *[f"- fake Lago {k[len('fake_lago['):-1]}: {v}" for k, v in meta.items() if k.startswith("fake_lago[")],
        "",
        "| scenario | figure | value | same-run baseline | baseline value | ratio | target |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        ratio_text = f"{r['ratio']:.3g}x" if r["ratio"] else "–"
        lines.append(f"| {r['scenario']} | {r['figure']} | {fmt(r['value'], r['unit'])} {r['unit']} | {r['baseline'] or '–'} | "
                     f"{fmt(r['baseline_value'], r['unit'])} | {ratio_text} | {r['target']} |")
    return "\n".join(lines)


SYSTEM_ORDER = ["direct", "floor", "llmbill-sqlite", "llmbill-sqlite-nopoll", "llmbill-pg", "litellm"]
TRANSLATION_TARGET_MS = 0.05  # issue 14: translation's added p50 over the OpenAI pass-through


def proxy_markdown(proxy: dict[str, Any]) -> str:
    """Scenarios 1 and 2: one row per mode, concurrency and system; the direct row of the same mode and
    concurrency (measured just before) is the baseline for "added" latency."""
    def n(v: float | None, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    rounds = int(proxy.get("rounds", 1))
    lines = [
        f"Proxies in front of the same fake upstream: {proxy.get('upstream', '')}; load: {proxy.get('load_generator', '')}; "
        f"{proxy.get('seconds_per_point', 0):g} s per point (s: longer for a system too slow to answer every connection "
        "twice in that time: 2 x c / its warm-up req/s)" + (f"; {rounds} rounds" if rounds > 1 else "") + ". "
        "Added p50/p99: over the direct path (for the Anthropic modes, the fake's own /v1/messages).",
        "",
        load_line(proxy),
        "",
        "| mode | c | system |" + (" round |" if rounds > 1 else "") + " s | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU ms/req | peak RSS MB | errors | req/s ÷ LiteLLM | CPU ÷ LiteLLM's |",
        "|---|---:|---|" + ("---:|" if rounds > 1 else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {name: i for i, name in enumerate(SYSTEM_ORDER)}
    points = sorted(proxy.get("points", []), key=lambda p: (proxy.get("modes", []).index(p["mode"]) if p["mode"] in
                                                             proxy.get("modes", []) else 9, p["concurrency"],
                                                             order.get(p["system"], 9), p.get("round", 0)))
    for p in points:
        lines.append(
            f"| {p['mode']} | {p['concurrency']} | {p['system']} |" + (f" {p.get('round', 0) + 1} |" if rounds > 1 else "") + f" {p.get('seconds', proxy.get('seconds_per_point', 0)):.0f} | {p['rps']:,.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
            f"{n(p.get('added_p50_ms'), '.2f')} | {n(p.get('added_p99_ms'), '.2f')} | {n(p.get('cpu_ms_per_req'), '.3f')} | "
            f"{n(p.get('peak_rss_mb'), '.0f')} | {p['errors']} | "
            f"{n(p.get('rps_vs_litellm'), '.1f') + 'x' if p.get('rps_vs_litellm') else '–'} | "
            f"{n(p.get('cpu_vs_litellm'), '.1f') + 'x' if p.get('cpu_vs_litellm') else '–'} |")
    lines.append("")
    for name, info in proxy.get("systems", {}).items():
        if name == "direct":
            continue
        extra = ", ".join(f"{k} {v}" for k, v in (("start-up s", info.get("startup_s")),
                                                 ("idle RSS MB", _round(info.get("idle_rss_mb"))),
                                                 ("peak RSS MB", _round(info.get("peak_rss_mb"))),
                                                 ("served", info.get("served")),
                                                 ("Lago events", info.get("lago_events"))) if v is not None)
        lines.append(f"- **{name}**: {extra}. {'; '.join(info.get('notes', []))}")
    return "\n".join(lines)


def load_line(proxy: dict[str, Any]) -> str:
    loads = [p["load1"] for p in proxy.get("points", []) if p.get("load1") is not None]
    if not loads:
        return "Machine load: not recorded."
    cores = int(proxy.get("cpus") or 2)
    busy = max(loads) > cores  # more runnable work than cores: the proxy waits for a CPU at times
    return (f"Machine load (1-minute average as each point began): {min(loads):.1f}–{max(loads):.1f}, median "
            f"{statistics.median(loads):.1f}, on {cores} cores shared with other work"
            + (" — **a busy machine**: the latencies include waiting for a CPU." if busy else "."))


def anthropic_rows(proxy: dict[str, Any]) -> list[dict[str, Any]]:
    """Each Anthropic point beside the OpenAI pass-through point of the same system, concurrency and
    round (measured just before it); over several rounds, the medians of the per-round figures."""
    points = proxy.get("points", [])
    base = {(p["system"], p["mode"], p["concurrency"], p.get("round", 0)): p for p in points}
    pairs: dict[tuple[str, str, int], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for p in points:
        mode = MODES.get(p["mode"])
        if mode is None or mode.pass_through is None or p["system"] == "direct":
            continue
        b = base.get((p["system"], mode.pass_through, p["concurrency"], p.get("round", 0)))
        if b is not None:
            pairs.setdefault((p["system"], p["mode"], p["concurrency"]), []).append((p, b))

    def med(values: list[float | None]) -> float | None:
        vs = [v for v in values if v is not None]
        return statistics.median(vs) if vs else None

    def diff(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    rows = []
    for (system, mode, conns), ps in pairs.items():
        added_p50 = med([p["p50_ms"] - b["p50_ms"] for p, b in ps])
        translated = MODES[mode].translated
        rows.append({
            "system": system, "mode": mode, "concurrency": conns, "rounds": len(ps),
            "pass_through": MODES[mode].pass_through, "translated": translated,
            "p50_ms": med([p["p50_ms"] for p, _ in ps]), "pass_through_p50_ms": med([b["p50_ms"] for _, b in ps]),
            "added_p50_ms": added_p50,
            "added_p50_ms_each": [round(p["p50_ms"] - b["p50_ms"], 4) for p, b in ps],
            "added_p99_ms": med([p["p99_ms"] - b["p99_ms"] for p, b in ps]),
            "rps_ratio": med([p["rps"] / b["rps"] if b["rps"] else None for p, b in ps]),
            "cpu_ms_per_req": med([p.get("cpu_ms_per_req") for p, _ in ps]),
            "added_cpu_ms_per_req": med([diff(p.get("cpu_ms_per_req"), b.get("cpu_ms_per_req")) for p, b in ps]),
            "target_ms": TRANSLATION_TARGET_MS if translated else None,
            "met": (added_p50 <= TRANSLATION_TARGET_MS) if translated and added_p50 is not None else None,
        })
    order = {m: i for i, m in enumerate(MODES)}
    sysorder = {name: i for i, name in enumerate(SYSTEM_ORDER)}
    rows.sort(key=lambda r: (order[r["mode"]], r["concurrency"], sysorder.get(r["system"], 9)))
    return rows


def anthropic_markdown(rows: list[dict[str, Any]]) -> str:
    def n(v: float | None, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    lines = [
        "Anthropic deployment (`anthropic/claude-sonnet-4-5` on the same fake's /v1/messages) beside the OpenAI "
        "pass-through row of the same system, concurrency and round: anthropic-chat / anthropic-stream = the OpenAI "
        "body translated to Messages and back (target: added p50 ≤ 0.05 ms); messages / messages-stream = an "
        "Anthropic body on /v1/messages, passed through natively. Over several rounds: medians of the per-round "
        "differences (each round's in the JSON).",
        "",
        "| mode | c | system | rounds | p50 ms | OpenAI p50 ms | added p50 ms | target | added p99 ms | req/s ÷ OpenAI's | CPU ms/req | added CPU ms/req |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        target = "–" if r["target_ms"] is None else f"≤ {r['target_ms']:g} ({'met' if r['met'] else 'missed'})"
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['system']} | {r['rounds']} | {n(r['p50_ms'], '.3f')} | "
            f"{n(r['pass_through_p50_ms'], '.3f')} | {n(r['added_p50_ms'], '+.3f')} | {target} | {n(r['added_p99_ms'], '+.2f')} | "
            f"{n(r['rps_ratio'], '.2f')}x | {n(r['cpu_ms_per_req'], '.3f')} | {n(r['added_cpu_ms_per_req'], '+.3f')} |")
    return "\n".join(lines)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cost-cpp")
    ap.add_argument("--pipeline", action="append", default=[], metavar="LABEL=PATH",
                    help="pipeline_bench JSON, labelled by the fake Lago it ran against (repeatable)")
    ap.add_argument("--cost-python")
    ap.add_argument("--proxy", help="proxy_bench.py JSON")
    ap.add_argument("--stream", help="stream_bench.py JSON")
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", nargs="*", default=[], help="key=value pairs recorded with the run")
    args = ap.parse_args()
    meta = dict(kv.split("=", 1) for kv in args.meta)

    def load(path: str | None) -> Any:
        if not path:
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    cpp_raw = load(args.cost_cpp)
    pipe_raws = {}
    for spec in args.pipeline:
        label, path = spec.split("=", 1)
        pipe_raws[label] = load(path)
    py = load(args.cost_python)
    proxy = load(args.proxy)
    stream = load(args.stream)
    cpp, cpp_errors = figures(cpp_raw)
    pipes, errors = {}, list(cpp_errors)
    for label, raw in pipe_raws.items():
        pipes[label], pipe_errors = figures(raw)
        errors += pipe_errors
        meta[f"fake_lago[{label}]"] = raw.get("context", {}).get("fake_lago", "?")
    rows = build_rows(cpp, pipes, py) if cpp_raw else []
    anthropic = anthropic_rows(proxy) if proxy else []
    errors += [f"proxy: {e}" for e in proxy.get("errors", [])]
    errors += [f"stream: {e}" for e in stream.get("errors", [])]
    result = {
        "meta": meta,
        "rows": rows,
        "proxy": {k: v for k, v in proxy.items() if k != "errors"},
        "anthropic_vs_openai": anthropic,
        "stream": {k: v for k, v in stream.items() if k != "errors"},
        "errors": errors,
        "raw": {"cost_bench": cpp_raw, "pipeline_bench": pipe_raws, "cost_python": py},
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    if rows:
        print(markdown(rows, meta))
    if (proxy or stream) and not rows:
        print(f"llmbill benchmarks — {meta.get('date', '')} on {meta.get('host', '')} ({meta.get('mode', '')}; "
              f"{meta.get('cpus', '?')} CPUs, load {meta.get('load', '?')}; commit {meta.get('commit', '?')})")
    tables = ([proxy_markdown(proxy)] if proxy else []) + ([anthropic_markdown(anthropic)] if anthropic else [])
    for table in tables + ([stream_markdown(stream)] if stream.get("rows") else []):
        print()
        print(table)
    if result["errors"]:
        print("\nERRORS (this run is not a result):", *result["errors"], sep="\n  ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
