"""One payer's credits, exactly: the wallets last read from Lago, and what this process settled
that Lago has not applied yet.

Lago lowers `balance_cents` only when an invoice applies credits; when it does, the wallet's
`consumed_credits` grows by the same amount. So the usage still to be applied is what this process
settled since it first read the payer, less what the wallets consumed since then (never below 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .wallets import Wallet


@dataclass
class Account:
    payer: str
    wallets: tuple[Wallet, ...] = ()
    read_at: float | None = None  # monotonic time of the last successful read; None: never read
    settled: Decimal = Decimal(0)  # settled by this process since the first read
    baseline: dict[str, Decimal] = field(default_factory=dict)  # wallet → consumed money at first sight

    def update(self, wallets: tuple[Wallet, ...], now: float) -> None:
        for w in wallets:
            self.baseline.setdefault(w.lago_id, w.consumed())
        self.wallets = wallets
        self.read_at = now

    def balance(self, metric: str, currency: str) -> Decimal:
        """Σ settled balances of the active wallets that may pay `metric` in `currency`."""
        return sum((w.balance() for w in self.wallets if w.pays(metric, currency)), Decimal(0))

    def applied(self) -> Decimal:
        """What invoices took from the wallets since this process first saw them."""
        return sum((w.consumed() - self.baseline.get(w.lago_id, w.consumed()) for w in self.wallets), Decimal(0))

    def unapplied(self) -> Decimal:
        return max(Decimal(0), self.settled - self.applied())

    def available(self, metric: str, currency: str, held: Decimal) -> Decimal:
        return self.balance(metric, currency) - self.unapplied() - held
