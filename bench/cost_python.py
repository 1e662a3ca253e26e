"""Cost lookups per second from Python (benchmarks.md, scenario 6), as ratios to a pure-Python
baseline measured in the same run.

Candidates, each over the same six-call mix as bench/cost_bench.cpp:
  llmbill.cost(model, Usage)        the public function (default table, Usage built beforehand)
  PriceTable.cost(model, Usage)     the table method, no default-table lookup
  llmbill.cost(model, reply dict)   the public function given the reply's `usage` dict (OpenAI or
                                    Anthropic shape), converted on every call
  pure-Python baseline              json.load of the same file, dict lookups, float products, the same
                                    resolution and tier rules (PurePythonPrices below)
  litellm.completion_cost           when litellm is importable (else reported "not installed")

Timing: interleaved rounds; in each round every candidate runs the mix for about --seconds, in a
shuffled order. Rates are calls per CPU-second of the calling thread (time.thread_time), which keeps
other processes on a shared machine out of the figure; a ratio is the median over rounds of the
candidate's rate divided by the baseline's rate in the same round.

    python bench/cost_python.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import llmbill
from llmbill.pricing import bundled_prices_path

# The same calls as cost_bench.cpp; prompt_tokens includes cache reads and writes.
MIX: list[tuple[str, dict[str, int]]] = [
    ("gpt-4o", {"prompt_tokens": 3200, "completion_tokens": 450, "cached_tokens": 2048}),
    ("gpt-4o-mini", {"prompt_tokens": 900, "completion_tokens": 220}),
    (
        "claude-sonnet-4-5",
        {"prompt_tokens": 18000, "completion_tokens": 700, "cached_tokens": 14000, "cache_creation_tokens": 2000},
    ),
    ("gemini-2.5-pro", {"prompt_tokens": 240000, "completion_tokens": 3000, "cached_tokens": 120000}),
    ("text-embedding-3-small", {"prompt_tokens": 512}),
    ("openai/gpt-4o", {"prompt_tokens": 1500, "completion_tokens": 600}),
]



def reply_usage(model: str, u: dict[str, int]) -> dict[str, Any]:
    """The `usage` object a provider's reply carries for these counts (Anthropic's or OpenAI's shape)."""
    cached, creation = u.get("cached_tokens", 0), u.get("cache_creation_tokens", 0)
    if model.startswith("claude"):
        return {
            "input_tokens": u["prompt_tokens"] - cached - creation,
            "output_tokens": u.get("completion_tokens", 0),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": creation,
        }
    reply: dict[str, Any] = {
        "prompt_tokens": u["prompt_tokens"],
        "completion_tokens": u.get("completion_tokens", 0),
        "total_tokens": u["prompt_tokens"] + u.get("completion_tokens", 0),
    }
    if cached:
        reply["prompt_tokens_details"] = {"cached_tokens": cached}
    return reply


RATE_FIELDS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
)


