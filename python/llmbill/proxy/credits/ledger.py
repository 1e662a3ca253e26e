"""Where the check "available ≥ hold" and the take happen, and where settled usage is counted.

LocalLedger: in this process (LocalHolds and the Account's own tally). The check and the take are
one step because the event loop never switches in between (no await), so one process never spends
the same credits twice. Its bound, without Redis: every process gates on Lago's balance less what
*it* settled and holds, so N processes (workers or replicas) can together spend up to N times what
is left between two invoices; each sees the others' usage only as far as Lago had it at its first
read of the payer (seed.py).

RedisLedger (redis_ledger.py): the same check over every process's holds and settled usage, in one
Redis script.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from .account import Account
from .holds import LocalHolds


@dataclass(frozen=True)
class Figures:
    """The parts of `available`, as the ledger that gated saw them."""

    balance: Decimal
    unapplied: Decimal
    held: Decimal
    shared: bool  # True: every process's usage and holds (Redis); False: this process's

    @property
    def available(self) -> Decimal:
        return self.balance - self.unapplied - self.held


@dataclass(frozen=True)
class HoldRef:
    """A hold as its ledger knows it."""

    ident: str
    local: bool
    mirror: int = 0  # a shared hold's copy in this process's holds (what fail_open counts while Redis is down)


class Unseeded(Exception):
    """The shared ledger has no tally for the payer (new, or Redis lost it): it needs a fresh seed."""


class Ledger(Protocol):
    async def hold(self, account: Account, balance: Decimal, amount: Decimal) -> tuple[HoldRef | None, Figures]:
        """Holds `amount` when available ≥ amount (None when not), in one step; the figures checked."""

    async def figures(self, account: Account, balance: Decimal) -> Figures: ...

    def local(self, account: Account, balance: Decimal) -> Figures:
        """This process's view, without asking anyone (what is shown when the ledger cannot answer)."""

    def settle(self, account: Account, ref: HoldRef, charge: Decimal) -> None:
        """Ends the hold and counts the charge as settled, unapplied usage (never awaits)."""

    def release(self, account: Account, ref: HoldRef) -> None:
        """Ends the hold, nothing spent (never awaits)."""

    async def sync(self) -> None:
        """Pushes what could not be written yet (Redis down); nothing to do in process."""

    async def close(self) -> None: ...


class LocalLedger:
    def __init__(self) -> None:
        self.holds = LocalHolds()

    def check(self, account: Account, balance: Decimal) -> Figures:
        return Figures(balance, account.unapplied(), self.holds.held(account.payer), shared=False)

    local = check

    def take(self, account: Account, balance: Decimal, amount: Decimal) -> tuple[HoldRef | None, Figures]:
        figures = self.check(account, balance)
        if figures.available < amount:
            return None, figures
        return HoldRef(str(self.holds.take(account.payer, amount)), local=True), figures

    async def hold(self, account: Account, balance: Decimal, amount: Decimal) -> tuple[HoldRef | None, Figures]:
        return self.take(account, balance, amount)

    async def figures(self, account: Account, balance: Decimal) -> Figures:
        return self.check(account, balance)

    def settle(self, account: Account, ref: HoldRef, charge: Decimal) -> None:
        self.holds.drop(int(ref.ident))
        account.settled += charge

    def release(self, account: Account, ref: HoldRef) -> None:
        self.holds.drop(int(ref.ident))

    async def sync(self) -> None:
        return None

    async def close(self) -> None:
        return None
