"""Reconciliation, the comparison itself: what the proxy billed against what Lago holds. No I/O here
(reading both sides and re-sending live in `reconcile_run.py`), so every rule can be tested alone.

Events are matched by `transaction_id` (the call id, or `<call id>:<code>` when several codes are
configured) and compared field by field with exact values: code, billed id
(`external_subscription_id`), timestamp (milliseconds), model, every token count and
`response_cost` (exact decimals). The report groups differences per billed id:

- missing: the proxy billed the call, Lago has no event with its transaction_id;
- extra: Lago holds an event of a configured code, dated in the window, that no call explains;
- altered: Lago's event differs in one of the compared fields.

Beside the events, prepaid credits (reconcile_credits.py): per customer with Lago wallets, the credits
llmbill's calls consumed in each invoiced period against the wallet debits Lago applied for it; a
mismatch makes the report unclean as a difference does.

Totals on both sides are exact: tokens are integers, money is Decimal. With several codes every call
has one event per code, so each call counts once per code on both sides.

>>> from decimal import Decimal
>>> a = Amounts(events=1, input_tokens=12, output_tokens=7, cost=Decimal("0.000026"))
>>> (a + a).cost
Decimal('0.000052')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .reader import StoredEvent, decimal_or_none, ms_to_iso
from .reconcile_credits import CreditAccount, CreditInvoice

#: Event properties compared exactly (as numbers, except model).
COMPARED = ("model", "input_tokens", "output_tokens", "prompt_tokens", "completion_tokens", "total_tokens",
            "cached_tokens", "cache_creation_tokens", "cache_creation_1h_tokens", "reasoning_tokens", "response_cost",
            "billed_amount")

@dataclass(frozen=True)
class Amounts:
    """Events, tokens and money on one side, exact."""

    events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    billed: Decimal = Decimal(0)  # what the customer pays: billed_amount where a margin applied, else the cost

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.events + other.events, self.input_tokens + other.input_tokens,
                       self.output_tokens + other.output_tokens, self.cost + other.cost, self.billed + other.billed)

    @staticmethod
    def of(properties: dict[str, Any]) -> Amounts:
        def tokens(*names: str) -> int:
            for name in names:
                value = decimal_or_none(properties.get(name))
                if value is not None and value == value.to_integral_value():
                    return int(value)
            return 0
        cost = decimal_or_none(properties.get("response_cost")) or Decimal(0)
        billed = decimal_or_none(properties.get("billed_amount"))
        return Amounts(1, tokens("input_tokens", "prompt_tokens"), tokens("output_tokens", "completion_tokens"),
                       cost, cost if billed is None else billed)

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost": format(self.cost, "f"), "billed": format(self.billed, "f")}


@dataclass(frozen=True)
class ExpectedEvent:
    """An event the proxy's records say Lago must hold (rebuilt from a spend log row)."""

    transaction_id: str
    call_id: str
    code: str
    billed_id: str
    timestamp_ms: int
    properties: dict[str, Any]
    event_json: str  # exactly what the pipeline sends, for a resend

    @staticmethod
    def from_json(call_id: str, event_json: str) -> ExpectedEvent:
        event = json.loads(event_json)
        seconds, _, millis = str(event["timestamp"]).partition(".")
        return ExpectedEvent(event["transaction_id"], call_id, event["code"],
                             event.get("external_subscription_id", ""),
                             int(seconds) * 1000 + int((millis + "000")[:3]), dict(event["properties"]), event_json)


@dataclass(frozen=True)
class UnbillableCall:
    """A call the proxy recorded with no id to charge (e.g. no customer with LAGO_API_CHARGE_BY=end_user_id):
    it was never meant to reach Lago; its events sit in the dead letters."""

    call_id: str
    reason: str
    amounts: Amounts
    timestamp_ms: int


