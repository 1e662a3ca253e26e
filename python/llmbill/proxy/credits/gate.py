"""The credit gate: before a call, hold its true upper bound against the payer's available credits
(refused with `insufficient_credits` when available < hold); after it, settle at what it cost and
release the rest. The hold is the same bound budgets reserve (upper_bound.py: prompt + the most
output the call may produce), so a call — a stream included — can never spend past its hold: a
stream that outruns the balance ends at the hold, not beyond it.

Where the holds and the settled usage are counted is the ledger's business (ledger.py): this
process alone (LocalLedger), or every worker and replica through Redis (redis_ledger.py).

Freshness: a payer's wallets are read at its first call (with the usage Lago has not invoiced yet:
seed.py), again on every signed wallet webhook (routes/lago_webhooks.py) — in every process on the
same Redis, which the process that received it tells (fanout.py) — and by a backstop poll. When Lago
cannot be read the last balance read, less the usage counted since, still gates; once older than
`max_age_s` calls are refused (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from ...lago.reader import LagoReadError
from ..errors import ProxyError
from . import metrics
from .account import Account
from .fanout import Fanout
from .ledger import HoldRef, Ledger, LocalLedger, Unseeded
from .reader import WalletReader
from .seed import Seeder
from .settings import CreditSettings

log = logging.getLogger("llmbill.proxy")
_T = TypeVar("_T")
PAYER_KIND = {"end_user_id": "customer", "user_id": "user", "team_id": "team"}
AGE_INTERVAL_S = 1.0  # how often the balance-age gauges are brought up to date


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f")


@dataclass
class CreditHold:
    """One call's hold: settled once with the call's charge, or released unspent."""

    gate: CreditGate
    payer: str
    ref: HoldRef
    amount: Decimal
    done: bool = False

    def settle(self, charge: Decimal) -> None:
        if not self.done:
            self.done = True
            self.gate.ledger.settle(self.gate.account(self.payer), self.ref, charge)

    def release(self) -> None:
        if not self.done:
            self.done = True
            self.gate.ledger.release(self.gate.account(self.payer), self.ref)


class CreditGate:
    def __init__(self, settings: CreditSettings, reader: WalletReader, metric: str, charge_by: str,
                 ledger: Ledger | None = None, clock: Callable[[], float] = time.monotonic,
                 seeder: Seeder | None = None) -> None:
        self.settings = settings
        self.reader = reader
        self.metric = metric  # the billable metric llmbill's events carry: wallets restricted to others never pay
        self.charge_by = charge_by
        self.ledger: Ledger = ledger or LocalLedger()
        self.seeder = seeder or Seeder(reader, metric, settings.currency)
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        self._read_started: dict[str, float] = {}
        self._key: tuple[int, int] | None = None  # the webhook JWT public key (n, e), fetched once
        self.fanout: Fanout | None = None  # with Redis: wallet changes told to every other process

    # -- who pays, and whether credits apply -------------------------------------------------------------

    @property
    def payer_kind(self) -> str:
        return PAYER_KIND[self.charge_by]

    def payer_of(self, key: dict[str, Any] | None, customer: str) -> str:
        """The id Lago bills (LAGO_API_CHARGE_BY): "" when the call has none."""
        if self.charge_by == "end_user_id":
            return customer
        return str((key or {}).get(self.charge_by) or "")

    def applies(self, record: dict[str, Any] | None, tier: dict[str, Any] | None) -> bool:
        """The payer's own `credits`, else its tier's, else the proxy's default."""
        for source in (record, tier):
            mode = (source or {}).get("credits")
            if mode in ("lago", "off"):
                return bool(mode == "lago")
        return self.settings.default == "lago"

    def account(self, payer: str) -> Account:
        found = self.accounts.get(payer)
        if found is None:
            found = self.accounts[payer] = Account(payer)
        return found

    # -- reading Lago --------------------------------------------------------------------------------------

    async def ensure(self, payer: str) -> None:
        """Reads the payer if this process never has (its first call waits for it), seeded with the
        usage Lago has and has not invoiced (seed.py)."""
        if self.account(payer).read_at is None:
            await self._read(payer, seed=True)

    async def refresh(self, payer: str) -> bool:
        """Re-reads the payer's wallets; False (the last read kept) when Lago cannot be read. A payer
        never read is left to ensure(): only its first read is seeded."""
        if self.account(payer).read_at is None:
            return False
        return await self._read(payer)

    async def _read(self, payer: str, seed: bool = False, again: bool = False) -> bool:
        """The seed (when asked) is read before the wallets: a period invoiced in between is then
        counted twice (refusing early), never missed. A read that started before the one already
        applied is dropped, so an old answer never wins."""
        started = self.clock()
        try:
            usage, seeded_at = await self.seeder.seed(payer, again) if seed else (None, 0.0)
            wallets = await asyncio.to_thread(self.reader.wallets, payer)
        except LagoReadError as exc:
            metrics.refreshes("failed").inc()
            log.warning("credits: %s not read: %s", payer, exc)
            return False
        if started >= self._read_started.get(payer, float("-inf")):
            self._read_started[payer] = started
            self.account(payer).update(wallets, started, self.metric, self.settings.currency, usage, seeded_at)
        metrics.refreshes("ok").inc()
        return True

    async def changed(self, payer: str, wallet_id: str = "", relay: bool = True) -> None:
        """A signed wallet webhook named this payer (or only its wallet): every other process on the
        same Redis is told first, then this one re-reads the payer if it gates it. A payer never read
        here is left alone: a webhook never makes state for an id this process has not seen."""
        payer = payer or self.owner_of(wallet_id)
        if relay and self.fanout is not None and (payer or wallet_id):
            await self.fanout.publish("wallets", payer=payer, wallet=wallet_id)
        if payer in self.accounts:
            await self.refresh(payer)

    async def relayed(self, message: dict[str, Any]) -> None:
        """Another process received a wallet webhook (fanout.py)."""
        await self.changed(str(message.get("payer") or ""), str(message.get("wallet") or ""), relay=False)

    def owner_of(self, wallet_id: str) -> str:
        """The payer whose last read had this wallet ("" when none here did)."""
        if wallet_id:
            for account in self.accounts.values():
                if any(w.lago_id == wallet_id for w in account.wallets):
                    return account.payer
        return ""

    async def refresh_all(self) -> None:
        for payer in list(self.accounts):
            await self.refresh(payer)

    async def poll(self) -> None:
        """The backstop: every payer seen is re-read each interval, webhooks or not; what the shared
        ledger could not be told while Redis was down is written."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            await self.refresh_all()
            await self.ledger.sync()

    async def watch_age(self) -> None:
        """The balance-age gauges, every second: a balance that goes stale shows on /metrics before
        the next poll (the poll may be what keeps failing)."""
        while True:
            self.report_age()
            await asyncio.sleep(AGE_INTERVAL_S)

    def report_age(self) -> None:
        now = self.clock()
        ages = [now - a.read_at for a in self.accounts.values() if a.read_at is not None]
        metrics.BALANCE_AGE.set(max(ages, default=0.0))
        metrics.STALE_BALANCES.set(sum(1 for age in ages if age > self.settings.max_age_s))

    async def public_key(self) -> tuple[int, int] | None:
        from . import rsa
        if self._key is None:
            try:
                pem = await asyncio.to_thread(self.reader.webhook_public_key)
                self._key = rsa.public_numbers(pem)
            except (LagoReadError, ValueError) as exc:
                log.warning("credits: Lago's webhook public key not read: %s", exc)
                return None
        return self._key

    # -- holding ---------------------------------------------------------------------------------------------

    async def hold(self, payer: str, amount: Decimal, refused_status: int) -> CreditHold:
        """Holds `amount` for the payer, or refuses the call. The ledger checks and takes in one step
        (in process: no await in between; in Redis: one script), so no other call, in this process or
        another, can take the same credits between the check and the hold."""
        account = self.account(payer)
        if account.read_at is None or self.clock() - account.read_at > self.settings.max_age_s:
            metrics.refusals("stale").inc()
            age = "never read" if account.read_at is None else f"last read {self.clock() - account.read_at:.0f} s ago"
            raise ProxyError(503, f"the credits of {payer} cannot be checked: Lago's balance is {age}",
                             "credits_unavailable", None, {"retry-after": "5"})
        try:
            ref, figures = await self._ask(account, lambda: self.ledger.hold(account, self._balance(account), amount))
        except ProxyError as exc:
            if exc.type == "redis_unavailable":  # the shared holds cannot be checked (fail_closed)
                metrics.refusals("redis").inc()
            raise
        if ref is None:
            metrics.refusals("insufficient").inc()
            raise ProxyError(refused_status, f"insufficient_credits: {payer} has {_fmt(figures.available)} "
                                             f"{self.settings.currency} of credits available; this call may cost up "
                                             f"to {_fmt(amount)}", "insufficient_credits", None,
                             {"x-should-retry": "false"})
        return CreditHold(self, payer, ref, amount)

    def _balance(self, account: Account) -> Decimal:
        return account.balance(self.metric, self.settings.currency)

    async def _ask(self, account: Account, ask: Callable[[], Awaitable[_T]]) -> _T:
        """The ledger's answer; a shared ledger that has no tally for the payer (new, or Redis lost
        it) is seeded first from a fresh read."""
        try:
            return await ask()
        except Unseeded:
            pass
        if await self._read(account.payer, seed=True, again=True):
            try:
                return await ask()
            except Unseeded:
                pass
        metrics.refusals("stale").inc()
        raise ProxyError(503, f"the credits of {account.payer} cannot be checked: their shared tally could not be "
                              "seeded from Lago", "credits_unavailable", None, {"retry-after": "5"})

    async def info(self, payer: str) -> dict[str, Any]:
        """What /customer/info shows: the parts of `available`, exactly. When the ledger cannot
        answer (Redis down, a tally that cannot be seeded), this process's view, with why."""
        account = self.account(payer)
        error: str | None = None
        try:
            figures = await self._ask(account, lambda: self.ledger.figures(account, self._balance(account)))
        except ProxyError as exc:
            figures, error = self.ledger.local(account, self._balance(account)), exc.message
        return {"source": "lago", "currency": self.settings.currency, "lago_balance": self._balance(account),
                "settled_not_invoiced": figures.unapplied, "holds": figures.held,
                "available": self._balance(account) - figures.unapplied - figures.held,
                "shared": figures.shared, **({"error": error} if error else {}),
                "balance_age_seconds": None if account.read_at is None else round(self.clock() - account.read_at, 3),
                "wallets": [{"lago_id": w.lago_id, "code": w.code, "balance_cents": w.balance_cents,
                             "priority": w.priority, "pays": w.pays(self.metric, self.settings.currency)}
                            for w in account.wallets if w.active]}
