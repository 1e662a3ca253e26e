"""This process's part of a payer's shared tally (proxy/credits/tally.py): a running total, confirmed by
the scripts' replies, carried into a new tally only for what was settled since its seed was read.
The Redis side is in test_credits_redis.py."""

from __future__ import annotations

from llmbill.proxy.credits.tally import ROTATE, Tally

T0 = 1_800_000_000.0


def test_settles_make_a_running_total_kept_by_second_until_confirmed() -> None:
    t = Tally()
    t.learn("one", made=T0, since=T0 - 100, counted=0, sent_for="")
    t.settled(T0 + 0.2, 30)
    t.settled(T0 + 0.7, 5)  # the same second: one entry
    t.settled(T0 + 1.5, 10)
    assert (t.total, t.confirmed, t.unconfirmed, t.pending) == (45, 0, [[T0 + 1, 35, 35], [T0 + 2, 10, 45]], True)
    assert t.args() == [t.origin, "one", 45, 0, 2, T0 + 1, 35, T0 + 2, 10]
    # a reply to a script sent before the last settle
    t.learn("one", made=T0, since=T0 - 100, counted=35, sent_for="one")
    assert (t.confirmed, t.unconfirmed) == (35, [[T0 + 2, 10, 45]])
    t.learn("one", made=T0, since=T0 - 100, counted=20, sent_for="one")  # older still, landing late: nothing goes back
    t.learn("one", made=T0, since=T0 - 100, counted=45, sent_for="one")
    assert (t.confirmed, t.unconfirmed, t.pending) == (45, [], False)


def test_a_new_tally_takes_only_what_was_settled_since_its_seed_was_read() -> None:
    t = Tally()
    t.learn("lost", made=T0, since=T0 - 100, counted=0, sent_for="")
    t.settled(T0 + 10, 30)  # in Lago when the new tally's seed was read at T0 + 20
    t.settled(T0 + 25, 7)  # settled after that read: Lago did not have it
    t.learn("new", made=T0 + 21, since=T0 + 20, counted=7, sent_for="lost")
    assert (t.tally, t.since, t.total, t.confirmed, t.unconfirmed) == ("new", T0 + 20, 7, 7, [])
    # a late reply from the lost tally changes nothing
    t.learn("lost", made=T0, since=T0 - 100, counted=37, sent_for="lost")
    assert (t.tally, t.total, t.confirmed) == ("new", 7, 7)


def test_a_rounded_up_second_counts_a_call_settled_just_before_the_seed_never_misses_one_after() -> None:
    t = Tally()
    t.settled(T0 + 19.5, 3)  # half a second before the read: its second ends after it, so it counts
    t.settled(T0 + 20.0001, 4)
    t.learn("new", made=T0 + 21, since=T0 + 20, counted=7, sent_for="")
    assert (t.total, t.confirmed) == (7, 7)


def test_a_process_that_never_saw_a_tally_and_a_reply_without_one() -> None:
    t = Tally()
    t.settled(T0, 5)
    t.learn("", made=0, since=0, counted=0, sent_for="")  # Redis has no tally: nothing counted, everything kept
    assert (t.tally, t.total, t.unconfirmed) == ("", 5, [[T0, 5, 5]])
    t.learn("old", made=T0 - 500, since=T0 - 400, counted=5, sent_for="")
    assert (t.tally, t.total, t.confirmed, t.pending) == ("old", 5, 5, False)


def test_a_total_near_the_exact_limit_starts_afresh_once_all_of_it_is_counted() -> None:
    t = Tally()
    t.learn("one", made=T0, since=T0, counted=0, sent_for="")
    t.settled(T0 + 1, ROTATE)
    first = t.origin
    t.learn("one", made=T0, since=T0, counted=ROTATE - 1, sent_for="one")
    assert t.origin == first  # not all counted yet
    t.learn("one", made=T0, since=T0, counted=ROTATE, sent_for="one")
    assert t.origin != first and (t.total, t.confirmed, t.tally) == (0, 0, "one")


def test_a_script_sent_for_this_tally_that_found_an_older_one_moves_to_it() -> None:
    """Redis restored from an older snapshot: its tally is older than the one this process counts in,
    yet it is what Redis has now (a late reply naming it changes nothing, one sent for ours does)."""
    t = Tally()
    t.learn("restored", made=T0, since=T0 - 100, counted=0, sent_for="")
    t.learn("latest", made=T0 + 50, since=T0 + 40, counted=0, sent_for="restored")
    t.settled(T0 + 60, 9)
    t.learn("restored", made=T0, since=T0 - 100, counted=0, sent_for="restored")  # late: sent before the move
    assert (t.tally, t.total, t.confirmed) == ("latest", 9, 0)
    t.learn("restored", made=T0, since=T0 - 100, counted=9, sent_for="latest")
    assert (t.tally, t.total, t.confirmed, t.pending) == ("restored", 9, 9, False)
