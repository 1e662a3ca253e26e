"""One payer's credits, exactly: the wallets last read from Lago, and the usage settled that Lago has
not applied yet.

Lago lowers `balance_cents` only when an invoice applies credits; when it does, the wallet's
`consumed_credits` grows by the same amount. So the usage still to be applied is what was settled
since the payer was first read (`settled`, seeded at that read with the usage Lago already had but
had not invoiced: seed.py), less what the applicable wallets consumed since then. Each read moves
the wallets' baseline to what they consumed and takes that from `settled` (never below 0): what an
invoice applied beyond our usage (a subscription fee, taxes) is not ours, and must not let later
usage through. The same arithmetic runs in Redis for the shared ledger (lua/credit_hold.lua).
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
    settled: Decimal = Decimal(0)  # usage settled and not yet applied, as of the last read
    baseline: dict[str, Decimal] = field(default_factory=dict)  # wallet → consumed money at the last read
    seed: Decimal | None = None  # the durable seed read with the wallets, until the shared ledger took it
    seeded_at: float = 0.0  # when that seed was read (wall clock: seed.py)

    def update(self, wallets: tuple[Wallet, ...], now: float, metric: str, currency: str,
               seed: Decimal | None = None, seeded_at: float = 0.0) -> None:
        """Takes a newer read. `seed` (the usage Lago had not invoiced, read just before these
        wallets) starts the tally at the first read; later reads move the baseline forward."""
        if self.read_at is None and seed is not None:
            self.settled = seed
        applied = Decimal(0)
        for w in wallets:
            consumed = w.consumed()
            if w.could_pay(metric, currency):
                applied += max(Decimal(0), consumed - self.baseline.get(w.lago_id, consumed))
            self.baseline[w.lago_id] = consumed
        self.settled = max(Decimal(0), self.settled - applied)
        if seed is not None:
            self.seed, self.seeded_at = seed, seeded_at
        self.wallets = wallets
        self.read_at = now

    def balance(self, metric: str, currency: str) -> Decimal:
        """Σ settled balances of the active wallets that may pay `metric` in `currency`."""
        return sum((w.balance() for w in self.wallets if w.pays(metric, currency)), Decimal(0))

    def unapplied(self) -> Decimal:
        return self.settled

    def available(self, metric: str, currency: str, held: Decimal) -> Decimal:
        return self.balance(metric, currency) - self.unapplied() - held