class PurePythonPrices:
    """The calculation llmbill does, written the plain way: dicts from json.load and floats.

    Resolution: the exact key, else `<provider>/<name>` when <name>'s litellm_provider is <provider>
    or of its family (`vertex_ai` covers `vertex_ai-language-models`). Tiers: each
    `<rate>_above_<N>k_tokens` key whose threshold the prompt exceeds replaces that rate for the whole
    request, the highest threshold winning. (The `tiered_pricing` list form is not read: no model of
    the mix uses it.)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        with open(path, encoding="utf-8") as f:
            self.models: dict[str, dict[str, Any]] = json.load(f)

    def find(self, model: str) -> dict[str, Any] | None:
        entry = self.models.get(model)
        if entry is not None:
            return entry
        prefix, slash, name = model.partition("/")
        if not slash:
            return None
        entry = self.models.get(name)
        if entry is None:
            return None
        provider = entry.get("litellm_provider", "")
        family = provider.startswith(prefix) and provider[len(prefix) : len(prefix) + 1] in ("-", "_")
        if provider == prefix or family or (prefix == "openai" and provider == "text-completion-openai"):
            return entry
        return None

    def cost(self, model: str, usage: dict[str, int]) -> float:
        entry = self.find(model)
        if entry is None:
            raise KeyError(f"unknown model {model!r}")
        prompt = usage.get("prompt_tokens", 0)
        rates = {field: entry.get(field) for field in RATE_FIELDS}
        crossed: dict[str, int] = {}
        for key, value in entry.items():
            field, above, rest = key.partition("_above_")
            if not above or value is None or field not in rates or not rest.endswith("k_tokens"):
                continue
            digits = rest[: -len("k_tokens")]
            if not digits.isdigit():
                continue
            threshold = int(digits) * 1000
            if prompt > threshold and threshold >= crossed.get(field, -1):
                crossed[field] = threshold
                rates[field] = value
        per_request = entry.get("input_cost_per_request")
        if rates["input_cost_per_token"] is None and rates["output_cost_per_token"] is None and per_request is None:
            raise KeyError(f"model {model!r} has no per-token price")
        inp = rates["input_cost_per_token"] or 0.0
        out = rates["output_cost_per_token"] or 0.0
        cache_read = rates["cache_read_input_token_cost"]
        cache_creation = rates["cache_creation_input_token_cost"]
        reasoning_rate = rates["output_cost_per_reasoning_token"]
        cached = usage.get("cached_tokens", 0)
        creation = usage.get("cache_creation_tokens", 0)
        reasoning = usage.get("reasoning_tokens", 0)
        return (
            inp * (prompt - cached - creation)
            + (inp if cache_read is None else cache_read) * cached
            + (inp if cache_creation is None else cache_creation) * creation
            + out * (usage.get("completion_tokens", 0) - reasoning)
            + (out if reasoning_rate is None else reasoning_rate) * reasoning
            + (per_request or 0.0)
        )


def litellm_candidate() -> tuple[Callable[[], list[float]] | None, str]:
    """A runner over the mix through litellm.completion_cost, or None and why not."""
    if importlib.util.find_spec("litellm") is None:
        return None, "not installed"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices at import
    import litellm  # type: ignore[import-not-found]

    responses = []
    for model, u in MIX:
        cached = u.get("cached_tokens", 0)
        creation = u.get("cache_creation_tokens", 0)
        usage = litellm.Usage(
            prompt_tokens=u["prompt_tokens"],
            completion_tokens=u.get("completion_tokens", 0),
            total_tokens=u["prompt_tokens"] + u.get("completion_tokens", 0),
            prompt_tokens_details={"cached_tokens": cached} if cached else None,
            cache_read_input_tokens=cached or None,
            cache_creation_input_tokens=creation or None,
        )
        responses.append((model, litellm.ModelResponse(model=model, usage=usage)))

    def run() -> list[float]:
        return [litellm.completion_cost(completion_response=r, model=m) for m, r in responses]

    return run, f"litellm {getattr(litellm, '__version__', '') or _dist_version('litellm')}"


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001 - only a label
        return "?"


def candidates() -> tuple[dict[str, Callable[[], list[float]]], dict[str, str]]:
    table = llmbill.default_prices()
    usages = [(m, llmbill.Usage(**u)) for m, u in MIX]
    dicts = [(m, dict(u)) for m, u in MIX]
    replies = [(m, reply_usage(m, u)) for m, u in MIX]
    for (m, u), (_, reply) in zip(usages, replies):
        assert llmbill.Usage.from_response(reply) == u, (m, reply)
    pure = PurePythonPrices(bundled_prices_path())
    cost = llmbill.cost
    runners: dict[str, Callable[[], list[float]]] = {
        "llmbill.cost(model, Usage)": lambda: [cost(m, u) for m, u in usages],
        "PriceTable.cost(model, Usage)": lambda: [table.cost(m, u) for m, u in usages],
        "llmbill.cost(model, reply usage dict)": lambda: [cost(m, u) for m, u in replies],
        BASELINE: lambda: [pure.cost(m, u) for m, u in dicts],
    }
    notes = {BASELINE: "json.load + dicts + floats, same rules"}
    run, note = litellm_candidate()
    notes[LITELLM] = note
    if run is not None:
        runners[LITELLM] = run
    return runners, notes


BASELINE = "pure-Python baseline"
LITELLM = "litellm.completion_cost"


def check(runners: dict[str, Callable[[], list[float]]]) -> dict[str, list[float]]:
    """Every candidate's totals (USD floats) for the mix; llmbill's must equal the baseline's."""
    totals = {name: [float(c) for c in run()] for name, run in runners.items()}
    for name, values in totals.items():
        if name == LITELLM:
            continue  # its own table and rules: shown, not required to agree
        for (model, _), got, want in zip(MIX, values, totals[BASELINE]):
            if abs(got - want) > 1e-12 * max(1.0, abs(want)):
                sys.exit(f"cost_python: {name} gives {got!r} for {model}, the baseline {want!r}: no result")
    return totals