@dataclass
class Difference:
    kind: str  # missing | extra | altered
    transaction_id: str
    code: str
    billed_id: str
    timestamp_ms: int
    proxy: Amounts | None = None
    lago: Amounts | None = None
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)  # field -> (proxy, lago)
    note: str = ""
    event_json: str = ""  # missing: the event to re-send
    resendable: bool = False  # missing, not dead-lettered, inside Lago's acceptance window

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "transaction_id": self.transaction_id, "code": self.code,
                               "billed_id": self.billed_id, "timestamp": ms_to_iso(self.timestamp_ms)}
        if self.proxy is not None:
            out["proxy"] = self.proxy.to_json()
        if self.lago is not None:
            out["lago"] = self.lago.to_json()
        if self.changes:
            out["changes"] = {k: {"proxy": p, "lago": g} for k, (p, g) in self.changes.items()}
        if self.note:
            out["note"] = self.note
        if self.kind == "missing":
            out["resendable"] = self.resendable
        return out


@dataclass
class Account:
    """One billed id (a Lago subscription): its differences and both sides' totals."""

    billed_id: str
    proxy: Amounts = field(default_factory=Amounts)
    lago: Amounts = field(default_factory=Amounts)
    differences: list[Difference] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"billed_id": self.billed_id, "proxy": self.proxy.to_json(), "lago": self.lago.to_json(),
                "differences": [d.to_json() for d in self.differences]}


@dataclass
class ReconcileReport:
    start_ms: int
    end_ms: int
    codes: tuple[str, ...]
    charge_by: str
    calls: int = 0
    accounts: list[Account] = field(default_factory=list)
    unbillable: list[UnbillableCall] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)  # transaction ids re-sent by --fix
    # Billed ids without an active Lago subscription: Lago stores their events and never bills them.
    unsubscribed: list[str] = field(default_factory=list)
    # Customers with prepaid wallets: llmbill's consumption against Lago's debits, per invoiced period.
    credits: list[CreditAccount] = field(default_factory=list)

    @property
    def differences(self) -> list[Difference]:
        return [d for account in self.accounts for d in account.differences]

    def of_kind(self, kind: str) -> list[Difference]:
        return [d for d in self.differences if d.kind == kind]

    @property
    def credit_mismatches(self) -> list[CreditInvoice]:
        return [i for account in self.credits for i in account.mismatches]

    @property
    def clean(self) -> bool:
        """No event missing, extra or altered (unbillable calls are not differences), and every
        invoiced period's wallet debits equal the credits llmbill's calls consumed."""
        return not self.differences and not self.credit_mismatches

    @property
    def proxy_total(self) -> Amounts:
        return sum((a.proxy for a in self.accounts), Amounts())

    @property
    def lago_total(self) -> Amounts:
        return sum((a.lago for a in self.accounts), Amounts())

    def to_json(self) -> dict[str, Any]:
        unbillable = sum((u.amounts for u in self.unbillable), Amounts())
        return {
            "from": ms_to_iso(self.start_ms), "to": ms_to_iso(self.end_ms), "codes": list(self.codes),
            "charge_by": self.charge_by, "clean": self.clean, "calls": self.calls,
            "counts": {kind: len(self.of_kind(kind)) for kind in ("missing", "extra", "altered")},
            "totals": {"proxy": self.proxy_total.to_json(), "lago": self.lago_total.to_json()},
            "accounts": [a.to_json() for a in self.accounts],
            "unbillable": {"calls": len(self.unbillable), "cost": format(unbillable.cost, "f"),
                           "call_ids": [u.call_id for u in self.unbillable]},
            "fixed": list(self.fixed), "warnings": list(self.warnings), "unsubscribed": list(self.unsubscribed),
            "credits": {"mismatches": len(self.credit_mismatches), "customers": [a.to_json() for a in self.credits]},
        }


def _text(value: Any) -> str:
    if value is None:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)


def _changes(expected: ExpectedEvent, stored: StoredEvent) -> dict[str, tuple[str, str]]:
    changes: dict[str, tuple[str, str]] = {}
    if stored.code != expected.code:
        changes["code"] = (expected.code, stored.code)
    if stored.subscription != expected.billed_id:
        changes["external_subscription_id"] = (expected.billed_id, stored.subscription)
    if stored.timestamp_ms != expected.timestamp_ms:
        changes["timestamp"] = (ms_to_iso(expected.timestamp_ms), ms_to_iso(stored.timestamp_ms))
    for name in COMPARED:
        want, got = expected.properties.get(name), stored.properties.get(name)
        if want is None and got is None:
            continue
        if name == "model":
            same = want == got
        else:
            a, b = decimal_or_none(want), decimal_or_none(got)
            same = a is not None and a == b
        if not same:
            changes[name] = (_text(want), _text(got))
    return changes


