"""The timing variants a profile can choose: stamp forms, skew, created_at, run-time scales.

Exact values come from an in-process :class:`Simulator` with a :class:`ManualClock` and a
pinned wall-clock start; each stamp form is also checked over real sockets.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY
from simulator_helpers import payload, profile, running

from orchestrator.simulator import (
    BUILTIN_PROFILES,
    ManualClock,
    ProfileError,
    Simulator,
    load_profile,
    parse_profile,
)
from orchestrator.simulator.timing import RunTimeScale

if TYPE_CHECKING:
    from pathlib import Path

WALL = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
OWNER = "owner"
NEW_BUILTINS = (
    "stamps-absent",
    "stamps-constant",
    "stamps-skewed",
    "stamps-naive",
    "stamps-epoch-ms",
    "runs-vary",
)


def simulator(settings: dict[str, Any] | None = None) -> tuple[Simulator, ManualClock]:
    """An in-process simulator (fixed 10 s jobs, 2 slots) whose time 0 is :data:`WALL`."""
    clock = ManualClock()
    return Simulator(profile(settings), clock=clock, wall_start=WALL), clock


def submit(sim: Simulator, model_id: str = PRO, **extra: Any) -> str:
    return sim.submit(OWNER, model_id, payload(model_id, **extra)).request_id


def stamps(sim: Simulator, request_id: str) -> dict[str, Any]:
    body = sim.result(OWNER, request_id, include_cost=False)
    return {k: v for k, v in body.items() if k in ("created_at", "finished_at")}


def iso(seconds: float) -> str:
    return (WALL + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


# -- stamp forms, exact values -------------------------------------------------------------


def test_iso_is_the_default_and_unchanged() -> None:
    sim, clock = simulator()
    rid = submit(sim)
    assert stamps(sim, rid) == {"created_at": iso(0)}
    clock.advance(10)
    assert stamps(sim, rid) == {"created_at": iso(0), "finished_at": iso(10)}
    assert iso(0) == "2026-12-01T10:00:00.000000+00:00"


def test_naive_stamps_have_no_offset() -> None:
    sim, clock = simulator({"timestamps": "naive"})
    rid = submit(sim)
    clock.advance(10.25)
    got = stamps(sim, rid)
    assert got == {
        "created_at": "2026-12-01T10:00:00.000000",
        "finished_at": "2026-12-01T10:00:10.000000",
    }
    assert all(datetime.fromisoformat(v).tzinfo is None for v in got.values())


def test_epoch_ms_is_an_integer_of_the_iso_moment() -> None:
    sim, clock = simulator({"timestamps": "epoch_ms"})
    plain, plain_clock = simulator()
    rids = [submit(sim), submit(plain)]
    clock.advance(10)
    plain_clock.advance(10)
    got, want = stamps(sim, rids[0]), stamps(plain, rids[1])
    assert set(got) == set(want) == {"created_at", "finished_at"}
    for key, value in got.items():
        assert type(value) is int
        assert value == int(datetime.fromisoformat(want[key]).timestamp() * 1000)
    assert got["created_at"] == int(WALL.timestamp()) * 1000
    assert got["finished_at"] - got["created_at"] == 10_000


def test_epoch_s_is_a_float_of_seconds() -> None:
    sim, clock = simulator({"timestamps": "epoch_s"})
    rid = submit(sim)
    clock.advance(10)
    got = stamps(sim, rid)
    assert all(type(v) is float for v in got.values())
    assert got == {"created_at": WALL.timestamp(), "finished_at": WALL.timestamp() + 10}


def test_absent_stamps_are_not_in_any_reply() -> None:
    sim, clock = simulator({"timestamps": "absent", "slots": 1})
    first, queued, cancelled = (submit(sim, prompt=f"shot {n}") for n in range(3))
    assert sim.cancel(OWNER, cancelled)["outcome"] == "cancelled"
    for rid in (first, queued, cancelled):
        assert stamps(sim, rid) == {}
    clock.advance(10)
    body = sim.result(OWNER, first, include_cost=True)
    assert body["status"] == "completed"
    assert "output" in body
    assert stamps(sim, first) == stamps(sim, queued) == {}


def test_constant_gives_exactly_constant_run_seconds_whatever_the_job_took() -> None:
    sim, clock = simulator({"timestamps": "constant", "constant_run_seconds": 42.5, "slots": 1})
    first, second = submit(sim, prompt="a"), submit(sim, prompt="b")
    assert stamps(sim, first) == {"created_at": iso(0)}  # no finished_at while it runs
    clock.advance(25)  # first ran 10 s, second 10 s after waiting 10 s
    for rid in (first, second):
        got = stamps(sim, rid)
        assert got == {"created_at": iso(0), "finished_at": iso(42.5)}
        created, finished = map(datetime.fromisoformat, (got["created_at"], got["finished_at"]))
        assert (finished - created).total_seconds() == 42.5


def test_constant_run_seconds_defaults_to_60() -> None:
    sim, clock = simulator({"timestamps": "constant"})
    rid = submit(sim)
    clock.advance(10)
    assert stamps(sim, rid)["finished_at"] == iso(60)


@pytest.mark.parametrize("skew", [10800, -18000, 0.5])
def test_skew_shifts_every_stamp_by_its_seconds(skew: float) -> None:
    sim, clock = simulator({"timestamp_skew_seconds": skew})
    rid = submit(sim)
    clock.advance(10)
    assert stamps(sim, rid) == {"created_at": iso(skew), "finished_at": iso(skew + 10)}


def test_skew_applies_to_every_form() -> None:
    naive, naive_clock = simulator({"timestamps": "naive", "timestamp_skew_seconds": -18000})
    ms, ms_clock = simulator({"timestamps": "epoch_ms", "timestamp_skew_seconds": 3600})
    rids = submit(naive), submit(ms)
    naive_clock.advance(10)
    ms_clock.advance(10)
    assert stamps(naive, rids[0]) == {
        "created_at": "2026-12-01T05:00:00.000000",
        "finished_at": "2026-12-01T05:00:10.000000",
    }
    start = int(WALL.timestamp() + 3600) * 1000
    assert stamps(ms, rids[1]) == {"created_at": start, "finished_at": start + 10_000}


def test_created_at_start_stamps_the_start_and_the_submit_until_then() -> None:
    sim, clock = simulator({"created_at": "start", "slots": 1})
    clock.advance(2)
    first = submit(sim, prompt="a")
    clock.advance(3)
    second = submit(sim, prompt="b")  # queued behind first until t=12
    assert stamps(sim, first) == {"created_at": iso(2)}  # started at once
    assert stamps(sim, second) == {"created_at": iso(5)}  # still queued: its submit time
    clock.advance(7)
    assert stamps(sim, second) == {"created_at": iso(12)}
    clock.advance(10)
    assert stamps(sim, second) == {"created_at": iso(12), "finished_at": iso(22)}


def test_a_job_cancelled_in_the_queue_keeps_its_submit_time_under_created_at_start() -> None:
    sim, clock = simulator({"created_at": "start", "slots": 1})
    submit(sim, prompt="a")
    clock.advance(4)
    queued = submit(sim, prompt="b")
    clock.advance(1)
    assert sim.cancel(OWNER, queued)["outcome"] == "cancelled"
    clock.advance(20)
    assert stamps(sim, queued) == {"created_at": iso(4), "finished_at": iso(5)}


# -- run_time_scale --------------------------------------------------------------------------


def run_time(settings: dict[str, Any], model_id: str = PRO, **extra: Any) -> float:
    sim, _ = simulator(settings)
    return sim.jobs[submit(sim, model_id, **extra)].run_time


def test_a_10_s_clip_doubles_a_5_s_clips_run_time() -> None:
    scaled = {"run_time_scale": {"clip_seconds": True}}
    assert run_time(scaled, duration=5) == 10
    assert run_time(scaled, duration=10) == 20
    assert run_time(scaled, LITE, duration=10) == 20
    assert run_time(scaled, DREAMINA, frames=241) == 20  # Dreamina's 10 s is 241 frames
    assert run_time(scaled) == 10  # no duration: the schema default, 5 s
    assert run_time({}, duration=10) == 10  # off by default


def test_resolution_factors_multiply() -> None:
    scaled = {"run_time_scale": {"resolutions": {"480p": 0.6, "1080p": 2.0, "1280:720": 1.5}}}
    assert run_time(scaled, resolution="1080p") == 20
    assert run_time(scaled, resolution="480p") == pytest.approx(6)
    assert run_time(scaled, resolution="720p") == 10  # not listed: x 1
    assert run_time(scaled) == 10  # none given: x 1
    assert run_time(scaled, RUNWAY, ratio="1280:720") == 15  # no resolution: its ratio
    assert run_time(scaled, RUNWAY, ratio="720:1280") == 10
    both = {"run_time_scale": {"clip_seconds": True, "resolutions": {"1080p": 2.0}}}
    assert run_time(both, resolution="1080p", duration=10) == 40
    # resolution first, ratio only without it (Seedance Pro takes both)
    ratios = {"run_time_scale": {"resolutions": {"1080p": 2.0, "16:9": 3.0}}}
    assert run_time(ratios, resolution="1080p", ratio="16:9") == 20
    assert run_time(ratios, ratio="16:9") == 30


def test_scaling_keeps_the_same_random_draw() -> None:
    """Only the run time changes: the lognormal draw, the outcome and the id stay."""
    lognormal = {"durations": {"default": {"distribution": "lognormal", "seconds": 30}}}
    scaled = {**lognormal, "run_time_scale": {"resolutions": {"1080p": 1.8}}}
    plain_sim, _ = simulator({**lognormal, "faults": {"job_failed": 0.5}})
    scaled_sim, _ = simulator({**scaled, "faults": {"job_failed": 0.5}})
    for n in range(8):
        a = plain_sim.submit(OWNER, PRO, payload(PRO, prompt=f"{n}", resolution="1080p"))
        b = scaled_sim.submit(OWNER, PRO, payload(PRO, prompt=f"{n}", resolution="1080p"))
        assert (a.request_id, a.outcome) == (b.request_id, b.outcome)
        assert b.run_time == pytest.approx(a.run_time * 1.8)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"timestamps": "unix"}, "timestamps must be one of iso, naive, epoch_s, epoch_ms"),
        ({"timestamps": None}, "timestamps must be one of"),
        ({"created_at": "queued"}, "created_at must be one of submit, start, got 'queued'"),
        ({"timestamp_skew_seconds": "3h"}, "timestamp_skew_seconds must be a number"),
        ({"timestamp_skew_seconds": True}, "timestamp_skew_seconds must be a number"),
        ({"timestamp_skew_seconds": float("nan")}, "timestamp_skew_seconds must be a number"),
        ({"timestamp_skew_seconds": 1e12}, "timestamp_skew_seconds must be within"),
        ({"constant_run_seconds": 0}, "constant_run_seconds must be > 0"),
        ({"constant_run_seconds": -5}, "constant_run_seconds must be > 0"),
        ({"constant_run_seconds": "1m"}, "constant_run_seconds must be a number"),
        ({"run_time_scale": 2}, "run_time_scale must be a mapping"),
        ({"run_time_scale": {"clip": True}}, r"run_time_scale: unknown key\(s\) clip"),
        ({"run_time_scale": {"clip_seconds": "yes"}}, "run_time_scale.clip_seconds must be"),
        ({"run_time_scale": {"resolutions": [1]}}, "run_time_scale.resolutions must map"),
        ({"run_time_scale": {"resolutions": {"1080p": 0}}}, "resolutions.1080p must be a num"),
        ({"run_time_scale": {"resolutions": {"1080p": -1}}}, "resolutions.1080p must be a num"),
        ({"run_time_scale": {"resolutions": {"1080p": True}}}, "resolutions.1080p must be"),
        ({"run_time_scale": {"resolutions": {"720p": "2x"}}}, "resolutions.720p must be"),
        ({"run_time_scale": {"resolutions": {969: 2}}}, r"keys are strings .*got 969"),
    ],
)
def test_bad_timing_values_are_refused_naming_the_key(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        parse_profile(raw, origin="night.yaml")
    with pytest.raises(ProfileError, match=r"^night\.yaml: "):
        parse_profile(raw, origin="night.yaml")


def test_an_unquoted_ratio_in_a_file_is_refused(tmp_path: Path) -> None:
    """YAML reads 16:9 as 969; quoted, it is the string the payload sends."""
    path = tmp_path / "ratios.yaml"
    path.write_text("run_time_scale:\n  resolutions: {16:9: 2}\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"ratios\.yaml: run_time_scale\.resolutions keys"):
        load_profile(path)
    path.write_text('run_time_scale:\n  resolutions: {"16:9": 2}\n', encoding="utf-8")
    assert load_profile(path).run_time_scale == RunTimeScale(resolutions={"16:9": 2.0})


def test_good_timing_values_parse() -> None:
    parsed = parse_profile(
        {
            "timestamps": "constant",
            "timestamp_skew_seconds": -3600,
            "constant_run_seconds": 12,
            "created_at": "start",
            "run_time_scale": {"clip_seconds": True, "resolutions": {"480p": 1}},
        }
    )
    assert (parsed.timestamps, parsed.timestamp_skew_seconds) == ("constant", -3600.0)
    assert (parsed.constant_run_seconds, parsed.created_at) == (12.0, "start")
    assert parsed.run_time_scale == RunTimeScale(True, {"480p": 1.0})
    defaults = parse_profile({"run_time_scale": None})
    assert (defaults.timestamps, defaults.created_at) == ("iso", "submit")
    assert (defaults.timestamp_skew_seconds, defaults.constant_run_seconds) == (0.0, 60.0)
    assert defaults.run_time_scale == RunTimeScale()


# -- built-in profiles -----------------------------------------------------------------------

TIMING_DEFAULTS: dict[str, Any] = {
    "timestamps": "iso",
    "timestamp_skew_seconds": 0.0,
    "constant_run_seconds": 60.0,
    "created_at": "submit",
    "run_time_scale": RunTimeScale(),
}
EXPECTED_TIMING: dict[str, dict[str, Any]] = {
    "stamps-absent": {"timestamps": "absent"},
    "stamps-constant": {"timestamps": "constant", "constant_run_seconds": 60.0},
    "stamps-skewed": {"timestamps": "iso", "timestamp_skew_seconds": 10800.0},
    "stamps-naive": {"timestamps": "naive", "timestamp_skew_seconds": -18000.0},
    "stamps-epoch-ms": {"timestamps": "epoch_ms"},
}


@pytest.mark.parametrize("name", NEW_BUILTINS)
def test_each_new_builtin_loads_and_is_calm_otherwise(name: str) -> None:
    assert set(NEW_BUILTINS) <= set(BUILTIN_PROFILES)
    loaded, calm = load_profile(name), load_profile("calm")
    assert loaded.name == name
    assert loaded.slots == calm.slots == 8
    back_to_calm = replace(loaded, name="calm", **TIMING_DEFAULTS)
    if name == "runs-vary":
        assert loaded.run_time_scale == RunTimeScale(
            clip_seconds=True, resolutions={"480p": 0.6, "720p": 1.0, "1080p": 1.8}
        )
        back_to_calm = replace(back_to_calm, durations=calm.durations)
    else:
        for key, value in {**TIMING_DEFAULTS, **EXPECTED_TIMING[name]}.items():
            assert getattr(loaded, key) == value, key
    assert back_to_calm == calm


def test_runs_vary_gives_each_model_its_own_median() -> None:
    runs = load_profile("runs-vary")
    medians = {PRO: 30, LITE: 15, DREAMINA: 20, RUNWAY: 10}
    medians["bytedance/seedance-v1.5-pro/image-to-video"] = 35
    for model_id, median in medians.items():
        duration = runs.duration_for(model_id)
        assert (duration.distribution, duration.seconds, duration.sigma) == (
            "lognormal",
            median,
            0.25,
        )


# -- over real sockets -----------------------------------------------------------------------


def wire_stamps(name_or_settings: str | dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(running, completed) stamps of one 10 s job from a server on loopback."""
    chosen = (
        load_profile(name_or_settings).with_overrides(
            durations=profile().durations, video_max_side=64, video_fps=4
        )
        if isinstance(name_or_settings, str)
        else profile(name_or_settings)
    )
    with running(chosen) as sim:
        rid = sim.submit_ok(PRO)
        early = sim.result(rid)
        sim.clock.advance(10)
        done = sim.result(rid)
        assert (early["status"], done["status"]) == ("in_progress", "completed")
    keep = ("created_at", "finished_at")
    return {k: early[k] for k in keep if k in early}, {k: done[k] for k in keep if k in done}


