"""The request path's Prometheus figures, tallied in plain Python and handed to prometheus_client in bulk.

prometheus_client takes a lock per increment and walks a histogram's buckets in Python for each
observation: a call made eight such updates after its reply (four counters, three histograms and the
request count). Here a call adds to a dict entry and finds its bucket with `bisect` (C), all under
one lock taken once (`LOCK`); `fold_all()` moves what was tallied into the real metrics — before
every collection (`FoldFirst`, registered ahead of every metric, so a scrape or a
`REGISTRY.get_sample_value` reads whole figures) and, with several workers (a scrape of one reads
every worker's files), once a second and at exit. The exposition is what the metrics alone would show.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from bisect import bisect_left
from typing import Any

log = logging.getLogger("llmbill.proxy")

LOCK = threading.Lock()  # held by the request path's adds (observe.py) and by fold_all's swap
_TALLIES: list[CounterTally | HistogramTally] = []


class CounterTally:
    """Increments of one labelled Counter, by label values (add under LOCK)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.pending: dict[tuple[str, ...], float] = {}
        _TALLIES.append(self)

    def add(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        pending = self.pending
        pending[labels] = pending.get(labels, 0.0) + amount

    def _fold_one(self, labels: tuple[str, ...], amount: float) -> None:
        self.metric.labels(*labels).inc(amount)

    def _merge(self, labels: tuple[str, ...], amount: float) -> None:
        self.add(labels, amount)


class HistogramTally:
    """Observations of one labelled Histogram: per label values, their sum and a count per bucket
    (the bucket prometheus_client would pick: the first upper bound >= the value, else +Inf)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        # The metric's own bounds without +Inf: bisect's "past the last" is the +Inf bucket.
        self.bounds = tuple(metric._upper_bounds[:-1])
        self.pending: dict[tuple[str, ...], list[float]] = {}
        _TALLIES.append(self)

    def add(self, labels: tuple[str, ...], value: float) -> None:
        entry = self.pending.get(labels)
        if entry is None:
            entry = self.pending[labels] = [0.0] * (len(self.bounds) + 2)  # sum, then one count a bucket
        entry[0] += value
        entry[1 + bisect_left(self.bounds, value)] += 1

    def _fold_one(self, labels: tuple[str, ...], entry: list[float]) -> None:
        child = self.metric.labels(*labels)
        # The child's own values (what observe() updates); checked against observe() by the tests.
        child._sum.inc(entry[0])
        for bucket, count in zip(child._buckets, entry[1:], strict=True):
            if count:
                bucket.inc(count)

    def _merge(self, labels: tuple[str, ...], entry: list[float]) -> None:
        mine = self.pending.get(labels)
        if mine is None:
            self.pending[labels] = entry
        else:
            mine[:] = [a + b for a, b in zip(mine, entry)]


def fold_all() -> None:
    """Moves every tally into its metric (any thread; the adds wait for the swap only). Never raises:
    what cannot be folded now (multiprocess files on a full disk) stays pending for the next fold."""
    with LOCK:
        taken: list[tuple[Any, dict[tuple[str, ...], Any]]] = []
        for tally in _TALLIES:
            if tally.pending:
                taken.append((tally, tally.pending))
                tally.pending = {}
    failed: list[tuple[Any, tuple[str, ...], Any]] = []
    error: Exception | None = None
    for tally, pending in taken:
        for labels, value in pending.items():
            try:
                # What can fail is labels(): a new child's values (in multiprocess mode, entries of
                # this worker's files); once made, its inc()s only write — so an entry is whole or untouched.
                tally._fold_one(labels, value)
            except Exception as exc:  # figures must never break a scrape or a shutdown
                error = exc
                failed.append((tally, labels, value))
    if failed:
        log.warning("metrics: %d figure(s) kept for the next fold: %s", len(failed), error)
        with LOCK:
            for tally, labels, value in failed:
                tally._merge(labels, value)


class FoldFirst:
    """A collector that collects nothing but folds the tallies first: registered before the metrics,
    it runs ahead of them in every collection of the registry."""

    def collect(self) -> list[Any]:
        fold_all()
        return []


async def fold_every(seconds: float = 1.0) -> None:
    """With several workers: this worker's figures reach the shared files at least this often."""
    while True:
        await asyncio.sleep(seconds)
        fold_all()
