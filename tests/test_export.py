"""Dataset export of a real batch made against the simulator: jsonl, csv and videofolder."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.catalog import builtin_catalog
from orchestrator.cli import main
from orchestrator.outputs import export
from orchestrator.outputs.export import (
    HEAD,
    METADATA,
    TAIL,
    ExportError,
    export_batch,
    flatten_inputs,
)
from orchestrator.simulator import SimulatorServer, load_profile
from orchestrator.store.records import NewJob
from orchestrator.store.states import JobState
from orchestrator.store.store import Store
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
TOKEN = "export-secret-token-value"
BATCH = "model-comparison"
PROMPTS = {
    "beach": "slow dolly-in over the beach at sunset, waves rolling in",
    "forest": "wind moves through a dense pine forest, light rays through the trees",
}
DREAMINA = "bytedance/dreamina-3-0/pro/image-to-video"
RUNWAY = "runwayml/runway-gen-4/turbo/image-to-video"
#: The job whose sidecar the fixture deletes (the export falls back to the store).
NO_SIDECAR = "forest_model-seedance-1-0-lite"


@dataclass
class Finished:
    db: Path
    root: Path
    images: Path

    def store(self) -> Store:
        return Store.open(str(self.db))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """The matrix manifest run to completion, plus a failed job and one missing sidecar."""
    base = tmp_path_factory.mktemp("export")
    shutil.copytree(REPO / "manifests", base / "manifests")
    db, root = base / "store.db", base / "videos"
    profile = load_profile("calm").with_overrides(time_scale=0.002)
    with pytest.MonkeyPatch.context() as patch, SimulatorServer(profile, token=TOKEN) as server:
        patch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
        out = io.StringIO()
        code = main(
            [
                *("run", str(base / "manifests/matrix-all-models.yaml")),
                *("--db", str(db), "--out", str(root), "--api-base", server.api_base),
                *("--trust-host", "localhost", "--poll-min", "0.01", "--poll-max", "0.2"),
            ],
            out=out,
        )
    assert code == 0, out.getvalue()
    with Store.open(str(db)) as store:
        broken = NewJob(
            key="f" * 64,
            name="broken",
            model_id=RUNWAY,
            payload={"promptText": "never made", "duration": 5},
            output_path=f"{BATCH}/runway-gen-4-turbo/broken.mp4",
            max_attempts=1,
        )
        store.enqueue(BATCH, [broken])
        moved = WorkQueue(store).user_action(
            BATCH, ["broken"], [JobState.PENDING], JobState.FAILED, "test"
        )
        assert moved == ["broken"]
    (root / BATCH / "seedance-1-0-lite/forest.json").unlink()
    return Finished(db=db, root=root, images=base / "manifests/images")


@pytest.fixture
def store(finished: Finished) -> Iterator[Store]:
    with finished.store() as opened:
        yield opened


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_has_one_row_per_succeeded_job(finished: Finished, store: Store) -> None:
    result = export_batch(store, BATCH, "jsonl")
    assert result.path == finished.root / BATCH / "export.jsonl"
    assert result.skipped == ["broken: failed"]
    rows = read_jsonl(result.path)
    jobs = {job.id: job for job in store.list_jobs(BATCH, state="succeeded")}
    assert result.rows == len(rows) == len(jobs) == 10
    assert {row["id"] for row in rows} == set(jobs)
    assert not list((finished.root / BATCH).glob(".*.part"))
    for row in rows:
        job = jobs[row["id"]]
        assert list(row) == [*HEAD, *sorted(set(row) - set(HEAD) - set(TAIL)), *TAIL]
        assert (row["key"], row["batch"], row["model"]) == (job.key, BATCH, job.model)
        name = row["id"].split("_model-")[0]
        assert row["prompt"] == PROMPTS[name]
        assert row["image_path"] == str(finished.images / f"{name}.jpg")
        assert row["image_sha256"] == sha256(finished.images / f"{name}.jpg")
        assert row["last_image_path"] is None
        assert row["duration"] == 5.0, row["model"]  # seconds, for Dreamina too (121 frames)
        video = Path(row["video_abspath"])
        assert row["video_path"] == job.output_path
        assert video == finished.root / job.output_path
        assert row["sha256"] == sha256(video) == job.sha256
        assert row["size_bytes"] == video.stat().st_size
        assert (row["request_id"], row["cost_usd"]) == (job.request_id, job.cost)
        assert set(row["timings"]) == {"queued", "submitted", "started", "finished", "downloaded"}
        assert row["timings"]["submitted"] is not None
        if row["id"] == NO_SIDECAR:
            continue
        assert row["sidecar"] is True
        assert row["codec"] == "h264"
        assert row["width"] > 0
        assert row["height"] > 0
        assert row["duration_s"] > 0
        assert row["fps"] == round(row["frames"] / row["duration_s"], 3)


def test_runway_prompt_and_dreamina_frames_become_universal(store: Store) -> None:
    rows = {row["model"]: row for row in read_jsonl(export_batch(store, BATCH, "jsonl").path)}
    assert set(rows[RUNWAY]) == set(rows[DREAMINA]) == {*HEAD, *TAIL}  # no native names
    assert rows[DREAMINA]["duration"] == 5.0  # sent as frames=121
    assert rows[DREAMINA]["frames"] == rows[DREAMINA]["fps"] * rows[DREAMINA]["duration_s"]


def test_missing_sidecar_falls_back_to_the_store(finished: Finished, store: Store) -> None:
    rows = read_jsonl(export_batch(store, BATCH, "jsonl").path)
    row = next(r for r in rows if r["id"] == NO_SIDECAR)
    job = store.list_jobs(BATCH, state="succeeded")
    view = next(j for j in job if j.id == NO_SIDECAR)
    assert row["sidecar"] is False
    assert all(row[name] is None for name in ("duration_s", "fps", "width", "height", "codec"))
    assert row["sha256"] == view.sha256 == sha256(finished.root / view.output_path)
    assert row["size_bytes"] == view.size_bytes
    assert view.downloaded_at is not None
    assert row["timings"]["downloaded"] == view.downloaded_at.isoformat()
    assert row["prompt"] == PROMPTS["forest"]
    assert row["duration"] == 5.0


def decode(cell: str, like: Any) -> Any:
    if cell == "":
        return None
    return cell if isinstance(like, str) else json.loads(cell)


def test_csv_parses_back_to_the_jsonl_rows(tmp_path: Path, store: Store) -> None:
    expected = read_jsonl(export_batch(store, BATCH, "jsonl", dest=tmp_path / "x.jsonl").path)
    result = export_batch(store, BATCH, "csv", dest=tmp_path / "deep/x.csv")
    assert result.path == tmp_path / "deep/x.csv"
    assert result.rows == 10
    with result.path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        lines = list(reader)
    assert header == list(expected[0])
    parsed = [
        {column: decode(cell, row[column]) for column, cell in zip(header, line, strict=True)}
        for line, row in zip(lines, expected, strict=True)
    ]
    assert parsed == expected


def test_hf_videofolder(tmp_path: Path, store: Store) -> None:
    jsonl = read_jsonl(export_batch(store, BATCH, "jsonl", dest=tmp_path / "x.jsonl").path)
    folder = tmp_path / "dataset"
    result = export_batch(store, BATCH, "hf", dest=folder)
    assert (result.path, result.rows, result.skipped) == (folder, 10, ["broken: failed"])
    records = read_jsonl(folder / METADATA)
    assert len(records) == 10
    for record, row in zip(records, jsonl, strict=True):
        assert list(record) == ["file_name", *row]
        video = (folder / record["file_name"]).resolve()
        assert video.is_file()
        assert video.is_relative_to(folder.resolve())
        assert record["video_path"] == record["file_name"]
        assert record["video_abspath"] == str(video)
        assert sha256(video) == record["sha256"] == row["sha256"]
        assert video.stat().st_ino == Path(row["video_abspath"]).stat().st_ino  # hard link
        assert {k: v for k, v in record.items() if not k.startswith(("file", "video"))} == {
            k: v for k, v in row.items() if not k.startswith("video")
        }
    assert not [p for p in folder.rglob("*") if p.suffix not in (".mp4", ".jsonl") and p.is_file()]
    # Exporting again updates the folder in place, dropping files no longer listed.
    stale = folder / "old/gone.mp4"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    with (folder / METADATA).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"file_name": "old/gone.mp4"}) + "\n")
    assert export_batch(store, BATCH, "hf", dest=folder).rows == 10
    assert not stale.exists()
    assert len(read_jsonl(folder / METADATA)) == 10


def test_hf_default_folder(finished: Finished, store: Store) -> None:
    result = export_batch(store, BATCH, "hf")
    assert result.path == finished.root / f"{BATCH}-hf"
    names = [r["file_name"] for r in read_jsonl(result.path / METADATA)]
    assert "dreamina-3-0-pro/beach.mp4" in names  # the batch folder prefix is dropped
    shutil.rmtree(result.path)


def test_hf_refuses_a_folder_it_did_not_make(tmp_path: Path, store: Store) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_batch(store, BATCH, "hf", dest=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_hf_refuses_a_folder_holding_the_videos(finished: Finished, store: Store) -> None:
    (finished.root / METADATA).write_text("")
    try:
        with pytest.raises(ExportError, match="holds videos"):
            export_batch(store, BATCH, "hf", dest=finished.root)
    finally:
        (finished.root / METADATA).unlink()


def test_datasets_loads_the_videofolder(tmp_path: Path, store: Store) -> None:
    if importlib.util.find_spec("datasets") is None:
        pytest.skip("datasets not installed: pip install datasets to run this check")
    import datasets  # type: ignore[import-not-found,unused-ignore]

    folder = export_batch(store, BATCH, "hf", dest=tmp_path / "ds").path
    loaded = datasets.load_dataset("videofolder", data_dir=str(folder))
    assert loaded["train"].num_rows == 10
    assert "prompt" in loaded["train"].column_names


def test_unknown_batch_and_format(store: Store) -> None:
    with pytest.raises(ExportError, match="unknown batch"):
        export_batch(store, "nope", "jsonl")
    with pytest.raises(ExportError, match="unknown export format"):
        export_batch(store, BATCH, "xml")  # type: ignore[arg-type]


def test_flatten_inputs_names_and_values() -> None:
    catalog = builtin_catalog()
    marker = {"$image": {"path": "/in/a.png", "sha256": "aa"}}
    runway = catalog.require(RUNWAY)
    assert flatten_inputs({"promptText": "p", "ratio": "1280:720", "seed": 7}, runway) == {
        "prompt": "p",
        "ratio": "1280:720",
        "seed": 7,
    }
    lite = catalog.require("bytedance/seedance-1-0/lite/image-to-video")
    flat = flatten_inputs(
        {"first_frame_image_url": marker, "last_frame_image_url": "https://x/b.png"}, lite
    )
    assert flat == {
        "image_path": "/in/a.png",
        "image_sha256": "aa",
        "last_image_path": "https://x/b.png",
        "last_image_sha256": None,
    }
    v15 = catalog.require("bytedance/seedance-v1.5-pro/image-to-video")
    assert flatten_inputs({"generate_audio": False, "duration": 10}, v15) == {
        "duration": 10.0,
        "generate_audio": False,
    }
    # No catalog entry: native names, a clashing one prefixed, image markers as paths.
    assert flatten_inputs({"prompt": "p", "width": 3, "refs": [marker]}, None) == {
        "prompt": "p",
        "refs": ["/in/a.png"],
        "input_width": 3,
    }


def test_edge_cases_without_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing video, stale or broken sidecars, copies across filesystems, odd folders."""
    root = tmp_path / "out"
    with Store.open(str(tmp_path / "s.db")) as small:
        small.ensure_batch("b", manifest_path="m.yaml", output_root=str(root), settings={})
        small.enqueue(
            "b",
            [
                NewJob(
                    key=f"{n:064x}",
                    name=name,
                    model_id="acme/wonder/image-to-video",
                    payload={"prompt": name, "opts": {"ref": {"$image": {"path": "/r.png"}}}},
                    output_path=f"clips/{name}.mp4",
                    max_attempts=1,
                )
                for n, name in enumerate(("stale", "broken", "gone"), start=1)
            ],
        )
        WorkQueue(small).user_action("b", None, [JobState.PENDING], JobState.SUCCEEDED, "test")
        (root / "clips").mkdir(parents=True)
        for name in ("stale", "broken"):
            (root / f"clips/{name}.mp4").write_bytes(name.encode())
        (root / "clips/stale.json").write_text(json.dumps({"job": {"key": "0" * 64}}))
        (root / "clips/broken.json").write_text("{not json")
        rows = read_jsonl(export_batch(small, "b", "jsonl").path)
        assert [(r["id"], r["sidecar"], r["prompt"]) for r in rows] == [
            ("stale", False, "stale"),
            ("broken", False, "broken"),
        ]
        assert rows[0]["opts"] == {"ref": "/r.png"}
        assert (root / "b/export.jsonl").is_file()
        (tmp_path / "file").write_text("")
        with pytest.raises(ExportError, match="not a folder"):
            export_batch(small, "b", "hf", dest=tmp_path / "file")

        def no_link(source: object, target: object) -> None:
            raise OSError("cross-device link")

        monkeypatch.setattr("os.link", no_link)
        (tmp_path / "empty").mkdir()
        result = export_batch(small, "b", "hf", dest=tmp_path / "empty")
        assert result.skipped == [f"gone: video file missing ({root / 'clips/gone.mp4'})"]
        names = [r["file_name"] for r in read_jsonl(result.path / METADATA)]
        assert names == ["clips/stale.mp4", "clips/broken.mp4"]  # no batch prefix to drop
        copy = result.path / "clips/stale.mp4"
        assert copy.read_bytes() == b"stale"
        assert copy.stat().st_ino != (root / "clips/stale.mp4").stat().st_ino


@pytest.mark.parametrize(
    "prompt", ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
)
def test_csv_cells_a_spreadsheet_would_run_are_neutralized(prompt: str) -> None:
    text = export._csv(
        [{"prompt": prompt, "seed": -3, "note": "a = b"}], ["prompt", "seed", "note"]
    )
    [header, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert header == ["prompt", "seed", "note"]
    assert row == ["'" + prompt, "-3", "a = b"]  # shown as text; numbers stay numbers
