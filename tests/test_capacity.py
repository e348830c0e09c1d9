"""Capacity discovered, not configured (engine/capacity.py), and the engine's memory of
time that feeds it (engine/timing.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.capacity import AHEAD_MIN, INITIAL, Capacity, FreeRate
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.runtimes import Estimate
from orchestrator.engine.timing import Learned, Timing


def test_it_starts_small_and_grows_while_the_account_has_room() -> None:
    capacity = Capacity.start(ceiling=200)
    assert (capacity.value, capacity.discovering, capacity.ahead) == (INITIAL, True, 0)
    for running in range(1, 40):
        capacity = capacity.saw_running(running)
    assert capacity.value == INITIAL + 39 and capacity.discovering
    assert Capacity.start(ceiling=3).value == 3  # never above the user's bound
    grown = Capacity.start(ceiling=10)
    for _ in range(20):
        grown = grown.saw_running(5)
    assert grown.value == 10 and not grown.discovering  # the bound itself: nothing to learn


@pytest.mark.parametrize(
    ("slots", "target"),
    [(1, 1 + AHEAD_MIN + 1), (8, 8 + AHEAD_MIN + 2), (50, 50 + AHEAD_MIN + 8), (500, 200)],
)
def test_a_job_seen_queued_shows_the_slots_and_a_few_are_kept_ahead(
    slots: int, target: int
) -> None:
    capacity = Capacity.start(ceiling=200)
    for _ in range(300):
        capacity = capacity.saw_running(slots)
    full = capacity.saw_queued(running=slots)
    assert full.slots == slots and full.target == target and full.value == target
    assert not full.discovering


def test_the_slots_only_grow_with_evidence_and_a_429_halves_the_limit() -> None:
    full = Capacity.start(ceiling=200).saw_queued(running=20)
    assert full.slots == 20
    assert full.saw_queued(running=12).slots == 20  # fewer seen running: stale looks
    assert full.saw_running(30).slots == 30  # more seen running at once: a bigger account
    throttled = full.throttled()
    assert throttled.value == full.value // 2
    regrown = throttled
    for _ in range(600):
        regrown = regrown.accepted()
    assert regrown.value == full.target  # additive regrowth, up to the target, no further


def test_queue_waits_need_a_rate() -> None:
    capacity = Capacity.start(ceiling=10)
    assert capacity.queue_wait(5, None) is None
    assert capacity.queue_wait(5, 0.0) is None
    assert capacity.queue_wait(5, 2.0) == 2.5
    assert capacity.queue_wait(-3, 2.0) == 0.0


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
        st.tuples(st.sampled_from(["run", "queue", "429", "ok"]), st.integers(0, 2000)),
        max_size=200,
    ),
)
def test_the_limit_never_leaves_one_to_the_users_bound(
    ceiling: int, events: list[tuple[str, int]]
) -> None:
    capacity = Capacity.start(ceiling)
    for kind, running in events:
        if kind == "run":
            capacity = capacity.saw_running(running)
        elif kind == "queue":
            capacity = capacity.saw_queued(running)
        elif kind == "429":
            capacity = capacity.throttled()
        else:
            capacity = capacity.accepted()
        assert 1 <= capacity.value <= ceiling
        if capacity.slots is not None:
            assert capacity.value <= capacity.slots + capacity.ahead


POLICY = PollPolicy(minimum=1.0, maximum=60.0, jitter=0.0)


def timing(ceiling: int = 100) -> Timing:
    return Timing(POLICY, ceiling=ceiling, rng=random.Random(0))


def test_while_discovering_first_looks_come_early_then_at_the_estimate() -> None:
    clock = timing()
    clock.load([Learned("k", "m", Estimate(40.0, 4.0, 9))])
    assert clock.expected("k") == (40.0, 44.0)
    assert clock.submitted(1, "k", sent=0.0, accepted=0.1) == 1.0  # learn the account first
    full = timing(ceiling=3)  # nothing to discover: the user's bound is the limit
    assert full.submitted(1, "k", sent=0.0, accepted=0.1) == 1.0  # (no estimate loaded)
    full.load([Learned("k", "m", Estimate(40.0, 4.0, 9))])
    assert full.submitted(2, "k", sent=0.0, accepted=0.1) == 40.0


def test_looks_teach_the_capacity_and_the_room_to_submit() -> None:
    clock = timing(ceiling=100)
    for row in range(1, 9):
        clock.submitted(row, "k", sent=0.0, accepted=0.1)
    assert clock.in_flight == 8 and clock.room(submitting=0) == 0
    for row in range(1, 7):
        clock.looked(row, "in_progress", at=1.0)
    assert clock.room(submitting=0) == 6  # six seen running, none queued: room for six more
    clock.looked(7, "in_queue", at=1.0, position=1)
    assert clock.capacity.slots == 6
    assert clock.capacity.target == 6 + AHEAD_MIN + 1


def test_a_finished_job_teaches_its_key_once_and_is_forgotten() -> None:
    clock = timing()
    clock.submitted(1, "k", sent=0.0, accepted=0.1)
    clock.looked(1, "in_progress", at=1.0)
    clock.looked(1, "in_progress", at=9.0)
    clock.done(1, at=10.0)
    constant = ("2026-12-01T10:00:00+00:00", None, "2026-12-01T10:01:00+00:00")
    evidence = clock.finished(1, at=10.1, succeeded=True, stamps=constant, slack=0.1)
    assert evidence is not None and evidence.verdict == "contradict"
    assert clock.stamps_dropped and clock.in_flight == 0
    assert 8.0 <= clock.estimates["k"].typical <= 10.0  # from the looks, not the 60 s stamps
    assert [row.key for row in clock.changed()] == ["k"] and clock.changed() == []
    # Once dropped, later stamps are not even read.
    clock.submitted(2, "k", sent=20.0, accepted=20.1)
    clock.done(2, at=29.0)
    later = clock.finished(2, at=29.1, succeeded=True, stamps=constant, slack=0.1)
    assert later is not None and later.verdict == "absent"
    # A failure teaches nothing; an unknown job neither.
    clock.submitted(3, "k", sent=30.0, accepted=30.1)
    assert clock.finished(3, at=31.0, succeeded=False, stamps=constant, slack=0.1) is None
    assert clock.finished(99, at=31.0, succeeded=True, stamps=constant, slack=0.1) is None


def test_adopted_jobs_count_in_flight_and_queued_ones_wait_by_their_place() -> None:
    clock = timing(ceiling=4)
    clock.adopted(1, "k")
    clock.adopted(2, "k")
    assert clock.in_flight == 2 and clock.room(submitting=1) == 1
    clock.looked(1, "in_progress", at=5.0)
    # No free rate yet: a queued job backs off geometrically.
    assert clock.looked(2, "in_queue", at=5.0, position=3) == 1.0
    assert clock.looked(2, "in_queue", at=10.0, position=3) == pytest.approx(1.0)
    clock.free_rate = FreeRate().noticed(0.0).noticed(2.0)
    assert clock.looked(2, "in_queue", at=12.0, position=3) == pytest.approx(4.0 + 1.0)
    clock.forget(1)
    clock.forget(2)
    assert clock.in_flight == 0
