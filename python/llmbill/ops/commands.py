"""The operator commands behind `llmbill reconcile` and `llmbill deadletters ...` (parsing is in
`llmbill/cli.py`). Each returns the process exit status: 0 done and clean, 1 differences or
failures remain, 2 the command could not run (bad input, configuration, Lago or database out of reach).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from .. import redact
from ..billing import ConfigError
from ..errors import Error
from .context import OpsContext
from ..lago.deadletters import replay
from ..lago.reader import LagoReadError
from ..calls import call_timestamp_ms
from ..lago.reconcile import ReconcileReport
from ..lago.reconcile_run import DEFAULT_MAX_AGE, reconcile_async
from ..lago.timeparse import UsageError, parse_duration, parse_time
from .report_text import render_letters, render_report

def reconcile(start: datetime, end: datetime, *, config: str | None = None, spool_dir: str | None = None,
              fix: bool = False, max_age: timedelta = DEFAULT_MAX_AGE, force_late: bool = False,
              wait: float = 30.0) -> ReconcileReport:
    """Reconciles the proxy's billed calls in [start, end) with Lago (see `llmbill reconcile`).

    Reads the proxy's config (`config`, else LLMBILL_PROXY_CONFIG, else the embedded defaults) for
    its database, and LAGO_* from the environment. With `fix`, missing events are re-sent through a
    pipeline on a free spool slot and Lago is read again; the report is that of the second reading.
    Raises ConfigError, LagoReadError or llmbill.Error when it cannot reconcile. Not for use inside
    a running event loop (the proxy's route calls `reconcile_async`).
    """
    from ..proxy.store import open_store

    ctx = OpsContext.load(config, spool_dir)
    reader = ctx.reader()

    async def run() -> ReconcileReport:
        store = open_store(ctx.database_url)
        await store.open()
        try:
            args: dict[str, Any] = {"dead_letters": ctx.book().ids(), "max_age": max_age, "force_late": force_late,
                                    "wait": wait}
            start_ms, end_ms = call_timestamp_ms(start), call_timestamp_ms(end)
            if not fix:
                return await reconcile_async(store, reader, ctx.settings, start_ms, end_ms, **args)
            with ctx.pipeline() as (pipeline, _):
                return await reconcile_async(store, reader, ctx.settings, start_ms, end_ms,
                                             submit=pipeline.submit_event, flush=pipeline.flush, **args)
        finally:
            await store.close()

    return asyncio.run(run())


def _fail(message: str, err: TextIO, status: int = 2) -> int:
    print(f"llmbill: {redact.text(message)}", file=err)  # a Lago or database URL may hold a password
    return status


def run_reconcile(args: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
        if end <= start:
            raise UsageError("--to must be after --from")
        report = reconcile(start, end, config=args.config, spool_dir=args.spool_dir, fix=args.fix,
                           max_age=parse_duration(args.max_age, "--max-age"), force_late=args.force_late,
                           wait=args.wait)
    except (UsageError, ConfigError, LagoReadError, Error, OSError) as exc:
        return _fail(str(exc), err)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2), file=out)
    else:
        print(render_report(report), file=out)
    return 0 if report.clean else 1


def run_deadletters(args: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        ctx = OpsContext.load(args.config, args.spool_dir)
        book = ctx.book()
        if args.action == "list":
            letters = book.letters()
            if args.format == "json":
                print(json.dumps([letter.summary() for letter in letters], indent=2), file=out)
            else:
                print(render_letters(letters), file=out)
            return 0
        if args.action == "show":
            found = book.find(args.id)
            if not found:
                return _fail(f"no dead letter {args.id!r} under {ctx.spool_base}", err, 1)
            print(json.dumps([letter.to_json() for letter in found], indent=2), file=out)
            return 0
        if args.action == "drop":
            if not args.yes:
                return _fail(f"drop deletes billing data for good: add --yes to drop {args.id!r} "
                             f"(it stays readable in {ctx.spool_base}/deadletters-audit.jsonl)", err)
            dropped = book.drop(args.id)
            if not dropped:
                return _fail(f"no dead letter {args.id!r} under {ctx.spool_base}", err, 1)
            print(f"dropped {args.id} ({', '.join(d.slot for d in dropped)}); "
                  f"kept in {ctx.spool_base}/deadletters-audit.jsonl", file=out)
            return 0
        return _replay(ctx, args, out, err)
    except (UsageError, ConfigError, LagoReadError, Error, OSError) as exc:
        return _fail(str(exc), err)


def _replay(ctx: OpsContext, args: Any, out: TextIO, err: TextIO) -> int:
    book = ctx.book()
    if bool(args.all) == bool(args.id):
        raise UsageError("replay takes one dead letter id, or --all")
    letters = book.letters() if args.all else book.find(args.id)
    if not letters:
        if args.all:
            print("No dead letters.", file=out)
            return 0
        return _fail(f"no dead letter {args.id!r} under {ctx.spool_base}", err, 1)
    unknown = ctx.unknown_codes()  # refuse what Lago would store and never bill
    inactive = ctx.inactive_subscriptions({str(letter.summary()["billed_id"]) for letter in letters
                                           if letter.summary()["billed_id"]})
    with ctx.pipeline() as (pipeline, slot_dir):
        outcomes = replay(book, letters, pipeline, ctx.settings, unknown, inactive)
        sent = [tid for o in outcomes for tid in o.sent]
        delivered = pipeline.flush(args.wait) if sent else True
        refused_again = {d["id"]: d["reason"] for d in pipeline.dead_letters() if d["id"] in sent}
        pending = pipeline.stats()["pending"]
    failed = 0
    for outcome in outcomes:
        if outcome.refused:
            failed += 1
            print(f"not replayed: {outcome.refused}", file=out)
            continue
        for tid in outcome.sent:
            if tid in refused_again:
                failed += 1
                print(f"refused again by Lago: {tid}: {refused_again[tid]} (a new dead letter in {slot_dir.name})",
                      file=out)
            else:
                print(f"replayed {outcome.letter.id} as {tid}" + ("" if delivered else " (spooled)"), file=out)
    if not delivered:
        failed += 1
        print(f"{pending} event(s) not yet delivered within {args.wait:g} s: they stay in {slot_dir} and are sent "
              "by the next process that opens that slot", file=out)
    return 1 if failed else 0
