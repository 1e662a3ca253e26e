"""Prometheus figures for credits: refusals by reason, wallet reads, webhooks and their relays to the
other proxies, and how old the balances that gate are (the oldest, and how many are too old to gate)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from ..metrics import Children

REFUSAL_REASONS = ("insufficient", "stale", "redis", "unpriced", "no_lago")
REFUSALS = Counter("llmbill_credit_refusals", "Calls refused by the credit gate, by reason (insufficient: not enough "
                   "credits; stale: Lago's balance too old, never read, or the shared tally not seeded; redis: the "
                   "shared holds unreachable under fail_closed; unpriced: a model without a price to hold; no_lago: "
                   "credits asked for on a proxy without Lago)", ["reason"])
REFRESHES = Counter("llmbill_credit_wallet_reads", "Wallet reads from Lago, by outcome", ["outcome"])
WEBHOOKS = Counter("llmbill_credit_webhooks", "Lago webhooks received, by outcome (accepted, forged)", ["outcome"])
RELAYS = Counter("llmbill_credit_relays", "Lago changes relayed between proxies through Redis, by outcome "
                 "(published, publish_failed, received)", ["outcome"])
BALANCE_AGE = Gauge("llmbill_credit_balance_age_seconds", "Age of the oldest wallet balance this process gates with",
                    multiprocess_mode="livemax")
STALE_BALANCES = Gauge("llmbill_credit_stale_balances", "Payers whose last wallet balance is older than "
                       "credits_settings.max_age_seconds: their calls are refused until Lago is read again",
                       multiprocess_mode="livemax")

refusals = Children(REFUSALS)
refreshes = Children(REFRESHES)
webhooks = Children(WEBHOOKS)
relays = Children(RELAYS)


def expose_zeros() -> None:
    """Every refusal reason and read outcome at 0 from the start, so an alert on their rate has a series
    before the first refusal."""
    for reason in REFUSAL_REASONS:
        refusals(reason)
    for outcome in ("ok", "failed"):
        refreshes(outcome)
