"""The simulator's invented models and schema changes (issue 14, item 5).

The invented models (``orchestrator/simulator/catalog/``) have native field names of their
own and prices from their catalog entries: a submit through those names renders a real MP4
of the clip's length and is billed per second (x the clip) or once per output. A schema
change (the profile's ``schema_changes``, or ``Simulator.change_field`` mid-test) is what the
catalog routes serve and what submits are checked against, from the next request on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from model_ids import PRO
from simulator_helpers import (
    HTTPS_IMAGE,
    Sim,
    assert_error,
    data_uri,
    payload,
    probe_video,
    profile,
    running,
)

from orchestrator.catalog import Catalog, CatalogError, builtin_catalog
from orchestrator.catalog.parse import parse_model
from orchestrator.simulator import (
    ManualClock,
    ProfileError,
    SchemaChangeError,
    Simulator,
    load_profile,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

WONDER = "acme/wonder-video/v2/image-to-video"
FLIPBOOK = "acme/flipbook/image-to-video"
MOTION_X = "studio/motion-x/image-to-video"
FPS = 4
FRAME = data_uri(color=(30, 160, 90))
LAST_FRAME = data_uri(color=(160, 30, 90))

#: (id, model, native body, seconds of video, cost in USD at the entries' prices)
SUBMITS: list[tuple[str, str, dict[str, Any], float, float]] = [
    (
        "wonder-8s",
        WONDER,
        {"text_prompt": "a paper boat drifts", "start_frame": FRAME, "clip_seconds": 8},
        8.0,
        0.07 * 8,
    ),
    (
        "wonder-default-length",
        WONDER,
        {"text_prompt": "rain", "start_frame": FRAME, "aspect": "9:16", "noise_seed": 2147483647},
        4.0,
        0.07 * 4,
    ),
    ("flipbook-two-frames", FLIPBOOK, {"frames_in": [FRAME, LAST_FRAME], "duration": 3}, 3.0, 0.4),
    (
        "flipbook-12s-same-price",
        FLIPBOOK,
        {"description": "morph", "frames_in": [FRAME], "duration": 12},
        12.0,
        0.4,
    ),
    (
        "motion-x-1080p-doubles",
        MOTION_X,
        {"prompt": "orbit", "image_url": FRAME, "duration": "10", "resolution": "1080p"},
        10.0,
        0.09 * 10 * 2,
    ),
    ("motion-x-defaults", MOTION_X, {"prompt": "orbit", "image_url": HTTPS_IMAGE}, 5.0, 0.09 * 5),
]


@pytest.fixture(scope="module")
def shared() -> Iterator[Sim]:
    with running({"video_fps": FPS, "video_max_side": 64}) as sim:
        yield sim


def entry(sim: Sim, model_id: str) -> dict[str, Any]:
    response = sim.api.get(f"/v1/models/{model_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def field_schema(sim: Sim, model_id: str, name: str) -> dict[str, Any]:
    return dict(entry(sim, model_id)["input_schema"]["properties"][name])


def rejected(sim: Sim, model_id: str, body: dict[str, Any]) -> dict[str, str]:
    """The 422's messages by field."""
    error = assert_error(sim.submit(model_id, body), 422, 422001)
    return {item["loc"][1]: item["msg"] for item in error["detail"]}


