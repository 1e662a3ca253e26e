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


def test_try_admit_takes_every_slot_or_none() -> None:
    from llmbill.proxy.limits import Refusal, Slot

    limiter = Limiter()
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % 60
    both = [Slot(("key", "k"), Decimal(2), Decimal(10), rpm=5), Slot(("team", "t"), Decimal(2), Decimal(2))]
    assert limiter.try_admit(both, now=t0) is None
    assert limiter.try_admit(both, now=t0) == Refusal(1, "budget", Decimal(2), 0.0)  # the team holds 2 of its 2
    assert limiter.reserved_for(("key", "k")) == Decimal(2)  # the refused call took nothing from the key
    assert limiter.minutes[("key", "k")].requests == 1
    limiter.release_slots(both, 0, now=t0)
    assert limiter.reserved == {} and limiter.inflight == {}


def test_a_slot_without_rate_limits_is_counted_like_one_with_them() -> None:
    """try_admit skips the rate check of a slot that has no rpm, tpm or parallel limit: the call is
    still counted in the entity's minute and in flight, so a limit set later sees it."""
    from llmbill.proxy.limits import Slot

    limiter = Limiter()
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % 60
    plain, limited = Slot(("customer", "c"), Decimal(1)), Slot(("customer", "c"), Decimal(1), rpm=2)
    assert limiter.try_admit([plain], now=t0) is None
    assert limiter.minutes[("customer", "c")].requests == 1 and limiter.inflight[("customer", "c")] == 1
    assert limiter.try_admit([limited], now=t0 + 1) is None
    refused = limiter.try_admit([limited], now=t0 + 2)  # two this minute: the unlimited one counted
    assert refused is not None and refused.limit == "rpm"
    limiter.release_slots([plain, limited], 5, now=t0 + 3)
    assert limiter.minutes[("customer", "c")].tokens == 10 and limiter.inflight == {}
