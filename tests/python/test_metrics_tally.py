"""metrics_tally.py: what the request path tallies reaches Prometheus exactly as direct updates would."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from llmbill.proxy import metrics  # noqa: F401  (registers FoldFirst ahead of the metrics)
from llmbill.proxy.metrics_tally import LOCK, CounterTally, HistogramTally, fold_all

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# On a bound (le is inclusive), between bounds, past the last one (+Inf), zero, and repeats.
VALUES = (0.0, 0.001, 0.0010001, 0.01, 0.05, 0.1, 1.0, 1.5, 30.0, 0.001, 0.0005)


def _pair(name: str) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    direct_reg, tallied_reg = CollectorRegistry(), CollectorRegistry()
    direct = Histogram(name, "h", ["route"], buckets=BUCKETS, registry=direct_reg)
    tallied = Histogram(name, "h", ["route"], buckets=BUCKETS, registry=tallied_reg)
    return direct_reg, direct, tallied_reg, tallied


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples if not s.name.endswith("_created")}


def test_a_folded_histogram_shows_what_observe_would_have() -> None:
    direct_reg, direct, tallied_reg, tallied = _pair("tally_hist")
    tally = HistogramTally(tallied)  # the metric's own bounds
    for i, value in enumerate(VALUES):
        route = "a" if i % 3 else "b"
        direct.labels(route).observe(value)
        with LOCK:
            tally.add((route,), value)
    fold_all()
    assert _samples(tallied_reg) == _samples(direct_reg)
    assert _samples(tallied_reg)[("tally_hist_bucket", (("le", "+Inf"), ("route", "a")))] > 0
    # Folding again adds nothing; new observations add on top.
    fold_all()
    with LOCK:
        tally.add(("a",), 0.001)
    direct.labels("a").observe(0.001)
    fold_all()
    assert _samples(tallied_reg) == _samples(direct_reg)


def test_a_folded_counter_sums_its_adds_by_labels() -> None:
    registry = CollectorRegistry()
    counter = Counter("tally_count", "c", ["model", "team"], registry=registry)
    tally = CounterTally(counter)
    with LOCK:
        for _ in range(5):
            tally.add(("m", "t"))
        tally.add(("m", "u"), 2.5)
    assert registry.get_sample_value("tally_count_total", {"model": "m", "team": "t"}) is None  # not yet folded
    fold_all()
    assert registry.get_sample_value("tally_count_total", {"model": "m", "team": "t"}) == 5.0
    assert registry.get_sample_value("tally_count_total", {"model": "m", "team": "u"}) == 2.5


def test_the_default_registry_folds_before_it_is_read() -> None:
    """A scrape (or any collection of REGISTRY) sees the tallies without anyone calling fold_all."""
    with LOCK:
        metrics.requests.add(("/tally-route", "tally-model", "200"), 3)
        metrics.request_seconds.add(("/tally-route", "tally-model"), 0.2)
    labels = {"route": "/tally-route", "model": "tally-model"}
    assert REGISTRY.get_sample_value("llmbill_requests_total", {**labels, "status": "200"}) == 3.0
    assert REGISTRY.get_sample_value("llmbill_request_duration_seconds_count", labels) == 1.0
    assert REGISTRY.get_sample_value("llmbill_request_duration_seconds_bucket", {**labels, "le": "0.25"}) == 1.0
    assert b'llmbill_requests_total{model="tally-model",route="/tally-route",status="200"} 3.0' in generate_latest()


def test_folds_on_another_thread_lose_no_add() -> None:
    registry = CollectorRegistry()
    counter = Counter("tally_race", "c", ["k"], registry=registry)
    tally = CounterTally(counter)
    adds, done = 50_000, threading.Event()

    def folder() -> None:
        while not done.is_set():
            fold_all()

    thread = threading.Thread(target=folder)
    thread.start()
    try:
        for i in range(adds):
            with LOCK:
                tally.add((str(i % 3),))
    finally:
        done.set()
        thread.join()
    fold_all()
    assert sum(registry.get_sample_value("tally_race_total", {"k": k}) or 0.0 for k in "012") == adds


def test_a_fold_that_fails_keeps_the_figures_for_the_next_one() -> None:
    """A child that cannot be made now (multiprocess files on a full disk) breaks neither the scrape
    nor the shutdown: its figures wait, merged with what comes meanwhile, and are folded later whole."""
    direct_reg, direct, tallied_reg, tallied = _pair("tally_fail")
    tally = HistogramTally(tallied)
    real_labels = tallied.labels
    failing = True

    def labels(*values: str) -> object:
        if failing:
            raise OSError("No space left on device")
        return real_labels(*values)

    tallied.labels = labels  # type: ignore[method-assign,assignment]
    for value in (0.001, 0.5):
        direct.labels("a").observe(value)
        with LOCK:
            tally.add(("a",), value)
    fold_all()  # does not raise
    assert tally.pending[("a",)][0] == 0.501
    direct.labels("a").observe(3.0)
    with LOCK:
        tally.add(("a",), 3.0)  # merged with what the failed fold kept
    failing = False
    fold_all()
    assert tally.pending == {}
    assert _samples(tallied_reg) == _samples(direct_reg)
