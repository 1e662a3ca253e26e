"""The proxy's side of the core's limiter (proxy/limits.py): Slots in, Refusals out, amounts in the
core's units rounded towards refusing; and its memory, which follows the entities active in the
current minute, not every id ever seen (issue 13, item 9). The counting itself is tested in C++
(tests/cpp/limiter_test.cpp)."""

from __future__ import annotations

from decimal import Decimal

from llmbill.proxy.limits import Limiter, Refusal, Slot, money_units, usd_of_units

T0 = 1_800_000_000.0  # the start of a minute


def test_minutes_of_idle_entities_are_dropped_when_their_window_passes() -> None:
    limiter = Limiter()
    for i in range(10_000):
        slot = Slot(("customer", f"c{i}"), Decimal("0.5"), rpm=10)
        assert limiter.try_admit([slot], now=T0 + 1) is None
        limiter.release_slots([slot], 7, now=T0 + 2)
    assert limiter.core.minutes_held() == 10_000
    assert limiter.core.reservations_held() == 0 and limiter.core.in_flight_held() == 0  # released: nothing held
    limiter.count_request(("customer", "next-minute"), now=T0 + 61)
    assert limiter.core.minutes_held() == 1


def test_counts_of_the_current_minute_survive_a_sweep() -> None:
    limiter = Limiter()
    limiter.count_request(("key", "old"), now=T0 + 59)
    limiter.count_request(("key", "k"), now=T0 + 60)
    limiter.count_request(("key", "k"), now=T0 + 61)
    assert limiter.rate_check(("key", "k"), 2, None, None, now=T0 + 62) == ("rpm limit 2", 58.0)
    assert limiter.minute_of(("key", "old")) == (-1, 0, 0)
    assert limiter.rate_check(("key", "k"), 2, None, None, now=T0 + 121) is None


def test_try_admit_takes_every_slot_or_none() -> None:
    limiter = Limiter()
    both = [Slot(("key", "k"), Decimal(2), Decimal(10), rpm=5), Slot(("team", "t"), Decimal(2), Decimal(2))]
    assert limiter.try_admit(both, now=T0) is None
    assert limiter.try_admit(both, now=T0) == Refusal(1, "budget", Decimal(2), 0.0)  # the team holds 2 of its 2
    assert limiter.reserved_for(("key", "k")) == Decimal(2)  # the refused call took nothing from the key
    assert limiter.minute_of(("key", "k"))[1] == 1
    limiter.release_slots(both, 0, now=T0)
    assert limiter.core.reservations_held() == 0 and limiter.core.in_flight_held() == 0


def test_a_slot_without_rate_limits_is_counted_like_one_with_them() -> None:
    """A slot with no rpm, tpm or parallel limit is not rate-checked, but the call is still counted
    in the entity's minute and in flight, so a limit set later sees it."""
    limiter = Limiter()
    plain, limited = Slot(("customer", "c"), Decimal(1)), Slot(("customer", "c"), Decimal(1), rpm=2)
    assert limiter.try_admit([plain], now=T0) is None
    assert limiter.minute_of(("customer", "c"))[1] == 1 and limiter.in_flight(("customer", "c")) == 1
    assert limiter.try_admit([limited], now=T0 + 1) is None
    refused = limiter.try_admit([limited], now=T0 + 2)  # two this minute: the unlimited one counted
    assert refused is not None and refused.limit == "rpm"
    limiter.release_slots([plain, limited], 5, now=T0 + 3)
    assert limiter.minute_of(("customer", "c"))[2] == 10 and limiter.core.in_flight_held() == 0


def test_amounts_finer_than_the_cores_unit_round_towards_refusing() -> None:
    """A headroom of 1.5 units is 1 (refused once 1 unit is held), an amount of 1.5 units holds 2."""
    assert money_units(Decimal("1.5E-19"), up=False) == 1 and money_units(Decimal("1.5E-19"), up=True) == 2
    assert money_units(Decimal("-1.5E-19"), up=False) == -2
    assert money_units(Decimal("123456789012.0000000000000000001"), up=True) == 1234567890120000000000000000001
    limiter = Limiter()
    slot = Slot(("key", "k"), Decimal("1E-19"), Decimal("1.5E-19"))
    assert limiter.try_admit([slot], now=T0) is None
    assert limiter.try_admit([slot], now=T0) is not None
    assert usd_of_units(25 * 10**15) == Decimal("0.0025") and str(usd_of_units(10**21)) == "100"
