"""Capacity discovered, not configured (engine/capacity.py), and the engine's memory of
time that feeds it (engine/timing.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.capacity import AHEAD_MIN, INITIAL, PROBE_EVERY, Capacity, FreeRate
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.runtimes import Estimate
from orchestrator.engine.timing import Learned, Timing


def test_it_starts_small_and_grows_while_probes_find_room() -> None:
    capacity = Capacity.start(ceiling=200)
    assert (capacity.value, capacity.room, capacity.full) == (INITIAL, 0, False)
    rounds = 0
    while capacity.value < 200:
        # Every job in flight was running when its probe looked: room for them all.
        assert capacity.probe_due(submits_since_probe=0)
        capacity = capacity.probed(in_flight_before=capacity.value - 1, queued=False)
        rounds += 1
    assert rounds <= 6  # slow start: doubles each round until a probe finds it full
    assert Capacity.start(ceiling=3).value == 3  # never above the user's bound
    bounded = Capacity.start(ceiling=10).probed(in_flight_before=9, queued=False)
    assert bounded.value == 10
    assert not bounded.probe_due(0)


@pytest.mark.parametrize(
    ("slots", "target"),
    [(1, INITIAL), (8, 8 + AHEAD_MIN + 2), (50, 50 + AHEAD_MIN + 13), (500, 200)],
)
def test_the_most_seen_running_plus_a_few_ahead(slots: int, target: int) -> None:
    capacity = Capacity.start(ceiling=200)
    for in_flight in range(600):
        capacity = capacity.probed(in_flight, queued=in_flight >= slots)
    assert capacity.room == min(slots, 600)
    assert capacity.target == target
    assert capacity.value == target
    assert capacity.full == (slots < 600)


def test_once_full_only_one_job_in_a_few_is_probed() -> None:
    full = Capacity.start(ceiling=200).probed(19, queued=False).probed(30, queued=True)
    assert (full.room, full.full) == (20, True)
    due = [full.probe_due(n) for n in range(PROBE_EVERY)]
    assert due == [False] * (PROBE_EVERY - 1) + [True]
    # A probe that finds room again (the account grew, or others' jobs left it) resumes
    # probing every job, from a higher mark.
    grown = full.probed(25, queued=False)
    assert (grown.room, grown.full, grown.probe_due(0)) == (26, False, True)
    assert grown.probed(3, queued=False).room == 26  # the mark never falls


def test_a_429_halves_the_limit_and_accepted_submits_regrow_it() -> None:
    capacity = Capacity.start(ceiling=200).probed(49, queued=False)
    before = capacity.value
    throttled = capacity.throttled()
    assert throttled.value == before // 2
    assert throttled.throttled().value == before // 4
    regrown = throttled
    steps = 0
    while regrown.throttled_to is not None:
        regrown = regrown.accepted()
        steps += 1
    assert regrown.value == before
    assert steps > before // 2
    assert capacity.accepted() is capacity


def test_queue_waits_need_a_rate() -> None:
    assert FreeRate().wait(5) is None
    assert FreeRate().noticed(0.0).wait(5) is None  # one finish: no gap yet
    two_a_second = FreeRate().noticed(0.0).noticed(0.5)
    assert two_a_second.wait(5) == 2.5
    assert two_a_second.wait(-3) == 0.0


def test_the_free_rate_follows_the_gaps_between_finishes() -> None:
    rate = FreeRate()
    assert rate.per_second is None
    for at in range(0, 100, 4):
        rate = rate.noticed(float(at))
    assert rate.per_second == pytest.approx(0.25)
    assert FreeRate().noticed(1.0).noticed(1.0).per_second == 1000.0  # same instant: bounded


@settings(max_examples=200, deadline=None)
@given(
    ceiling=st.integers(min_value=1, max_value=1000),
    events=st.lists(
        st.tuples(st.sampled_from(["room", "full", "429", "ok"]), st.integers(0, 2000)),
        max_size=200,
    ),
)
@pytest.mark.slow
def test_the_limit_stays_between_one_and_the_users_bound(
    ceiling: int, events: list[tuple[str, int]]
) -> None:
    capacity = Capacity.start(ceiling)
    for kind, in_flight in events:
        if kind in ("room", "full"):
            capacity = capacity.probed(in_flight, queued=kind == "full")
        elif kind == "429":
            capacity = capacity.throttled()
        else:
            capacity = capacity.accepted()
        assert 1 <= capacity.value <= ceiling
        # Within what probes showed: twice it during slow start, a few ahead after it.
        margin = capacity.room if not capacity.seen_full else capacity.ahead
        assert capacity.value <= max(INITIAL, capacity.room + max(margin, capacity.ahead))


POLICY = PollPolicy(minimum=1.0, maximum=60.0, jitter=0.0)


def timing(ceiling: int = 100) -> Timing:
    return Timing(POLICY, ceiling=ceiling, rng=random.Random(0))


def test_probes_come_early_and_the_rest_look_at_the_estimate() -> None:
    clock = timing()
    clock.load([Learned("k", "m", Estimate(40.0, 4.0, 9))])
    assert clock.expected("k") == (40.0, 44.0)
    assert clock.submitted(1, "k", sent=0.0, accepted=0.1) == 1.0  # a probe: look soon
    clock.looked(1, "in_queue", at=1.0, position=1)  # the probe found the account full
    assert clock.capacity.full
    # Not probed now: the first look at the typical finish.
    assert clock.submitted(2, "k", sent=1.0, accepted=1.1) == 40.0
    bounded = timing(ceiling=1)  # nothing to learn: the user's bound is the limit
    bounded.load([Learned("k", "m", Estimate(40.0, 4.0, 9))])
    assert bounded.submitted(1, "k", sent=0.0, accepted=0.1) == 40.0


def test_probes_teach_the_capacity_and_the_room_to_submit() -> None:
    clock = timing(ceiling=100)
    for row in range(1, 9):
        assert clock.submitted(row, "k", sent=0.0, accepted=0.1) == 1.0  # all probed
    assert clock.in_flight == 8
    assert clock.room(submitting=0) == 0
    for row in range(1, 8):
        clock.looked(row, "in_progress", at=1.0)
    clock.done(8, at=1.0)  # already done at its probe: it ran too
    assert clock.capacity.room == 8
    assert clock.room(submitting=0) == 8  # 8 seen at once: slow start doubles it
    clock.submitted(9, "k", sent=2.0, accepted=2.1)
    clock.looked(9, "in_queue", at=3.0, position=1)
    assert clock.capacity.full
    assert clock.capacity.room == 8
    assert clock.room(submitting=0) == 8 + AHEAD_MIN + 2 - 9  # then a few ahead only


def test_a_finished_job_teaches_its_key_once_and_is_forgotten() -> None:
    clock = timing()
    clock.submitted(1, "k", sent=0.0, accepted=0.1)
    clock.looked(1, "in_progress", at=1.0)
    clock.looked(1, "in_progress", at=9.0)
    clock.done(1, at=10.0)
    constant = ("2026-12-01T10:00:00+00:00", None, "2026-12-01T10:01:00+00:00")
    evidence = clock.finished(1, at=10.1, succeeded=True, stamps=constant, slack=0.1)
    assert evidence is not None
    assert evidence.verdict == "contradict"
    assert clock.stamps_dropped
    assert clock.in_flight == 0
    assert 8.0 <= clock.estimates["k"].typical <= 10.0  # from the looks, not the 60 s stamps
    assert [row.key for row in clock.changed()] == ["k"]
    assert clock.changed() == []
    # Once dropped, later stamps are not even read.
    clock.submitted(2, "k", sent=20.0, accepted=20.1)
    clock.done(2, at=29.0)
    later = clock.finished(2, at=29.1, succeeded=True, stamps=constant, slack=0.1)
    assert later is not None
    assert later.verdict == "absent"
    # A failure teaches nothing; an unknown job neither.
    clock.submitted(3, "k", sent=30.0, accepted=30.1)
    assert clock.finished(3, at=31.0, succeeded=False, stamps=constant, slack=0.1) is None
    assert clock.finished(99, at=31.0, succeeded=True, stamps=constant, slack=0.1) is None


def test_adopted_jobs_count_in_flight_and_queued_ones_wait_by_their_place() -> None:
    clock = timing(ceiling=4)
    clock.adopted(1, "k")
    clock.adopted(2, "k")
    assert clock.in_flight == 2
    assert clock.room(submitting=1) == 1
    clock.looked(1, "in_progress", at=5.0)
    # No free rate yet: a queued job backs off geometrically.
    assert clock.looked(2, "in_queue", at=5.0, position=3) == 1.0
    assert clock.looked(2, "in_queue", at=10.0, position=3) == pytest.approx(1.0)
    clock.free_rate = FreeRate().noticed(0.0).noticed(2.0)
    assert clock.looked(2, "in_queue", at=12.0, position=3) == pytest.approx(4.0 + 1.0)
    clock.forget(1)
    clock.forget(2)
    assert clock.in_flight == 0


def test_a_job_submitted_behind_others_is_looked_at_after_its_wait() -> None:
    clock = timing(ceiling=100)
    clock.load([Learned("k", "m", Estimate(40.0, 4.0, 9))])
    clock.free_rate = FreeRate().noticed(0.0).noticed(0.5)  # two places a second
    # Probes find the account full with six jobs ahead of a new one, each time.
    for row in range(1, 40):
        clock.submitted(row, "k", sent=0.0, accepted=0.0)
        if row in clock._probes:
            clock.looked(row, "in_queue", at=1.0, position=6)
    assert clock.capacity.full
    assert 2.0 < clock._depth <= 6.0
    # Not a probe: the first look after the wait (six places at two a second) plus the
    # typical run, and once running its elapsed time counts from that expected start.
    row = 100
    while clock.capacity.probe_due(clock._since_probe):
        clock.submitted(row, "k", sent=10.0, accepted=10.0)
        row += 1
    first = clock.submitted(row, "k", sent=10.0, accepted=10.0)
    wait = round(clock._depth) / 2.0
    assert first == pytest.approx(wait + 40.0)
    assert wait >= 1.0
    # Seen running at 60 s, past the late end (44 s): its elapsed time counts from the
    # expected start at 10 s + wait, so the next look is 15% of 50 s - wait, not of 50 s.
    late = clock.looked(row, "in_progress", at=60.0)
    assert late == pytest.approx(0.15 * (60.0 - 10.0 - wait))
    # A probe that finds room empties the expected queue.
    for probe in list(clock._probes):
        clock.looked(probe, "in_progress", at=53.0)
    assert clock._depth < 6.0
