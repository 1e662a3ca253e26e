"""Plain-text renderings for a terminal: the reconciliation report and the dead-letter list."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..lago.deadletters import Letter
from ..lago.reader import ms_to_iso
from ..lago.reconcile import Amounts, Difference, ReconcileReport
from ..lago.reconcile_credits import CreditAccount


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _amounts(a: Amounts | None) -> list[str]:
    if a is None:
        return ["-", "-", "-", "-"]
    return [str(a.events), f"{a.input_tokens}/{a.output_tokens}", format(a.cost, "f"), format(a.billed, "f")]


def _difference(d: Difference) -> str:
    head = f"{d.kind:<8} {d.transaction_id}  billed id {d.billed_id or '(none)'}  code {d.code}  {ms_to_iso(d.timestamp_ms)}"
    parts = []
    if d.proxy is not None:
        parts.append(f"proxy {d.proxy.input_tokens}/{d.proxy.output_tokens} tokens, ${format(d.proxy.cost, 'f')}")
    if d.lago is not None:
        parts.append(f"lago {d.lago.input_tokens}/{d.lago.output_tokens} tokens, ${format(d.lago.cost, 'f')}")
    lines = [head, "         " + "; ".join(parts)] if parts else [head]
    lines += [f"         {name}: proxy {p} | lago {g}" for name, (p, g) in d.changes.items()]
    if d.note:
        lines.append(f"         note: {d.note}")
    return "\n".join(lines)


def render_report(report: ReconcileReport) -> str:
    out = [f"Reconciliation {ms_to_iso(report.start_ms)} .. {ms_to_iso(report.end_ms)}  "
           f"codes {','.join(report.codes)}  charge by {report.charge_by}  calls {report.calls}", ""]
    rows = []
    for a in report.accounts:
        kinds = [sum(1 for d in a.differences if d.kind == k) for k in ("missing", "extra", "altered")]
        rows.append([a.billed_id or "(none)", *_amounts(a.proxy), *_amounts(a.lago), *map(str, kinds)])
    p, g = report.proxy_total, report.lago_total
    rows.append(["TOTAL", *_amounts(p), *_amounts(g),
                 *(str(len(report.of_kind(k))) for k in ("missing", "extra", "altered"))])
    headers = ["billed id", "proxy events", "proxy tokens in/out", "proxy cost", "proxy billed", "lago events",
               "lago tokens in/out", "lago cost", "lago billed", "missing", "extra", "altered"]
    out += _table(headers, rows, right=frozenset(range(1, 12)))
    if report.differences:
        out += ["", "Differences:"] + [_difference(d) for d in report.differences]
    if report.unsubscribed:
        out += ["", "Billed ids without an active Lago subscription (Lago stores their events and never bills "
                    f"them): {', '.join(report.unsubscribed)}"]
    if report.unbillable:
        cost = sum((u.amounts.cost for u in report.unbillable), Amounts().cost)
        out += ["", f"Unbillable calls (no id to charge, never sent; see `llmbill deadletters list`): "
                    f"{len(report.unbillable)}, ${format(cost, 'f')}"]
    if report.fixed:
        out += ["", f"Re-sent {len(report.fixed)} missing event(s) with their original ids and timestamps: "
                    + ", ".join(report.fixed)]
    if report.credits:
        out += ["", "Prepaid credits (invoiced periods): consumed by llmbill's calls vs debited from the wallets by Lago"]
        out += _credits(report.credits)
    out += [f"warning: {w}" for w in report.warnings]
    if report.clean:
        out += ["", "Clean: Lago holds exactly what the proxy billed."]
    else:
        counts = ", ".join(f"{len(report.of_kind(k))} {k}" for k in ("missing", "extra", "altered"))
        mismatches = len(report.credit_mismatches)
        out += ["", f"NOT CLEAN: {counts}" + (f", {mismatches} credit mismatch(es)." if mismatches else ".")]
    return "\n".join(out)


def _credits(accounts: Sequence[CreditAccount]) -> list[str]:
    rows, notes = [], []
    for account in accounts:
        if not account.invoices:
            rows.append([account.customer, "(no invoiced period)", "-", "-", "-", "-", "-", "-"])
        for invoice in account.invoices:
            period = ", ".join(f"{p.billed_id} {ms_to_iso(p.start_ms)[:10]}..{ms_to_iso(p.end_ms - 1)[:10]}"
                               for p in invoice.periods)
            unit = invoice.unit
            rows.append([account.customer, invoice.number or invoice.lago_id, period or "-", str(invoice.calls),
                         f"{format(invoice.consumed, 'f')} {invoice.currency}",
                         format(Decimal(invoice.consumed_cents) * unit, "f"),
                         format(Decimal(invoice.debited_cents) * unit, "f"), "ok" if invoice.matches else "MISMATCH"])
            if not invoice.matches:
                notes += [f"  {account.customer} {invoice.number or invoice.lago_id}: {n}" for n in invoice.notes()]
    headers = ["customer", "invoice", "period(s)", "calls", "consumed", "billed (rounded)", "debited", "status"]
    return _table(headers, rows, right=frozenset({3, 4, 5, 6})) + notes


def render_letters(letters: Sequence[Letter], now: float | None = None) -> str:
    if not letters:
        return "No dead letters."
    rows = []
    for letter in letters:
        s: dict[str, Any] = letter.summary(now)
        rows.append([s["id"], s["slot"], _age(s["age_s"]), str(s["code"] or "-"), str(s["billed_id"] or "-"),
                     str(s["response_cost"] if s["response_cost"] is not None else "-"), _short(s["reason"])])
    return "\n".join(_table(["id", "slot", "age", "code", "billed id", "cost", "reason"], rows))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
