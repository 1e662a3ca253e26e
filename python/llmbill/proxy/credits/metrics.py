"""Prometheus figures for credits: refusals by reason, wallet reads, the oldest balance's age."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from ..metrics import Children

REFUSALS = Counter("llmbill_credit_refusals", "Calls refused by the credit gate, by reason "
                   "(insufficient: not enough credits; stale: Lago's balance too old or never read)", ["reason"])
REFRESHES = Counter("llmbill_credit_wallet_reads", "Wallet reads from Lago, by outcome", ["outcome"])
WEBHOOKS = Counter("llmbill_credit_webhooks", "Lago webhooks received, by outcome (accepted, forged)", ["outcome"])
BALANCE_AGE = Gauge("llmbill_credit_balance_age_seconds", "Age of the oldest wallet balance this process gates with",
                    multiprocess_mode="livemax")

refusals = Children(REFUSALS)
refreshes = Children(REFRESHES)
webhooks = Children(WEBHOOKS)