def test_iso_and_skewed_iso_over_sockets() -> None:
    for name, skew in (("calm", 0), ("stamps-skewed", 10800)):
        before = datetime.now(UTC)
        early, done = wire_stamps(name)
        assert set(early) == {"created_at"}
        assert set(done) == {"created_at", "finished_at"}
        created = datetime.fromisoformat(done["created_at"])
        finished = datetime.fromisoformat(done["finished_at"])
        assert done["created_at"].endswith("+00:00")
        assert (finished - created).total_seconds() == 10
        # The server started after `before`; the skew puts its stamps hours ahead of it.
        ahead = (created - before).total_seconds()
        assert skew <= ahead < skew + 60


def test_naive_over_sockets() -> None:
    early, done = wire_stamps("stamps-naive")
    created = datetime.fromisoformat(done["created_at"])
    assert created.tzinfo is None
    assert early["created_at"] == done["created_at"]
    assert "+" not in done["created_at"]
    assert not done["created_at"].endswith("Z")
    behind = (datetime.now(UTC).replace(tzinfo=None) - created).total_seconds()
    assert 18000 <= behind < 18000 + 60
    assert (datetime.fromisoformat(done["finished_at"]) - created).total_seconds() == 10


def test_epoch_ms_over_sockets() -> None:
    _early, done = wire_stamps("stamps-epoch-ms")
    assert all(type(v) is int for v in done.values())
    assert done["finished_at"] - done["created_at"] == 10_000
    assert abs(done["created_at"] / 1000 - datetime.now(UTC).timestamp()) < 60