# -- invented models, end to end ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "body", "seconds", "cost"),
    [case[1:] for case in SUBMITS],
    ids=[case[0] for case in SUBMITS],
)
def test_an_invented_model_runs_through_its_native_names(
    shared: Sim, model_id: str, body: dict[str, Any], seconds: float, cost: float
) -> None:
    rid = shared.submit_ok(model_id, body)
    shared.clock.advance(10)
    result = shared.result(rid, include_cost=True)
    assert result["status"] == "completed"
    assert (result["model_id"], result["cost"]) == (model_id, pytest.approx(cost))
    download = shared.download(result["output"]["video"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    codec, frames, duration = probe_video(download.content)
    assert codec == "h264"
    assert frames == round(seconds * FPS)
    assert duration == pytest.approx(seconds, abs=0.5)


def test_a_per_output_price_is_charged_once_a_video_whatever_its_length() -> None:
    with running({"balance_usd": 1.1}) as sim:
        sim.submit_ok(FLIPBOOK, {"frames_in": [FRAME], "duration": 2})
        sim.submit_ok(FLIPBOOK, {"frames_in": [FRAME], "duration": 12})
        assert sim.ledger()["balance_usd"] == pytest.approx(0.3)
        refused = sim.submit(FLIPBOOK, {"frames_in": [FRAME], "duration": 4})
        assert_error(refused, 402, 400002)
        # Wonder's 4 s at $0.07 a second ($0.28) still fits in what is left.
        sim.submit_ok(WONDER, {"text_prompt": "x", "start_frame": FRAME})
        assert sim.ledger()["balance_usd"] == pytest.approx(0.02)


def test_an_invented_model_checks_its_own_schema(shared: Sim) -> None:
    before = sum(shared.ledger()["rejected_submissions"].values())
    universal = rejected(shared, WONDER, {"prompt": "x", "image": FRAME})
    assert universal["text_prompt"] == universal["start_frame"] == "required by this model"
    assert universal["prompt"].startswith("is not an input of this model")
    wrong = {"text_prompt": "x", "start_frame": FRAME, "clip_seconds": 5, "noise_seed": -1}
    assert rejected(shared, WONDER, wrong) == {
        "clip_seconds": "5 is not allowed; allowed: 4, 8",
        "noise_seed": "-1 is below the minimum 0",
    }
    too_many = rejected(shared, FLIPBOOK, {"frames_in": [FRAME] * 3})
    assert too_many == {"frames_in": "has 3 items; at most 2 allowed"}
    small = rejected(shared, FLIPBOOK, {"frames_in": [FRAME, data_uri((200, 200))]})
    assert small == {"frames_in[1]": "Each frame must be over 320 pixels wide and high."}
    number = rejected(shared, MOTION_X, {"prompt": "x", "image_url": FRAME, "duration": 10})
    assert number == {"duration": "10 is not text"}
    assert sum(shared.ledger()["rejected_submissions"].values()) == before + 5


# -- schema changes ---------------------------------------------------------------------------


def test_a_profile_schema_change_is_served_and_enforced() -> None:
    changes = {
        WONDER: {"clip_seconds": {"enum": [4, 8, 12]}},
        PRO: {"duration": {"enum": [5, 10]}},
    }
    with running({"schema_changes": changes}) as sim:
        assert field_schema(sim, WONDER, "clip_seconds")["enum"] == [4, 8, 12]
        listed = sim.api.get("/v1/models", params={"search": "seedance-1-0/pro"}).json()
        assert listed["total"] == 1
        listed = sim.api.get(
            "/v1/models", params={"search": "seedance-1-0/pro", "include_schema": "true"}
        ).json()
        assert listed["models"][0]["input_schema"]["properties"]["duration"]["enum"] == [5, 10]
        rid = sim.submit_ok(WONDER, {"text_prompt": "x", "start_frame": FRAME, "clip_seconds": 12})
        assert sim.result(rid, include_cost=True)["cost"] == pytest.approx(0.07 * 12)
        assert rejected(sim, PRO, payload(PRO, duration=3)) == {
            "duration": "3 is not allowed; allowed: 5, 10"
        }
    # The tool's shipped catalog is untouched.
    assert builtin_catalog().require(PRO).fields["duration"].enum == tuple(range(2, 13))


def test_a_field_changed_mid_test_is_served_and_enforced_at_once() -> None:
    with running() as sim:
        body = {"text_prompt": "a long prompt", "start_frame": FRAME, "aspect": "1:1"}
        sim.submit_ok(WONDER, body)
        assert field_schema(sim, WONDER, "aspect")["enum"] == ["16:9", "9:16", "1:1"]
        changed = sim.server.simulator.change_field(WONDER, "aspect", enum=["16:9", "9:16"])
        assert changed.fields["aspect"].enum == ("16:9", "9:16")
        assert field_schema(sim, WONDER, "aspect")["enum"] == ["16:9", "9:16"]
        assert rejected(sim, WONDER, body) == {
            "aspect": "'1:1' is not allowed; allowed: 16:9, 9:16"
        }
        sim.server.simulator.change_field(WONDER, "text_prompt", maxLength=5)
        assert field_schema(sim, WONDER, "text_prompt")["maxLength"] == 5
        short = {**body, "aspect": "9:16"}
        assert rejected(sim, WONDER, short) == {
            "text_prompt": "is 13 characters long; at most 5 allowed"
        }
        sim.server.simulator.change_field(WONDER, "text_prompt", maxLength=None)  # removed
        assert "maxLength" not in field_schema(sim, WONDER, "text_prompt")
        sim.submit_ok(WONDER, short)
    # Another simulator serves the file's schema: nothing leaked into the shared catalog.
    assert Simulator(profile()).catalog.require(WONDER).fields["aspect"].enum == (
        "16:9",
        "9:16",
        "1:1",
    )


@pytest.mark.parametrize(
    ("model_id", "name", "changes", "words"),
    [
        ("acme/nothing/image-to-video", "aspect", {"enum": ["1:1"]}, "unknown model"),
        (WONDER, "ratio", {"enum": ["1:1"]}, "has no field 'ratio'; its fields: text_prompt"),
        (WONDER, "aspect", {"pattern": "x"}, "cannot change pattern"),
        (WONDER, "aspect", {"enum": []}, "non-empty list"),
        (WONDER, "aspect", {}, "must map schema keywords"),
    ],
)
def test_a_bad_field_change_is_refused(
    model_id: str, name: str, changes: dict[str, Any], words: str
) -> None:
    sim = Simulator(profile(), clock=ManualClock())
    with pytest.raises(SchemaChangeError, match=words):
        sim.change_field(model_id, name, **changes)
    assert sim.catalog.require(WONDER).fields["aspect"].enum == ("16:9", "9:16", "1:1")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"acme/wonder-video/v3/image-to-video": {"aspect": {"enum": ["1:1"]}}},
            "schema_changes: unknown model 'acme/wonder-video/v3/image-to-video'; "
            "did you mean 'acme/wonder-video/v2/image-to-video'",
        ),
        ({WONDER: {"ratio": {"enum": ["1:1"]}}}, f"schema_changes: {WONDER} has no field 'ratio'"),
        ({WONDER: {"aspect": {"pattern": "x"}}}, "aspect: cannot change pattern"),
        ({WONDER: {"aspect": {"enum": []}}}, "aspect.enum must be a non-empty list"),
        ({WONDER: {"aspect": {"enum": "1:1"}}}, "aspect.enum must be a non-empty list"),
        ({WONDER: {"text_prompt": {"maxLength": -1}}}, "maxLength must be a whole number >= 0"),
        ({WONDER: {"noise_seed": {"minimum": "low"}}}, "minimum must be a number"),
        ({WONDER: {"aspect": {"default": ["1:1"]}}}, "default must be a single value"),
        ({WONDER: {"aspect": {}}}, "aspect must map schema keywords"),
        ({WONDER: ["aspect"]}, f"schema_changes.{WONDER} must map field names"),
        (["aspect"], "schema_changes must map model ids"),
    ],
)
def test_bad_schema_changes_in_a_profile_are_refused(changes: Any, words: str) -> None:
    with pytest.raises(ProfileError) as raised:
        profile({"schema_changes": changes})
    assert words in str(raised.value)


