"""The `llmbill` command."""

from __future__ import annotations

import argparse
import sys

import llmbill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmbill", description="usage-based billing for LLM traffic")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="price a sample of calls with the bundled price table")
    args = parser.parse_args(argv)
    if args.command == "demo":
        print(f"1 unit = 1e-{llmbill.MONEY_DECIMALS} USD")
        print(f"gpt-4o input price normalised: {llmbill.normalise_price(2.5e-06)} units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
