"""The `llmbill` command: operator tools for a running deployment, and a pricing demo.

    llmbill reconcile --from T1 --to T2 [--fix] [--format table|json]
    llmbill deadletters list | show ID | replay (ID | --all) | drop ID --yes
    llmbill demo

Exit status: 0 done (and clean), 1 differences or failures remain, 2 could not run.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import llmbill


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the proxy's config.yaml (default: $LLMBILL_PROXY_CONFIG, else the "
                                         "embedded defaults): where its database and spool are")
    parser.add_argument("--spool-dir", help="the spool base holding slot-N/ (default: $LLMBILL_SPOOL_DIR, else "
                                            "spool/ beside the proxy's SQLite database or in the working directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmbill", description="usage-based billing for LLM traffic")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="price a sample of calls with the bundled price table")

    rec = sub.add_parser("reconcile", help="compare the proxy's billed calls with what Lago holds",
                         description="Compares the proxy's spend logs in [--from, --to) with Lago's events, per "
                                     "event and per billed id, with exact money. Exit 1 while differences remain.")
    rec.add_argument("--from", dest="start", required=True, help="ISO 8601 time (UTC unless zoned), 'now' or -<n>[smhdw]")
    rec.add_argument("--to", dest="end", required=True, help="end of the window (excluded); same forms")
    rec.add_argument("--fix", action="store_true",
                     help="re-send missing events (original transaction_id and timestamp) and check again; "
                          "never deletes or changes anything in Lago")
    rec.add_argument("--format", choices=("table", "json"), default="table")
    rec.add_argument("--max-age", default="31d",
                     help="Lago's acceptance window for --fix: older missing events are reported, not re-sent "
                          "(default 31d, one monthly billing period)")
    rec.add_argument("--force-late", action="store_true", help="re-send missing events outside the window too")
    rec.add_argument("--wait", type=float, default=30.0, help="seconds --fix waits for delivery (default 30)")
    _common(rec)

    dead = sub.add_parser("deadletters", help="events Lago refused for good: list, show, replay, drop")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every slot's dead letters, oldest first")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    _common(listing)
    show = actions.add_parser("show", help="one dead letter: the event, Lago's reply, the reason")
    show.add_argument("id")
    _common(show)
    again = actions.add_parser("replay", help="send again through the pipeline, after fixing the cause")
    again.add_argument("id", nargs="?")
    again.add_argument("--all", action="store_true")
    again.add_argument("--wait", type=float, default=30.0, help="seconds to wait for delivery (default 30)")
    _common(again)
    drop = actions.add_parser("drop", help="delete one for good (needs --yes; kept in the audit file)")
    drop.add_argument("id")
    drop.add_argument("--yes", action="store_true", help="yes, delete this billing data")
    _common(drop)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Runs one command; `out` and `err` default to the process's stdout and stderr."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        print(f"1 unit = 1e-{llmbill.MONEY_DECIMALS} USD", file=out or sys.stdout)
        print(f"gpt-4o input price normalised: {llmbill.normalise_price(2.5e-06)} units", file=out or sys.stdout)
        return 0
    from .ops import commands

    if args.command == "reconcile":
        return commands.run_reconcile(args, out, err)
    return commands.run_deadletters(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