def compare(expected: Iterable[ExpectedEvent], stored: Iterable[StoredEvent], *, start_ms: int, end_ms: int,
            codes: tuple[str, ...], charge_by: str, calls: int = 0, unbillable: Iterable[UnbillableCall] = (),
            dead_letters: dict[str, str] | None = None, accept_from_ms: int | None = None,
            accept_to_ms: int | None = None) -> ReconcileReport:
    """Compares the proxy's expected events (those dated in [start_ms, end_ms)) with Lago's events
    (read over a slightly wider range, so a boundary cannot hide a match).

    `dead_letters` (transaction id -> reason) marks missing events that sit in a dead-letter file:
    they are replayed with `llmbill deadletters`, not re-sent by reconcile. A missing event dated
    outside [accept_from_ms, accept_to_ms] (Lago's acceptance window) is reported, not resendable.
    """
    dead_letters = dead_letters or {}
    report = ReconcileReport(start_ms, end_ms, codes, charge_by, calls=calls)
    by_id: dict[str, list[StoredEvent]] = {}
    for event in stored:
        by_id.setdefault(event.transaction_id, []).append(event)
    used: set[int] = set()
    accounts: dict[str, Account] = {}

    def account(billed_id: str) -> Account:
        return accounts.setdefault(billed_id, Account(billed_id))

    def take(transaction_id: str, billed_id: str | None) -> StoredEvent | None:
        candidates = [e for e in by_id.get(transaction_id, []) if id(e) not in used]
        if not candidates:
            return None
        chosen = next((e for e in candidates if e.subscription == billed_id), candidates[0])
        used.add(id(chosen))
        return chosen

    for want in sorted(expected, key=lambda e: (e.timestamp_ms, e.transaction_id)):
        if not start_ms <= want.timestamp_ms < end_ms:
            continue
        proxy_amounts = Amounts.of(want.properties)
        account(want.billed_id).proxy += proxy_amounts
        got = take(want.transaction_id, want.billed_id)
        if got is None:
            diff = Difference("missing", want.transaction_id, want.code, want.billed_id, want.timestamp_ms,
                              proxy=proxy_amounts, event_json=want.event_json)
            if want.transaction_id in dead_letters:
                diff.note = f"dead-lettered ({dead_letters[want.transaction_id]}): replay it with llmbill deadletters"
            elif accept_from_ms is not None and want.timestamp_ms < accept_from_ms:
                diff.note = "dated before Lago's acceptance window: not re-sent (its period may be invoiced already)"
            elif accept_to_ms is not None and want.timestamp_ms > accept_to_ms:
                diff.note = "dated in the future beyond Lago's acceptance window: not re-sent (check the clocks)"
            else:
                diff.resendable = True
            account(want.billed_id).differences.append(diff)
            continue
        lago_amounts = Amounts.of(got.properties)
        account(got.subscription).lago += lago_amounts
        changes = _changes(want, got)
        if changes:
            account(want.billed_id).differences.append(Difference(
                "altered", want.transaction_id, want.code, want.billed_id, want.timestamp_ms,
                proxy=proxy_amounts, lago=lago_amounts, changes=changes))

    unbillable = list(unbillable)
    report.unbillable = []
    for call in unbillable:
        # A call billed later anyway (its dead letter replayed under another charge id) is not unbillable.
        ids = [call.call_id] + [f"{call.call_id}:{code}" for code in codes]
        found = [e for e in (take(i, None) for i in ids) if e is not None]
        for event in found:
            account(event.subscription).lago += Amounts.of(event.properties)
        if not found:
            report.unbillable.append(call)

    for events in by_id.values():
        for event in events:
            if id(event) in used or event.code not in codes or not start_ms <= event.timestamp_ms < end_ms:
                continue  # matched, another product's event, or another window's
            amounts = Amounts.of(event.properties)
            account(event.subscription).lago += amounts
            account(event.subscription).differences.append(Difference(
                "extra", event.transaction_id, event.code, event.subscription, event.timestamp_ms, lago=amounts,
                note="in Lago, never billed by the proxy (reconcile deletes nothing in Lago)"))
    report.accounts = [accounts[k] for k in sorted(accounts)]
    return report
