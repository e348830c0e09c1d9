"""The public Python API over sockets: batches from a manifest, a dict and rows, checked,
planned, enqueued and run against the simulator; the store read back; bad input refused
with one exception type that names the file, line, job and field."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest
from model_ids import LITE

import orchestrator
from orchestrator import Batch, CatalogOptions, InputError, RunOptions
from orchestrator.store import JobState

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import ImageFactory, ManifestWriter

OFFLINE = CatalogOptions(offline=True)


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach RunComfy: without a token the catalog is read offline."""
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)


def rows() -> list[dict[str, object]]:
    return [
        {"id": "dolly", "prompt": "slow dolly-in over the beach", "image": "in/beach.jpg"},
        {"id": "pan", "prompt": "pan across the sand", "image": "in/beach.jpg", "duration": 10},
    ]


def rows_batch(tmp_path: Path, **kwargs: object) -> Batch:
    return Batch.from_rows(
        rows(),
        name="beach",
        model=LITE,
        defaults={"resolution": "480p"},
        base_dir=tmp_path,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_batch_from_rows_runs_end_to_end_and_the_store_reads_back(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/beach.jpg")
    batch = rows_batch(tmp_path)
    db = tmp_path / "runs.db"

    checked = batch.validate()
    assert checked.ok
    assert checked.problems == []
    assert (checked.batch, checked.jobs, checked.models) == ("beach", 2, {LITE: 2})
    assert not db.exists()  # validate stores nothing

    with orchestrator.simulate(time_scale=0.01) as sim:
        planned = batch.plan(db=db, api=sim)
        assert (planned.total, planned.new) == (2, 2)
        assert planned.estimate_new_usd is not None
        assert planned.estimate_new_usd > 0
        assert planned.output_root == (tmp_path / "outputs").resolve()
        assert not db.exists()  # plan stores nothing either

        enqueued = batch.enqueue(db=db, api=sim)
        assert (enqueued.added, enqueued.existing) == (2, 0)
        again = batch.enqueue(db=db, api=sim)
        assert (again.added, again.existing) == (0, 2)

        result = batch.run(db=db, api=sim)
    assert result.ok, result.report
    assert result.counts[JobState.SUCCEEDED.value] == 2 == result.total
    assert (result.added, result.existing) == (0, 2)
    videos = sorted(p.name for p in (tmp_path / "outputs" / "beach").rglob("*.mp4"))
    assert videos == ["dolly.mp4", "pan.mp4"]
    assert (tmp_path / "outputs" / "beach" / "report.html").is_file()  # refreshed by run

    status = orchestrator.status(db, "beach")
    assert status.total == 2
    assert status.counts["succeeded"] == 2
    assert status.spend_usd > 0
    assert json.loads(json.dumps(status.as_dict()))["batches"][0]["name"] == "beach"
    everything = orchestrator.status(str(db))
    assert everything.batch is None
    assert everything.total == 2

    listed = orchestrator.jobs(db, "beach", state=JobState.SUCCEEDED)
    assert sorted(j.id for j in listed) == ["dolly", "pan"]
    assert orchestrator.jobs(db, state="failed") == []

    exported = orchestrator.export(db, "beach", "csv", dest=tmp_path / "beach.csv")
    assert exported.rows == 2
    assert exported.path == tmp_path / "beach.csv"
    page = orchestrator.report(db, "beach", dest=tmp_path / "page.html")
    assert page.videos == 2
    assert page.path.is_file()


def test_manifest_dict_and_rows_give_the_same_jobs(
    tmp_path: Path, make_image: ImageFactory, write_manifest: ManifestWriter
) -> None:
    make_image("in/beach.jpg")
    manifest = write_manifest(
        f"""
        batch: beach
        model: {LITE}
        defaults: {{resolution: 480p}}
        jobs:
          - {{id: dolly, prompt: slow dolly-in over the beach, image: in/beach.jpg}}
          - {{id: pan, prompt: pan across the sand, image: in/beach.jpg, duration: 10}}
        """
    )
    content = {"batch": "beach", "model": LITE, "defaults": {"resolution": "480p"}}
    batches = [
        Batch.from_manifest(manifest, options=OFFLINE),
        Batch.from_dict({**content, "jobs": rows()}, base_dir=tmp_path, options=OFFLINE),
        rows_batch(tmp_path, options=OFFLINE),
    ]
    plans = [b.plan() for b in batches]
    keys = [sorted(j.key for j in p.expansion.jobs) for p in plans if p.expansion]
    assert len(keys) == 3
    assert keys[0] == keys[1] == keys[2]
    assert {p.output_root for p in plans} == {(tmp_path / "outputs").resolve()}
    # The module-level functions take a manifest path too.
    assert orchestrator.validate(manifest).jobs == 2
    assert orchestrator.plan(str(manifest)).new == 2
    assert orchestrator.enqueue(manifest, db=tmp_path / "m.db").added == 2


def test_a_bad_manifest_is_one_exception_naming_file_line_job_and_field(
    tmp_path: Path, make_image: ImageFactory, write_manifest: ManifestWriter
) -> None:
    make_image("in/beach.jpg")
    manifest = write_manifest(
        f"""
        batch: beach
        model: {LITE}
        jobs:
          - id: city
            prompt: neon city, rain
            image: in/beach.jpg
            resolution: 4k
        """
    )
    batch = Batch.from_manifest(manifest)
    checked = batch.validate()
    assert not checked.ok
    [problem] = checked.problems
    assert (problem.file, problem.line, problem.job, problem.field) == (
        str(manifest),
        7,
        "city",
        "resolution",
    )
    with pytest.raises(InputError) as caught:
        checked.raise_for_problems()
    expected = f"{manifest}:7: job 'city': model {LITE}: field 'resolution': '4k' is not allowed"
    assert str(caught.value).startswith(expected)
    for call in (batch.plan, lambda: batch.enqueue(db=tmp_path / "x.db")):
        with pytest.raises(InputError, match="field 'resolution'"):
            call()
    assert not (tmp_path / "x.db").exists()  # refused before the store was created


def test_bad_rows_and_dicts_name_the_row_and_field(tmp_path: Path) -> None:
    bad = Batch.from_rows(
        [{"prompt": "fine", "image": "https://example.com/a.jpg"}, {"prompt": 5}],
        name="rows",
        model=LITE,
        base_dir=tmp_path,
        options=OFFLINE,
    )
    problems = bad.validate().problems
    assert [(p.file, p.job, p.field) for p in problems] == [
        ("<rows>", "#2", "prompt"),
        ("<rows>", "#2", "image"),
    ]
    with pytest.raises(InputError, match=r"<rows>: job '#2'"):
        bad.plan()

    with pytest.raises(InputError, match="<mine>: field 'batch'"):
        Batch.from_dict({"batch": "no spaces allowed", "jobs": []}, source="<mine>").plan()
    looped: dict[str, object] = {"batch": "b"}
    looped["jobs"] = [looped]
    [deep] = Batch.from_dict(looped).validate().problems  # returned, not raised
    assert "nested more than 64 levels deep (or contains itself)" in str(deep)


def test_bad_options_and_missing_stores_are_input_errors(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/beach.jpg")
    missing = tmp_path / "none.db"
    for read in (
        lambda: orchestrator.status(missing),
        lambda: orchestrator.jobs(missing),
        lambda: orchestrator.export(missing, "beach"),
        lambda: orchestrator.report(missing, "beach"),
    ):
        with pytest.raises(InputError, match=f"no store at {missing}"):
            read()
    assert not missing.exists()  # reading never creates a store

    db = tmp_path / "runs.db"
    rows_batch(tmp_path).enqueue(db=db)
    with pytest.raises(InputError, match=r"no batch 'beech'.*holds: beach.*did you mean 'beach'"):
        orchestrator.status(db, "beech")
    with pytest.raises(InputError, match="field 'state': unknown state 'done'"):
        orchestrator.jobs(db, state="done")
    with pytest.raises(InputError, match="field 'format'"):
        orchestrator.export(db, "beach", "xml")  # type: ignore[arg-type]

    # A run needs a token (or a simulator), and options in range; nothing is submitted.
    with pytest.raises(InputError, match=r"RUNCOMFY_API_TOKEN.*api=orchestrator\.simulate"):
        rows_batch(tmp_path).run(db=db)
    with orchestrator.simulate(time_scale=0.01) as sim:
        with pytest.raises(InputError, match="<options>: field 'max_in_flight': must be at"):
            rows_batch(tmp_path).run(db=db, api=sim, options=RunOptions(max_in_flight=0))
        assert sim.server.simulator.ledger.snapshot()["submissions"] == {}
    with pytest.raises(InputError, match="field 'profile'"), orchestrator.simulate("nope"):
        pass


def test_simulate_yields_what_a_caller_needs(tmp_path: Path) -> None:
    with orchestrator.simulate(time_scale=0.01, slots=2) as sim:
        assert sim.api_base.startswith("http://127.0.0.1:")
        assert sim.connection.token == sim.token
        assert sim.connection.trusted_hosts
        headers = {"Authorization": f"Bearer {sim.token}"}
        reply = httpx.get(f"{sim.api_base}/v1/models/{LITE}", headers=headers)
        assert reply.status_code == 200, reply.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{sim.api_base}/v1/models/{LITE}", headers=headers)  # gone after the block


def test_the_public_names_are_exported() -> None:
    assert orchestrator.__version__
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
    with pytest.raises(AttributeError):
        orchestrator.nothing_here  # noqa: B018
