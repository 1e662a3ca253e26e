"""The limiter's memory (proxy/limits.py): follows the entities active in the current minute, not
every id ever seen (issue 13, item 9)."""

from __future__ import annotations

from decimal import Decimal

from llmbill.proxy.limits import Limiter


def test_minutes_of_idle_entities_are_dropped_when_their_window_passes() -> None:
    limiter = Limiter()
    t0 = 6000.0  # the start of a minute
    for i in range(10_000):
        entity = ("customer", f"c{i}")
        assert limiter.rate_check(entity, 10, None, None, now=t0 + 1) is None
        limiter.admit(entity, Decimal("0.5"), now=t0 + 1)
        limiter.release(entity, Decimal("0.5"), 7, now=t0 + 2)
    assert len(limiter.minutes) == 10_000
    assert not limiter.reserved and not limiter.inflight  # released: nothing held
    limiter.admit(("customer", "next-minute"), Decimal(0), now=t0 + 61)
    assert list(limiter.minutes) == [("customer", "next-minute")]


def test_counts_of_the_current_minute_survive_a_sweep() -> None:
    limiter = Limiter()
    t0 = 6000.0
    limiter.admit(("key", "old"), Decimal(0), now=t0 + 59)
    limiter.admit(("key", "k"), Decimal(0), now=t0 + 60)
    limiter.admit(("key", "k"), Decimal(0), now=t0 + 61)
    assert limiter.rate_check(("key", "k"), 2, None, None, now=t0 + 62) is not None  # 2 requests this minute
    assert ("key", "old") not in limiter.minutes
    assert limiter.rate_check(("key", "k"), 2, None, None, now=t0 + 121) is None
