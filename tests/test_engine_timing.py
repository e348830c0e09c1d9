"""The engine against the simulator's timing variants, over real sockets: stamps that
mean something else are caught, stamps that agree are used, learned run times outlive the
run, and the account's slots are found without being told."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import pytest
from engine_helpers import (
    BATCH,
    WAIT_LIMIT,
    Run,
    by_name,
    fast_settings,
    make_profile,
    run_engine,
    seed_store,
    simulator,
)

from orchestrator.engine.capacity import AHEAD_MIN, AHEAD_SHARE, INITIAL, Capacity
from orchestrator.engine.decisions import PollPolicy
from orchestrator.simulator import ManualClock, SimulatorServer
from orchestrator.store import JobState
from orchestrator.store.runtimes import RunTimeBook
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.engine.pool import Engine

#: 50 simulated seconds at the base profile's 0.002 scale: 0.1 s of real time per job.
RUN_REAL_SECONDS = 0.1
SLOW = {"durations": {"default": {"distribution": "fixed", "seconds": 50}}}
POLL = PollPolicy(minimum=0.01, maximum=0.2, jitter=0.0)


def learned(run: Run) -> dict[str, float]:
    return {key: estimate.typical for key, estimate in run.engine.timing.estimates.items()}


@pytest.mark.parametrize(
    ("stamps", "verdict"),
    [
        ({"timestamps": "constant", "constant_run_seconds": 60}, "contradict"),
        ({"timestamps": "absent"}, "absent"),
        ({"timestamps": "epoch_ms", "created_at": "start"}, "agree"),
        ({"timestamps": "naive", "timestamp_skew_seconds": -18000}, "agree"),
        ({"timestamps": "iso", "timestamp_skew_seconds": 10800}, "agree"),
    ],
)
def test_stamps_are_believed_only_where_they_agree_with_the_looks(
    tmp_path: Path, stamps: dict[str, object], verdict: str
) -> None:
    store = seed_store(tmp_path, 6)
    # Slots enough for every job: none waits in the queue, so a stamp from the submit
    # measures the run too, and agrees with the bracket.
    with simulator(make_profile(slots=8, **SLOW, **stamps)) as server:
        run = run_engine(store, server, fast_settings(poll=POLL))
    assert {job.state for job in by_name(store).values()} == {JobState.SUCCEEDED}
    timing = run.engine.timing
    assert timing.stamps[verdict] >= 1
    assert timing.stamps_dropped == (verdict == "contradict")
    (typical,) = learned(run).values()
    # Whatever the stamps said (a 60 s run, hours of skew), the estimate is the run's.
    assert 0.5 * RUN_REAL_SECONDS <= typical <= 2.5 * RUN_REAL_SECONDS


def test_learned_run_times_are_kept_for_the_next_run(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    with simulator(make_profile(slots=8, **SLOW)) as server:
        first = run_engine(store, server, fast_settings(poll=POLL))
        kept = RunTimeBook(WorkQueue(store)).load()
        assert set(kept) == set(learned(first))
        assert len(kept) == 1
        (row,) = kept.values()
        assert row.samples == 4
        assert row.typical_s == pytest.approx(next(iter(learned(first).values())))
        # The next batch (same store) starts from them, and adds to them.
        again = seed_store(tmp_path, 3, batch="again")
        second = run_engine(again, server, fast_settings(batch="again", poll=POLL))
    (estimate,) = second.engine.timing.estimates.values()
    assert estimate.samples == 4 + 3
    (after,) = RunTimeBook(WorkQueue(store)).load().values()
    assert after.samples == 7


@pytest.mark.slow
def test_the_slots_are_found_without_being_told(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 24)
    clock = ManualClock()  # remote jobs move only when the test advances the clock
    first: list[Capacity] = []

    async def caught_up(engine: Engine, server: SimulatorServer) -> bool:
        """Every finish so far noticed and stored, every probe answered, nothing being
        submitted, and no room left to submit more: only then may time move on."""
        timing = engine.timing
        if timing.probes_pending:
            return False
        counts = await anyio.to_thread.run_sync(store.counts, BATCH)
        if counts.get(JobState.SUBMITTING, 0):
            return False
        if counts.get(JobState.PENDING, 0) and timing.room(0) > 0:
            return False
        jobs = (await anyio.to_thread.run_sync(server.simulator.snapshot))["jobs"].values()
        now = clock.now()
        finished = sum(1 for job in jobs if (job["finished_at"] or now + 1) <= now)
        return counts.get(JobState.SUCCEEDED, 0) == finished

    async def wait_caught_up(engine: Engine) -> None:
        # The engine has no event for this: read its state (and the store's) until it holds.
        with anyio.fail_after(WAIT_LIMIT):
            while True:
                if await caught_up(engine, server):
                    return
                await anyio.sleep(0.005)

    async def drive(engine: Engine, _stop: anyio.Event) -> None:
        # Time stands still until the first probes are answered: the first three jobs run,
        # the rest wait, whatever the machine's load does to when the looks come back.
        await wait_caught_up(engine)
        first.append(engine.timing.capacity)
        # Then one run's time (50 simulated seconds) at a time, once the engine caught up.
        while True:
            clock.advance(50)
            await wait_caught_up(engine)

    # Three slots; the user's bound (max_in_flight 20) is far above them. One submit at a
    # time: the order RunComfy saw them in is the order they were accepted in here.
    with simulator(make_profile(slots=3, **SLOW), clock=clock) as server:
        run = run_engine(
            store,
            server,
            fast_settings(max_in_flight=20, max_concurrent_submits=1, poll=POLL),
            during=drive,
        )
        snapshot = server.simulator.snapshot()
    assert {job.state for job in by_name(store).values()} == {JobState.SUCCEEDED}
    # Found exactly while time stood still: three ran at once, and the fourth waited.
    (found, *_) = first
    assert found.seen_full
    assert found.room == 3
    # Time moved on only once every finish was noticed: no probe could count a finished
    # job as running, so the room stayed what it was.
    capacity = run.engine.timing.capacity
    assert capacity.seen_full
    assert capacity.room == 3
    # It kept few jobs waiting remotely: at most its limit less the three running, yet
    # some, so a freed slot had a job to start.
    waiting = [(job["submitted_at"], job["started_at"]) for job in snapshot["jobs"].values()]
    assert len(waiting) == 24
    assert all(start is not None for _, start in waiting)
    most = max(INITIAL, 3 + AHEAD_MIN + math.ceil(AHEAD_SHARE * 3)) - 3
    assert 1 <= peak(waiting) <= most


def peak(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (a span that opens as another closes: not both)."""
    edges = sorted(
        (at, step) for begin, end in spans if end > begin for at, step in ((begin, 1), (end, -1))
    )
    open_now = highest = 0
    for _at, step in edges:
        open_now += step
        highest = max(highest, open_now)
    return highest
