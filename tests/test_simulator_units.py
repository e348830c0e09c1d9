"""The simulator's pure parts: the account queue, durations, profiles, fault decisions."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from model_ids import PRO, RUNWAY

from orchestrator.simulator import (
    Duration,
    ManualClock,
    ProfileError,
    ScaledClock,
    load_profile,
    parse_profile,
)
from orchestrator.simulator.faults import FaultDecider
from orchestrator.simulator.queue import AccountQueue, SimJob

if TYPE_CHECKING:
    from pathlib import Path

# -- AccountQueue ------------------------------------------------------------------------------


def jobs(count: int, run_time: float = 10.0) -> list[SimJob]:
    return [SimJob.new(f"job-{n}", run_time=run_time) for n in range(count)]


def test_queue_runs_slots_at_once_and_the_rest_in_fifo_order() -> None:
    queue = AccountQueue(slots=2)
    batch = jobs(5)
    for job in batch:
        queue.submit(job, now=0)
    assert (queue.running, queue.waiting) == (2, 3)
    assert [job.status_at(0) for job in batch] == ["in_progress"] * 2 + ["in_queue"] * 3
    assert [queue.position(job) for job in batch] == [None, None, 1, 2, 3]
    queue.advance(30)
    assert [(job.started_at, job.finished_at) for job in batch] == [
        (0, 10),
        (0, 10),
        (10, 20),
        (10, 20),
        (20, 30),
    ]
    assert all(job.status_at(30) == "completed" for job in batch)
    assert (queue.running, queue.waiting) == (0, 0)


def test_positions_follow_cancellations_anywhere_in_the_queue() -> None:
    queue = AccountQueue(slots=1)
    a, b, c, d, e = jobs(5)
    for job in (a, b, c, d, e):
        queue.submit(job, now=0)
    assert [queue.position(j) for j in (b, c, d, e)] == [1, 2, 3, 4]
    assert queue.cancel(c, now=1)
    assert [queue.position(j) for j in (b, c, d, e)] == [1, None, 2, 3]
    assert queue.cancel(b, now=2)  # the head of the queue
    assert [queue.position(j) for j in (b, c, d, e)] == [None, None, 1, 2]
    assert [queue.position(j, base=0) for j in (d, e)] == [0, 1]
    assert queue.waiting == 2
    assert not queue.cancel(a, now=3)  # running: not cancellable
    assert queue.cancel(c, now=4)  # cancelling twice is still cancelled
    assert c.cancelled_at == 1
    queue.advance(10)
    assert (d.started_at, e.started_at) == (10, None)
    assert b.status_at(10) == c.status_at(10) == "cancelled"
    queue.advance(20)
    assert e.started_at == 20
    assert queue.position(e) is None
    assert not queue.cancel(d, now=25)  # finished: not cancellable


def test_a_job_submitted_to_an_idle_queue_starts_at_once() -> None:
    queue = AccountQueue(slots=1)
    first, second = jobs(2, run_time=5)
    queue.submit(first, now=0)
    queue.submit(second, now=7)  # the slot freed at 5
    assert second.started_at == 7
    assert second.finished_at == 12
    assert queue.position(second) is None


def test_statuses_report_outcomes() -> None:
    queue = AccountQueue(slots=3)
    ok, failed, result_only = jobs(3)
    failed.outcome, result_only.outcome = "failed", "failed_result_only"
    for job in (ok, failed, result_only):
        queue.submit(job, now=0)
    assert [j.status_at(5) for j in (ok, failed, result_only)] == ["in_progress"] * 3
    queue.advance(10)
    assert [j.status_at(10) for j in (ok, failed, result_only)] == [
        "completed",
        "failed",
        "completed",
    ]
    assert [j.result_status_at(10) for j in (ok, failed, result_only)] == [
        "completed",
        "failed",
        "failed",
    ]


def _scenario(step: float | None) -> list[tuple[float | None, float | None, float | None]]:
    """Submits and cancels at fixed times; advance lazily (step None) or in small steps."""
    rng = random.Random(3)
    batch = [SimJob.new(f"j{n}", run_time=rng.uniform(1, 12)) for n in range(30)]
    submits = sorted(rng.uniform(0, 40) for _ in batch)
    cancels = {5: 8.0, 11: 20.0, 17: 33.0, 18: 33.0}  # job index -> when
    events = sorted(
        [(at, 0, index) for index, at in enumerate(submits)]
        + [(at, 1, index) for index, at in cancels.items()]
    )
    queue = AccountQueue(slots=3)
    now = 0.0
    for at, kind, index in events:
        if step is not None:
            while now + step < at:
                now += step
                queue.advance(now)
        if kind == 0:
            queue.submit(batch[index], now=at)
        else:
            queue.cancel(batch[index], now=at)
    end = 500.0
    if step is not None:
        while now + step < end:
            now += step
            queue.advance(now)
    queue.advance(end)
    return [(job.started_at, job.finished_at, job.cancelled_at) for job in batch]


def test_lazy_advance_equals_step_by_step_advance() -> None:
    lazy = _scenario(step=None)
    assert lazy == _scenario(step=0.25) == _scenario(step=3.0)
    assert sum(1 for _s, _f, cancelled in lazy if cancelled is not None) >= 1
    # Never more than three at once.
    edges = sorted(
        [(s, 1) for s, f, _c in lazy if s is not None]
        + [(f, -1) for s, f, _c in lazy if f is not None]
    )
    running = peak = 0
    for _at, delta in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += delta
        peak = max(peak, running)
    assert peak == 3


def test_time_never_runs_backwards_in_the_queue() -> None:
    queue = AccountQueue(slots=1)
    (job,) = jobs(1)
    queue.submit(job, now=0)
    queue.advance(20)
    queue.advance(5)
    assert job.status_at(20) == "completed"


def test_queue_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="slots must be"):
        AccountQueue(slots=0)


# -- clocks ------------------------------------------------------------------------------------


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start=5)
    clock.advance(2.5)
    assert clock.now() == 7.5
    assert clock.real_seconds(100) == 0.0
    with pytest.raises(ValueError, match="does not run backwards"):
        clock.advance(-1)


def test_scaled_clock_scales_real_time() -> None:
    clock = ScaledClock(0.01)
    assert clock.real_seconds(60) == pytest.approx(0.6)
    assert clock.now() >= 0
    with pytest.raises(ValueError, match="time_scale must be"):
        ScaledClock(0)


# -- Duration --------------------------------------------------------------------------------


def test_fixed_durations_are_exact() -> None:
    rng = random.Random(1)
    assert {Duration(seconds=42).sample(rng) for _ in range(5)} == {42.0}
    assert Duration(seconds=0).sample(rng) == 0.1  # never below 0.1 s


def test_uniform_durations_stay_in_range() -> None:
    rng = random.Random(1)
    samples = [Duration("uniform", low=20, high=30).sample(rng) for _ in range(500)]
    assert all(20 <= s <= 30 for s in samples)
    assert max(samples) - min(samples) > 8  # spread over the range


def test_lognormal_durations_centre_on_seconds() -> None:
    rng = random.Random(1)
    samples = sorted(Duration("lognormal", seconds=60, sigma=0.3).sample(rng) for _ in range(801))
    assert all(s > 0 for s in samples)
    assert samples[400] == pytest.approx(60, rel=0.1)  # the median
    assert samples[0] < 45
    assert samples[-1] > 80


def test_duration_samples_repeat_with_the_seed() -> None:
    for duration in (Duration("uniform", low=1, high=9), Duration("lognormal", seconds=10)):
        first = [duration.sample(random.Random(7)) for _ in range(3)]
        assert len(set(first)) == 1
        assert duration.sample(random.Random(8)) != first[0]


# -- profiles ----------------------------------------------------------------------------------


def test_a_profile_is_parsed_with_defaults_for_missing_keys() -> None:
    profile = parse_profile(
        {
            "slots": 3,
            "durations": {"default": 20, RUNWAY: {"distribution": "uniform", "low": 1, "high": 2}},
            "prices": {"default": 0.2, PRO: 0.3},
            "faults": {"rate_limit": 0.5, "retry_after_seconds": 4.0},
            "balance_usd": None,
        },
        name="mine",
    )
    assert (profile.name, profile.slots, profile.url_ttl) == ("mine", 3, 3600.0)
    assert profile.duration_for(PRO) == Duration(seconds=20)
    assert profile.duration_for(RUNWAY).distribution == "uniform"
    assert (profile.price_for(PRO), profile.price_for(RUNWAY)) == (0.3, 0.2)
    assert profile.faults.rate_limit == 0.5
    assert profile.faults.retry_after_seconds == 4
    assert profile.with_overrides(slots=9, seed=None).slots == 9
    assert profile.with_overrides(seed=None).seed == 0


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"slot": 2}, "unknown profile key"),
        ({"faults": {"rate_limits": 0.1}}, "unknown fault"),
        ({"faults": {"rate_limit": 1.5}}, "probability"),
        ({"faults": {"server_error": -0.1}}, ">= 0"),
        ({"durations": {"default": {"distribution": "normal"}}}, "distribution must be"),
        ({"durations": {"default": {"distribution": "uniform", "lo": 1}}}, "lo"),
        ({"durations": {"default": -5}}, ">= 0"),
        ({"durations": {"default": "long"}}, "seconds or a mapping"),
        ({"durations": {"default": {"distribution": "lognormal", "seconds": 0}}}, "lognormal"),
        ({"durations": 30}, "mapping"),
        ({"prices": {"default": -0.1}}, ">= 0"),
        ({"prices": {"default": True}}, ">= 0"),
        ({"url_ttl": -1}, "url_ttl"),
        ({"url_ttl": "1h"}, "url_ttl"),
        ({"balance_usd": -3}, "balance_usd"),
        ({"slots": 0}, "slots"),
        ({"slots": 1.5}, "slots"),
        ({"time_scale": 0}, "time_scale"),
        ({"time_scale": -1}, "time_scale"),
        ({"submit_status": 404}, "submit_status"),
        ({"video_fps": 0}, "video_fps"),
    ],
)
def test_bad_profiles_are_refused(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        parse_profile(raw)


def test_profile_files_load_by_path_and_by_name(tmp_path: Path) -> None:
    path = tmp_path / "night.yaml"
    path.write_text("slots: 2\nfaults:\n  job_failed: 0.5\n", encoding="utf-8")
    profile = load_profile(path)
    assert (profile.name, profile.slots, profile.faults.job_failed) == ("night", 2, 0.5)
    assert load_profile(None).name == "calm"
    named = tmp_path / "named.yaml"
    named.write_text("name: other\n", encoding="utf-8")
    assert load_profile(named).name == "other"


@pytest.mark.parametrize(
    ("text", "words"),
    [("slots: [1\n", "not valid YAML"), ("- 1\n- 2\n", "a YAML mapping"), ("slots: 0\n", "slots")],
)
def test_bad_profile_files_are_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match=words):
        load_profile(path)


def test_a_missing_profile_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="calm, flaky, hostile"):
        load_profile(tmp_path / "nope.yaml")


# -- FaultDecider ------------------------------------------------------------------------------


def test_draws_repeat_per_seed_topic_identity_and_count() -> None:
    one, two = FaultDecider(seed=1), FaultDecider(seed=1)
    first = [one.draw("status", "req-1") for _ in range(3)]
    assert first == [two.draw("status", "req-1") for _ in range(3)]
    assert len(set(first)) == 3  # each repeat asks anew
    # Other identities in between do not disturb a sequence.
    three = FaultDecider(seed=1)
    three.draw("status", "req-2")
    three.draw("result", "req-1")
    assert three.draw("status", "req-1") == first[0]
    assert FaultDecider(seed=2).draw("status", "req-1") != first[0]


def test_pick_stacks_the_probabilities_on_one_draw() -> None:
    chances = {"a": 0.2, "b": 0.3, "c": 0.1}
    picks = []
    for n in range(2000):
        roll = FaultDecider(seed=5).draw("t", f"id-{n}")
        pick = FaultDecider(seed=5).pick("t", f"id-{n}", chances)
        expected = "a" if roll < 0.2 else "b" if roll < 0.5 else "c" if roll < 0.6 else None
        assert pick == expected
        picks.append(pick)
    shares = {name: picks.count(name) / len(picks) for name in ("a", "b", "c", None)}
    assert shares["a"] == pytest.approx(0.2, abs=0.04)
    assert shares["b"] == pytest.approx(0.3, abs=0.04)
    assert shares["c"] == pytest.approx(0.1, abs=0.04)
    assert shares[None] == pytest.approx(0.4, abs=0.04)


def test_pick_edges() -> None:
    decider = FaultDecider(seed=0)
    for n in range(50):
        assert decider.pick("t", str(n), {"a": 0.0, "b": 1.0}) == "b"
        assert decider.pick("t", str(n), {"a": 1.0, "b": 1.0}) == "a"  # first wins
        assert decider.pick("t", str(n), {"a": 0.0}) is None
        assert decider.pick("t", str(n), {}) is None


def test_a_client_gone_mid_upload_creates_no_job() -> None:
    """A submitter killed while sending its body (kill -9 trials) leaves no remote job and
    no server traceback."""
    from simulator_helpers import TOKEN, profile

    from orchestrator.simulator import Simulator
    from orchestrator.simulator.app import build_app

    sim = Simulator(profile(), token=TOKEN)
    app = build_app(sim)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/runwayml/runway-gen-4/turbo/image-to-video",
        "raw_path": b"/v1/models/runwayml/runway-gen-4/turbo/image-to-video",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
        "root_path": "",
    }
    anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 499
    assert sim.snapshot()["jobs"] == {}
