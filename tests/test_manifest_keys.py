"""Deterministic job keys, and the payload the store keeps (image path + hash, never bytes)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from model_ids import DREAMINA, LITE

from orchestrator.manifest import (
    IMAGE_MARKER,
    Expansion,
    ImageRef,
    JobSpec,
    canonical_json,
    job_key,
    load_manifest,
)

Load = Callable[..., Expansion]
MakeImage = Callable[..., Path]

JOB_A = "  - {id: a, prompt: slow dolly-in, image: in/beach.jpg}\n"
JOB_B = "  - {id: b, prompt: neon rain, image: in/city.png, resolution: 720p}\n"
JOB_C = "  - {id: c, prompt: storm, image: in/beach.jpg, duration: 10}\n"


@pytest.fixture(autouse=True)
def images(make_image: MakeImage, tmp_path: Path) -> Path:
    make_image("project/in/beach.jpg", (1280, 720))
    make_image("project/in/city.png", (720, 1280))
    return tmp_path / "project"


def manifest(*jobs: str, head: str = "") -> str:
    return f"batch: demo\nmodel: {LITE}\n{head}jobs:\n" + "".join(jobs)


def keys(expansion: Expansion) -> dict[str, str]:
    return {job.id: job.key for job in expansion.jobs}


def test_loading_the_same_manifest_twice_gives_the_same_keys(load: Load, images: Path) -> None:
    path = images / "m.yaml"
    first = load(manifest(JOB_A, JOB_B, JOB_C), path)
    second = load_manifest(path)
    assert [j.key for j in first.jobs] == [j.key for j in second.jobs]
    assert len(set(keys(first).values())) == 3


def test_the_key_is_the_hash_of_model_payload_fit_and_replicate(load: Load, images: Path) -> None:
    [job] = load(manifest(JOB_A), images / "m.yaml").jobs
    sha = hashlib.sha256((images / "in" / "beach.jpg").read_bytes()).hexdigest()
    assert job.keyed_payload() == {
        "prompt": "slow dolly-in",
        "first_frame_image_url": {IMAGE_MARKER: sha},
    }
    assert job.key == job_key(LITE, job.keyed_payload(), replicate=0, image_fit=None)
    material = {
        "v": 1,
        "model": LITE,
        "payload": job.keyed_payload(),
        "replicate": 0,
        "image_fit": None,
    }
    assert job.key == hashlib.sha256(canonical_json(material).encode()).hexdigest()


def test_reordering_jobs_changes_no_key(load: Load, images: Path) -> None:
    before = keys(load(manifest(JOB_A, JOB_B, JOB_C), images / "m.yaml"))
    after = keys(load(manifest(JOB_C, JOB_A, JOB_B), images / "m.yaml"))
    assert before == after


def test_renaming_a_job_or_its_image_file_changes_no_key(load: Load, images: Path) -> None:
    before = load(manifest(JOB_A), images / "m.yaml").jobs[0]
    (images / "in" / "beach.jpg").rename(images / "in" / "renamed.jpg")
    renamed = JOB_A.replace("id: a", "id: z").replace("beach.jpg", "renamed.jpg")
    after = load(manifest(renamed), images / "m.yaml").jobs[0]
    assert after.key == before.key
    assert after.id == "z"
    assert after.images["first_frame_image_url"].path != before.images["first_frame_image_url"].path


def test_moving_the_manifest_folder_changes_no_key(
    load: Load, images: Path, tmp_path: Path
) -> None:
    before = load(manifest(JOB_A, JOB_B), images / "m.yaml")
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(images, moved)
    shutil.rmtree(images)
    after = load_manifest(moved / "m.yaml")
    assert keys(after) == keys(before)
    marker = after.jobs[0].stored_payload()["first_frame_image_url"][IMAGE_MARKER]
    assert marker["path"] == str((moved / "in" / "beach.jpg").resolve())


def test_a_glob_and_an_explicit_path_to_the_same_file_give_the_same_key(
    load: Load, images: Path
) -> None:
    explicit = load(manifest("  - {prompt: waves, image: in/beach.jpg}\n"), images / "m.yaml")
    globbed = load(manifest("  - {prompt: waves, image: 'in/*.jpg'}\n"), images / "m.yaml")
    assert explicit.jobs[0].key == globbed.jobs[0].key


def test_editing_one_prompt_changes_exactly_one_key(load: Load, images: Path) -> None:
    before = keys(load(manifest(JOB_A, JOB_B, JOB_C), images / "m.yaml"))
    edited = JOB_B.replace("neon rain", "neon rain at night")
    after = keys(load(manifest(JOB_A, edited, JOB_C), images / "m.yaml"))
    assert [job_id for job_id in before if before[job_id] != after[job_id]] == ["b"]


def test_changing_image_bytes_changes_the_key_of_the_jobs_using_it(
    load: Load, images: Path, make_image: MakeImage
) -> None:
    before = keys(load(manifest(JOB_A, JOB_B, JOB_C), images / "m.yaml"))
    make_image("project/in/city.png", (720, 1280), color=(0, 0, 0))
    after = keys(load(manifest(JOB_A, JOB_B, JOB_C), images / "m.yaml"))
    assert [job_id for job_id in before if before[job_id] != after[job_id]] == ["b"]


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ("image_fit: pad\n", True),
        ("defaults: {resolution: 480p}\n", True),
        ("output: {pattern: '{batch}/{job}.mp4'}\n", False),
        ("limits: {max_in_flight: 1}\n", False),
        ("description: renamed\n", False),
    ],
    ids=["fit", "explicit-default-value", "pattern", "limits", "description"],
)
def test_what_is_part_of_the_key(load: Load, images: Path, change: str, differs: bool) -> None:
    before = keys(load(manifest(JOB_A), images / "m.yaml"))
    after = keys(load(manifest(JOB_A, head=change), images / "m.yaml"))
    assert (before != after) is differs


def test_the_batch_name_is_not_part_of_the_key(load: Load, images: Path) -> None:
    before = keys(load(manifest(JOB_A), images / "m.yaml"))
    after = keys(load(manifest(JOB_A).replace("batch: demo", "batch: other"), images / "m.yaml"))
    assert before == after


# -- the stored payload ----------------------------------------------------------------------


def test_the_stored_payload_keeps_path_and_hash_never_bytes(load: Load, images: Path) -> None:
    head = "image_fit: crop\n"
    text = manifest(JOB_A, head=head) + (
        f"  - {{id: d, model: {DREAMINA}, prompt: x, image: in/city.png, image_fit: none}}\n"
        "  - {id: u, prompt: x, image: 'https://example.com/u.png'}\n"
    )
    jobs = {job.id: job for job in load(text, images / "m.yaml").jobs}
    beach = images / "in" / "beach.jpg"
    city = images / "in" / "city.png"
    assert jobs["a"].stored_payload() == {
        "prompt": "slow dolly-in",
        "first_frame_image_url": {
            IMAGE_MARKER: {
                "path": str(beach.resolve()),
                "sha256": hashlib.sha256(beach.read_bytes()).hexdigest(),
                "fit": "crop",
            }
        },
    }
    assert jobs["d"].stored_payload()["image_urls"] == [
        {
            IMAGE_MARKER: {
                "path": str(city.resolve()),
                "sha256": hashlib.sha256(city.read_bytes()).hexdigest(),
            }
        }
    ]
    assert jobs["u"].stored_payload()["first_frame_image_url"] == "https://example.com/u.png"
    for job in jobs.values():
        stored = json.dumps(job.stored_payload())
        assert "data:" not in stored
        assert base64.b64encode(beach.read_bytes()[:48]).decode() not in stored
        assert base64.b64encode(city.read_bytes()[:48]).decode() not in stored
        assert len(stored) < 500


def test_with_images_keeps_the_payload_it_was_given() -> None:
    ref = ImageRef(path="/in/a.png", sha256="ab")
    job = JobSpec(
        id="a",
        base_id="a",
        variant="",
        model_id=DREAMINA,
        model_slug="dreamina-3-0-pro",
        payload={"prompt": "x", "image_urls": ["a.png"]},
        images={"image_urls": ref},
        replicate=0,
        image_fit="pad",
        key="k",
        output_path="b/a.mp4",
        source_file="m.yaml",
        source_line=3,
    )
    assert job.stored_payload() == {
        "prompt": "x",
        "image_urls": [{IMAGE_MARKER: {"path": "/in/a.png", "sha256": "ab", "fit": "pad"}}],
    }
    assert job.keyed_payload() == {"prompt": "x", "image_urls": [{IMAGE_MARKER: "ab"}]}
    assert job.payload == {"prompt": "x", "image_urls": ["a.png"]}


def test_image_ref_forms() -> None:
    url = ImageRef(url="https://e.com/a.png", sha256="ff")
    assert url.stored("pad") == "https://e.com/a.png"
    assert url.keyed() == "https://e.com/a.png"
    local = ImageRef(path="/a.png", sha256="ab")
    assert local.stored() == {IMAGE_MARKER: {"path": "/a.png", "sha256": "ab"}}
    assert local.keyed() == {IMAGE_MARKER: "ab"}


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": "é"}]}) == (
        '{"a":[1,{"c":"é","d":2}],"b":1}'
    )
    assert job_key("m", {"a": 1}, replicate=0) != job_key("m", {"a": 1}, replicate=1)
    assert job_key("m", {"a": 1}, replicate=0) != job_key(
        "m", {"a": 1}, replicate=0, image_fit="pad"
    )
    assert job_key("m", {"a": 1}, replicate=0) != job_key("n", {"a": 1}, replicate=0)
