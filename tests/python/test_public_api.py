"""The public API is pinned: a change to it shows in this diff."""

import subprocess
import sys

import llmbill

EXPECTED = [
    "BilledCall",
    "ConfigError",
    "Cost",
    "Error",
    "LagoLogger",
    "LagoSettings",
    "Ledger",
    "MONEY_DECIMALS",
    "MarginError",
    "ModelPrice",
    "MoneyOverflowError",
    "Pipeline",
    "PriceTable",
    "PriceTableError",
    "SpoolFullError",
    "SseUsageScanner",
    "Totals",
    "UnknownModelError",
    "Usage",
    "UsageError",
    "callbacks",
    "close",
    "cost",
    "cost_discount_config",
    "cost_margin_config",
    "default_prices",
    "flush",
    "get_pipeline",
    "normalise_price",
    "reconcile",
    "register_callback",
    "reload_default_prices",
    "track",
    "units_to_usd",
]


def test_all_is_pinned_and_sorted() -> None:
    assert llmbill.__all__ == EXPECTED == sorted(EXPECTED)
    for name in EXPECTED:
        assert hasattr(llmbill, name), name


def test_import_loads_no_server_stack_or_http_sdk() -> None:
    code = (
        "import sys, llmbill; "
        "bad = [m for m in ('fastapi','starlette','uvicorn','aiohttp','httpx','openai','requests','litellm') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