def test_epoch_s_over_sockets() -> None:
    _early, done = wire_stamps({"timestamps": "epoch_s"})
    assert all(type(v) is float for v in done.values())
    assert done["finished_at"] - done["created_at"] == pytest.approx(10)


def test_absent_over_sockets() -> None:
    early, done = wire_stamps("stamps-absent")
    assert early == done == {}


def test_constant_over_sockets() -> None:
    early, done = wire_stamps("stamps-constant")
    assert set(early) == {"created_at"}
    created = datetime.fromisoformat(done["created_at"])
    finished = datetime.fromisoformat(done["finished_at"])
    assert (finished - created).total_seconds() == 60  # the job took 10 s


def test_created_at_start_and_run_time_scale_over_sockets() -> None:
    settings = {"slots": 1, "created_at": "start", "run_time_scale": {"clip_seconds": True}}
    with running(settings) as sim:
        first = sim.submit_ok(PRO, payload(PRO, duration=10))  # runs 20 s
        second = sim.submit_ok(PRO, payload(PRO, prompt="b"))
        queued = sim.result(second)["created_at"]
        sim.clock.advance(19)
        assert sim.status(first)["status"] == "in_progress"
        sim.clock.advance(1)
        assert sim.status(first)["status"] == "completed"
        started = datetime.fromisoformat(sim.result(second)["created_at"])
        assert (started - datetime.fromisoformat(queued)).total_seconds() == 20
