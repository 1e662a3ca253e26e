"""Draws the proxy benchmark of one run as a PNG: requests/s and p99 latency per concurrency, one line
per system (direct path, llmbill on SQLite and PostgreSQL, LiteLLM), one row per mode (chat, stream).

    .venv/bin/python bench/chart.py RESULT.json OUT.png      (RESULT: bench/report.py's or proxy_bench.py's JSON)

Needs matplotlib (requirements-dev.txt puts it in .venv).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "direct": ("#888888", "o", "direct (no proxy)"),
    "llmbill-sqlite": ("#1f77b4", "s", "llmbill, SQLite"),
    "llmbill-sqlite-nopoll": ("#17becf", "v", "llmbill, SQLite, idle polling off"),
    "llmbill-pg": ("#2ca02c", "^", "llmbill, PostgreSQL"),
    "litellm": ("#d62728", "D", "LiteLLM (no database)"),
}


def draw(result: dict[str, Any], out: str) -> None:
    proxy = result.get("proxy", result)
    # The first round of the systems' shared modes: the Anthropic modes (llmbill only) have their own table.
    points = [p for p in proxy["points"] if p.get("round", 0) == 0]
    modes = [m for m in proxy.get("modes", ["chat", "stream"]) if m in ("chat", "stream") and any(p["mode"] == m for p in points)]
    ladder = sorted({p["concurrency"] for p in points})
    fig, axes = plt.subplots(len(modes), 2, figsize=(11, 4.2 * len(modes)), squeeze=False)
    for row, mode in enumerate(modes):
        for col, (key, label) in enumerate((("rps", "requests/s"), ("p99_ms", "p99 latency, ms"))):
            ax = axes[row][col]
            for system, (color, marker, name) in STYLE.items():
                ps = sorted((p for p in points if p["mode"] == mode and p["system"] == system), key=lambda p: p["concurrency"])
                if ps:
                    ax.plot([p["concurrency"] for p in ps], [max(p[key], 1e-3) for p in ps], color=color, marker=marker,
                            label=name)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ladder)
            ax.set_xticklabels([str(c) for c in ladder])
            ax.set_yscale("log")
            ax.set_xlabel("concurrent connections (wrk)")
            ax.set_ylabel(label)
            ax.set_title(f"{mode}: {label}")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    meta = result.get("meta", {})
    fig.suptitle(f"llmbill vs LiteLLM vs direct, same fake upstream, one run — {meta.get('date', '')} "
                 f"{meta.get('host', '')} ({meta.get('cpus', '?')} CPUs, shared; {proxy.get('seconds_per_point', 0):g} s/point)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        draw(json.load(f), sys.argv[2])
