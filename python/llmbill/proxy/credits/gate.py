"""The credit gate: before a call, hold its true upper bound against the payer's available credits
(refused with `insufficient_credits` when available < hold); after it, settle at what it cost and
release the rest. The hold is the same bound budgets reserve (upper_bound.py: prompt + the most
output the call may produce), so a call — a stream included — can never spend past its hold: a
stream that outruns the balance ends at the hold, not beyond it.

Freshness: a payer's wallets are read at its first call, again on every signed wallet webhook
(routes/lago_webhooks.py), and by a backstop poll. When Lago cannot be read the last balance read,
less this process's own usage, still gates; once older than `max_age_s` calls are refused (fail
closed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...lago.reader import LagoReadError
from ..errors import ProxyError
from . import metrics
from .account import Account
from .holds import Holds, LocalHolds
from .reader import WalletReader
from .settings import CreditSettings

log = logging.getLogger("llmbill.proxy")
PAYER_KIND = {"end_user_id": "customer", "user_id": "user", "team_id": "team"}


def _fmt(x: Decimal) -> str:
    return format(x.normalize(), "f")


@dataclass
class CreditHold:
    """One call's hold: settled once with the call's charge, or released unspent."""

    gate: CreditGate
    payer: str
    hold_id: int
    amount: Decimal
    done: bool = False

    def settle(self, charge: Decimal) -> None:
        if not self.done:
            self.done = True
            self.gate.holds.drop(self.hold_id)
            self.gate.account(self.payer).settled += charge

    def release(self) -> None:
        if not self.done:
            self.done = True
            self.gate.holds.drop(self.hold_id)


class CreditGate:
    def __init__(self, settings: CreditSettings, reader: WalletReader, metric: str, charge_by: str,
                 holds: Holds | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.reader = reader
        self.metric = metric  # the billable metric llmbill's events carry: wallets restricted to others never pay
        self.charge_by = charge_by
        self.holds: Holds = holds or LocalHolds()
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        self._read_started: dict[str, float] = {}
        self._key: tuple[int, int] | None = None  # the webhook JWT public key (n, e), fetched once

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
        """Reads the payer's wallets if this process never has (its first call waits for it)."""
        if self.account(payer).read_at is None:
            await self.refresh(payer)

    async def refresh(self, payer: str) -> bool:
        """Re-reads the payer's wallets; False (the last read kept) when Lago cannot be read. A read
        that started before the one already applied is dropped, so an old answer never wins."""
        started = self.clock()
        try:
            wallets = await asyncio.to_thread(self.reader.wallets, payer)
        except LagoReadError as exc:
            metrics.refreshes("failed").inc()
            log.warning("credits: wallets of %s not read: %s", payer, exc)
            return False
        if started >= self._read_started.get(payer, float("-inf")):
            self._read_started[payer] = started
            self.account(payer).update(wallets, started)
        metrics.refreshes("ok").inc()
        return True

    async def poll(self) -> None:
        """The backstop: every payer seen is re-read each interval, webhooks or not."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            for payer in list(self.accounts):
                await self.refresh(payer)
            metrics.BALANCE_AGE.set(self.oldest_age())

    def oldest_age(self) -> float:
        now = self.clock()
        return max((now - a.read_at for a in self.accounts.values() if a.read_at is not None), default=0.0)

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

    def hold(self, payer: str, amount: Decimal, refused_status: int) -> CreditHold:
        """Holds `amount` for the payer, or refuses the call. Synchronous: no other call can take the
        same credits between the check and the hold."""
        account = self.account(payer)
        if account.read_at is None or self.clock() - account.read_at > self.settings.max_age_s:
            metrics.refusals("stale").inc()
            age = "never read" if account.read_at is None else f"last read {self.clock() - account.read_at:.0f} s ago"
            raise ProxyError(503, f"the credits of {payer} cannot be checked: Lago's balance is {age}",
                             "credits_unavailable", None, {"retry-after": "5"})
        held = self.holds.held(payer)
        available = account.available(self.metric, self.settings.currency, held)
        if available < amount:
            metrics.refusals("insufficient").inc()
            raise ProxyError(refused_status, f"insufficient_credits: {payer} has {_fmt(available)} "
                                             f"{self.settings.currency} of credits available; this call may cost up "
                                             f"to {_fmt(amount)}", "insufficient_credits", None,
                             {"x-should-retry": "false"})
        return CreditHold(self, payer, self.holds.take(payer, amount), amount)

    def info(self, payer: str) -> dict[str, Any]:
        """What /customer/info shows: the parts of `available`, exactly."""
        account = self.account(payer)
        held = self.holds.held(payer)
        return {"source": "lago", "currency": self.settings.currency,
                "lago_balance": account.balance(self.metric, self.settings.currency),
                "settled_not_invoiced": account.unapplied(), "holds": held,
                "available": account.available(self.metric, self.settings.currency, held),
                "balance_age_seconds": None if account.read_at is None else round(self.clock() - account.read_at, 3),
                "wallets": [{"lago_id": w.lago_id, "code": w.code, "balance_cents": w.balance_cents,
                             "priority": w.priority, "pays": w.pays(self.metric, self.settings.currency)}
                            for w in account.wallets if w.active]}