def calibrate(run: Callable[[], list[float]], seconds: float) -> int:
    loops = 1
    while True:
        start = time.thread_time()
        for _ in range(loops):
            run()
        elapsed = time.thread_time() - start
        if elapsed >= seconds / 4:
            return max(1, int(loops * seconds / elapsed))
        loops *= 4


def measure(runners: dict[str, Callable[[], list[float]]], rounds: int, seconds: float) -> dict[str, list[float]]:
    """calls/s per candidate, one figure per round."""
    loops = {name: calibrate(run, seconds) for name, run in runners.items()}
    rates: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            run, n = runners[name], loops[name]
            start = time.thread_time()
            for _ in range(n):
                run()
            elapsed = time.thread_time() - start
            rates[name].append(n * len(MIX) / elapsed)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds instead of 7")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rounds, seconds = (3, 0.05) if args.quick else (7, 0.3)

    runners, notes = candidates()
    totals = check(runners)
    rates = measure(runners, rounds, seconds)
    base = rates[BASELINE]
    rows = []
    for name in [*runners, *([] if LITELLM in runners else [LITELLM])]:
        if name not in rates:
            rows.append({"name": name, "calls_per_s": None, "ratio_to_baseline": None, "note": notes.get(name, "")})
            continue
        ratio = statistics.median(r / b for r, b in zip(rates[name], base))
        rows.append(
            {
                "name": name,
                "calls_per_s": statistics.median(rates[name]),
                "ratio_to_baseline": ratio,
                "rounds": rates[name],
                "note": notes.get(name, ""),
            }
        )

    print(f"cost lookups from Python ({sys.version.split()[0]}, {rounds} interleaved rounds, calls per CPU-second)")
    print("| candidate | calls/s | x pure-Python baseline | note |")
    print("|---|---:|---:|---|")
    for row in rows:
        if row["calls_per_s"] is None:
            print(f"| {row['name']} | - | - | {row['note']} |")
        else:
            print(f"| {row['name']} | {row['calls_per_s']:,.0f} | {row['ratio_to_baseline']:.2f} | {row['note']} |")
    if LITELLM in totals:
        speedup = statistics.median(r / l for r, l in zip(rates["PriceTable.cost(model, Usage)"], rates[LITELLM]))
        print(f"PriceTable.cost vs litellm.completion_cost, same rounds: {speedup:.1f}x")
        print("totals (USD), llmbill vs litellm: " + ", ".join(
            f"{m} {a:.6g}/{b:.6g}" for (m, _), a, b in zip(MIX, totals[BASELINE], totals[LITELLM])))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"python": sys.version.split()[0], "rounds": rounds, "clock": "thread_time", "rows": rows,
                 "totals_usd": {name: dict(zip([m for m, _ in MIX], v)) for name, v in totals.items()}},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
