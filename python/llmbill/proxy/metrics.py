"""Prometheus metrics (GET /metrics), with prometheus_client.

With `--workers` > 1 every worker writes its figures to PROMETHEUS_MULTIPROC_DIR (set by
`llmbill-proxy` before any worker imports prometheus_client) and a scrape of any worker sums them
all, so the figures are whole. Label sets are bounded: routes come from the route table, models from
the config (a wildcard deployment's calls are all labelled "*", whatever name the client sent), teams
from the store; customers are never labels.

Spend is a float counter, as every Prometheus value is: it is for watching. The exact figures are
in the spend logs and in Lago (`llmbill reconcile`).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from .metrics_tally import CounterTally, FoldFirst, HistogramTally, fold_all

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ADDED = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

# Ahead of every metric: a collection folds the request path's tallies before it reads them.
REGISTRY.register(FoldFirst())
REQUESTS = Counter("llmbill_requests", "HTTP requests by route, model (LLM routes) and status",
                   ["route", "model", "status"])
REQUEST_SECONDS = Histogram("llmbill_request_duration_seconds", "Time from request to the end of the reply",
                            ["route", "model"], buckets=_LATENCY)
UPSTREAM_SECONDS = Histogram("llmbill_upstream_duration_seconds",
                             "Time the upstream took (to the first byte of a stream)", ["model"], buckets=_LATENCY)
ADDED_SECONDS = Histogram("llmbill_added_latency_seconds", "Time spent in the proxy itself: request minus upstream",
                          ["route", "model"], buckets=_ADDED)
TOKENS = Counter("llmbill_tokens", "Billed tokens by model, team and type (prompt, completion)",
                 ["model", "team", "type"])
SPEND = Counter("llmbill_spend_usd", "Billed cost in USD by model and team (float; exact figures: spend logs)",
                ["model", "team"])
BILLED_CALLS = Counter("llmbill_billed_calls", "Calls billed (settled) by model and team", ["model", "team"])
BUDGET_REFUSALS = Counter("llmbill_budget_refusals", "Calls refused for a budget, by kind", ["kind"])
BILLING_EVENTS = Counter("llmbill_billing_events",
                         "Lago events by outcome: enqueued, delivered, retried, dead_lettered, duplicates, held",
                         ["outcome"])
PENDING = Gauge("llmbill_billing_pending_events", "Lago events queued or in flight", multiprocess_mode="livesum")
SPOOL_BYTES = Gauge("llmbill_billing_spool_bytes", "Bytes in the durable spools", multiprocess_mode="livesum")
UNSPOOLED = Gauge("llmbill_billing_unspooled_events", "Lago events held in memory because the spool could not take "
                  "them (retried until durable; billable calls are refused meanwhile)", multiprocess_mode="livesum")
OLDEST_PENDING = Gauge("llmbill_billing_oldest_undelivered_age_seconds",
                       "Age of the oldest event not yet delivered (by its own timestamp)", multiprocess_mode="livemax")
DEAD_LETTERS = Gauge("llmbill_billing_dead_letters", "Dead letters in every spool slot", multiprocess_mode="livemax")
OLDEST_DEAD_LETTER = Gauge("llmbill_billing_oldest_dead_letter_age_seconds", "Age of the oldest dead letter",
                           multiprocess_mode="livemax")
HELD_CODES = Gauge("llmbill_billing_held_codes", "Configured event codes Lago does not know (their events are "
                   "dead-lettered)", multiprocess_mode="livemax")
HELD_SUBSCRIPTIONS = Gauge("llmbill_billing_held_subscriptions", "Billed ids without an active Lago subscription "
                           "(their events are dead-lettered)", multiprocess_mode="livemax")
SPEND_DEAD_LETTERS = Counter("llmbill_spend_dead_lettered_calls",
                             "Calls whose spend the database refused to store (logged; the Lago event is unaffected)")
WEBHOOK_DELIVERIES = Counter("llmbill_webhook_deliveries", "Webhook events delivered, by event", ["event"])
WEBHOOK_FAILURES = Counter("llmbill_webhook_failures", "Webhook delivery attempts that failed, by event", ["event"])
# Shared limits (redis_limits.py): 0 while any process finds Redis down (calls refused or limited per process).
REDIS_UP = Gauge("llmbill_redis_up", "1 while Redis (shared rate limits and reservations) answers, 0 when not",
                 multiprocess_mode="livemin")
REDIS_FAILURES = Counter("llmbill_redis_failures", "Redis commands that failed (connection or timeout)")

class Children:
    """A metric's labelled children, kept once made: `labels()` validates and locks on every call,
    and the request path should not pay for that (label sets are bounded, so the cache is too)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._made: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._made.get(labels)
        if child is None:
            child = self._made[labels] = self._metric.labels(*labels)
        return child


# The request path's figures (observe.py): tallied under metrics_tally.LOCK, folded in at collection.
requests = CounterTally(REQUESTS)
request_seconds = HistogramTally(REQUEST_SECONDS)
upstream_seconds = HistogramTally(UPSTREAM_SECONDS)
added_seconds = HistogramTally(ADDED_SECONDS)
tokens = CounterTally(TOKENS)
spend = CounterTally(SPEND)
billed_calls = CounterTally(BILLED_CALLS)

PIPELINE_OUTCOMES = ("enqueued", "delivered", "retried", "dead_lettered", "duplicates", "held")


def exposition() -> bytes:
    """The text a scrape gets: this process's figures, or every worker's in multiprocess mode."""
    if MULTIPROCESS:
        fold_all()  # this worker's tallies into its files; the others fold theirs every second
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def budget_kind(message: str, kind: str | None = None) -> str:
    """Which budget refused a call: `kind` when the refusal names it, else read from LiteLLM's
    message prefixes (docs/proxy-api.md)."""
    if kind:
        return kind
    if message.startswith("ExceededBudget: End User="):
        return "customer"
    if message.startswith("ExceededBudget: User="):
        return "user"
    if message.startswith("Budget has been exceeded! Team="):
        return "team"
    if message.startswith("Budget has been exceeded!"):
        return "key"
    return "other"


def webhook_delivered(event: str) -> None:
    """For the webhook sender: one event delivered."""
    WEBHOOK_DELIVERIES.labels(event).inc()


def webhook_failed(event: str) -> None:
    """For the webhook sender: one delivery attempt failed."""
    WEBHOOK_FAILURES.labels(event).inc()


class PipelineMirror:
    """Mirrors this process's pipeline counters (polled; the sender thread never calls Python) into
    Prometheus counters, by the increase since the last poll."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def sync(self, stats: dict[str, Any]) -> None:
        for outcome in PIPELINE_OUTCOMES:
            value = int(stats.get(outcome, 0))
            delta = value - self._last.get(outcome, 0)
            if delta > 0:
                BILLING_EVENTS.labels(outcome).inc(delta)
            self._last[outcome] = value
        PENDING.set(stats.get("pending", 0))
        SPOOL_BYTES.set(stats.get("spool_bytes", 0))
        UNSPOOLED.set(stats.get("unspooled", 0))
        OLDEST_PENDING.set(stats.get("oldest_pending_age_s", 0.0))


def set_dead_letters(count: int, oldest_age_s: float | None) -> None:
    DEAD_LETTERS.set(count)
    OLDEST_DEAD_LETTER.set(oldest_age_s or 0.0)


def mark_process_dead() -> None:
    """At a worker's exit: its last tallies reach its files, its live gauges leave the sums (multiprocess mode)."""
    if MULTIPROCESS:
        fold_all()
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