def test_schema_changes_in_a_profile_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "changed.yaml"
    path.write_text(
        f"schema_changes:\n  {WONDER}:\n    clip_seconds: {{enum: [4, 8, 12], default: 8}}\n",
        encoding="utf-8",
    )
    loaded = load_profile(path)
    assert loaded.schema_changes == {WONDER: {"clip_seconds": {"enum": [4, 8, 12], "default": 8}}}
    assert Simulator(loaded).catalog.require(WONDER).fields["clip_seconds"].default == 8
    path.write_text(f"schema_changes:\n  {WONDER}:\n    seconds: {{enum: [1]}}\n", "utf-8")
    with pytest.raises(ProfileError, match=rf"^{path}: schema_changes: {WONDER} has no field"):
        load_profile(path)


def test_a_change_for_a_model_missing_from_a_given_catalog_is_a_profile_error() -> None:
    changed = profile({"schema_changes": {WONDER: {"aspect": {"enum": ["1:1"]}}}})
    with pytest.raises(ProfileError, match=f"schema_changes: unknown model '{WONDER}'"):
        Simulator(changed, catalog=builtin_catalog())


# -- a model from a given catalog: clip length and price without a simulator key -------------


def _model(**properties: Any) -> dict[str, Any]:
    """A catalog entry with an image field, ``properties`` and no ``simulator`` key."""
    image = {"type": "string", "format": "image_uri"}
    return {
        "model_id": "acme/plain/image-to-video",
        "base_price_usd": 0.5,
        "price_unit": "second",
        "input_schema": {"required": ["image"], "properties": {"image": image, **properties}},
    }


@pytest.mark.parametrize(
    ("properties", "body", "seconds"),
    [
        ({"duration": {"type": "string", "enum": ["3", "6"], "default": "6"}}, {}, 6.0),
        ({"duration": {"type": "integer"}}, {"duration": 3}, 3.0),
        ({"duration": {"type": "integer"}}, {"duration": 0}, 5.0),  # not a length: 5 s
        ({"length": {"type": "integer"}}, {"length": 9}, 5.0),  # not named duration
    ],
)
def test_a_given_model_runs_by_its_duration_field(
    properties: dict[str, Any], body: dict[str, Any], seconds: float
) -> None:
    catalog = Catalog([parse_model(_model(**properties))])
    sim = Simulator(profile(), clock=ManualClock(), catalog=catalog)
    job = sim.submit("owner", "acme/plain/image-to-video", {"image": HTTPS_IMAGE, **body})
    assert job.video_seconds == seconds
    assert job.cost == pytest.approx(0.5 * seconds)


@pytest.mark.parametrize(
    ("simulator", "words"),
    [
        ("yes", "simulator must be a JSON object"),
        ({"duration_field": "length"}, "duration_field names no field"),
        ({"price_factors": {"image": {"x": -1}}}, "price_factors.image"),
        ({"price_factors": ["image"]}, "price_factors must map"),
    ],
)
def test_a_bad_simulator_key_fails_when_the_simulator_starts(simulator: Any, words: str) -> None:
    catalog = Catalog([parse_model({**_model(), "simulator": simulator})])
    with pytest.raises(CatalogError, match=words):
        Simulator(profile(), catalog=catalog)
