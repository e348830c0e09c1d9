"""Pre-flight of the output side: names, paths, a writable folder and free space, checked by
``validate``, ``plan``, ``enqueue`` and ``run`` before anything is stored or paid for.

Read-only folders and a small disk are real tmpfs mounts when the tests run as root (and
the kernel lets them mount), else a chmod-ed folder and a patched ``shutil.disk_usage``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from collections import namedtuple
from typing import TYPE_CHECKING

import pytest

from orchestrator.cli import main
from orchestrator.outputs import ownership
from orchestrator.outputs.ownership import NoFreeName, free_name, owned_by
from orchestrator.outputs.paths import NAME_MAX, part_name
from orchestrator.outputs.preflight import MAX_LISTED, Row, check_outputs, format_size

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

LITE = "bytedance/seedance-1-0/lite/image-to-video"


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue()


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``path`` (created) with ``options``; yields whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def manifest(
    tmp_path: Path, make_image: Callable[..., Path], write_manifest: Callable[..., Path]
) -> Callable[..., str]:
    """``manifest(ids, extra="")``: a Seedance Lite manifest with one job per id."""
    make_image("beach.jpg", (1280, 720))

    def write(ids: list[str], extra: str = "") -> str:
        jobs = "".join(
            f"  - id: {job_id}\n    prompt: slow dolly-in, take {n}\n    image: beach.jpg\n"
            for n, job_id in enumerate(ids)
        )
        text = f"batch: b\nmodel: {LITE}\njobs:\n{jobs}{extra}"
        return str(write_manifest(text, tmp_path / "m.yaml"))

    return write


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error: ")]


# --- names and paths -----------------------------------------------------------------------


def test_validate_refuses_a_250_character_id_naming_file_line_job_and_field(
    manifest: Callable[..., str], tmp_path: Path
) -> None:
    long_id = "a" * 250
    path = manifest([long_id], "matrix:\n  duration: [5, 10]\n")  # ..._duration-5.mp4
    db = tmp_path / "store.db"
    code, out = run("validate", path, "--db", str(db))
    assert code == 2, out
    found = errors(out)
    assert len(found) == 2  # once per job, not once per too-long name
    for (seconds, size), line in zip(((5, 265), (10, 266)), found, strict=True):
        assert line.startswith(f"error: {path}:4: job '{long_id}_duration-{seconds}': field 'id': ")
        assert f"the file name '{'a' * 24}..." in line
        assert f"is {size} bytes long" in line
        assert "at most 255 bytes per name" in line
        assert "(use a shorter id or output.pattern)" in line
    assert "2 problems found; nothing was stored or submitted." in out
    # Every command that would store or pay refuses it the same way, before the store exists.
    assert run("plan", path, "--db", str(db))[0] == 2
    assert run("enqueue", path, "--db", str(db))[0] == 2
    code, out = run("run", path, "--db", str(db), "--simulate", "--quiet")
    assert code == 2
    assert len(errors(out)) == 2
    assert not db.exists()
    assert not (tmp_path / "outputs").exists()


def test_a_name_one_byte_too_long_is_refused_and_one_that_fits_is_not(
    manifest: Callable[..., str],
) -> None:
    code, out = run("validate", manifest(["a" * 252]))  # a252.mp4 = 256 bytes
    assert code == 2
    assert "is 256 bytes long" in out
    assert "field 'id'" in out
    code, out = run("validate", manifest(["a" * 251]))  # 255 bytes, its sidecar 256
    assert code == 2
    assert "the sidecar name" in out
    assert "is 256 bytes long" in out
    code, out = run("validate", manifest(["a" * 250]))  # 254 bytes, sidecar 255
    assert code == 0, out


def test_a_230_character_id_is_accepted_because_its_part_name_is_hashed(
    manifest: Callable[..., str], tmp_path: Path
) -> None:
    job_id = "b" * 230
    code, out = run("validate", manifest([job_id], "matrix:\n  duration: [5, 10]\n"), "--json")
    assert code == 0, out
    assert json.loads(out)["jobs"] == 2
    video = f"{job_id}_duration-5.mp4"  # 245 bytes: fits, but ".{name}.{8 hex}.part" is 260
    sidecar = f"{job_id}_duration-5.json"
    for name in (video, sidecar):
        assert len(f".{name}.0a1b2c3d.part".encode()) > NAME_MAX
        part = part_name(name, "0a1b2c3d")
        assert len(part.encode()) <= NAME_MAX
        (tmp_path / part).write_bytes(b"")  # and the file system agrees
        (tmp_path / name).write_bytes(b"")


def test_a_path_over_path_max_is_refused(manifest: Callable[..., str], tmp_path: Path) -> None:
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    job_id = "c" * 200
    depth = path_max // 201 + 1
    pattern = "{id}/" * depth + "{id}.mp4"
    path = manifest([job_id], f'output: {{pattern: "{pattern}"}}\n')
    code, out = run("validate", path)
    assert code == 2
    (line,) = errors(out)
    assert line.startswith(f"error: {path}:4: job '{job_id}': field 'id': the full path of")
    assert f"this system allows at most {path_max - 1} bytes per path" in line
    assert "a shorter --out / output.dir" in line


def test_a_deep_output_folder_counts_towards_the_path(
    manifest: Callable[..., str], tmp_path: Path
) -> None:
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    deep = tmp_path.joinpath(*["d" * 250] * (path_max // 251 + 1))  # never created
    code, out = run("validate", manifest(["beach"]), "--out", str(deep))
    assert code == 2
    assert "field 'output.dir'" in out
    assert "bytes per path" in out
    assert not (tmp_path / ("d" * 250)).exists()


def test_the_path_limit_counts_the_temporary_name_and_the_nul(tmp_path: Path) -> None:
    root = tmp_path / "out"
    relative = "b/" + "v" * 100 + ".mp4"
    longest = len(f"{root}/b/.{'v' * 100}.json.00000000.part".encode())
    assert check_outputs(root, [Row("v", relative, "m.yaml")], path_max=longest + 1).ok
    refused = check_outputs(root, [Row("v", relative, "m.yaml", 3)], path_max=longest)
    (problem,) = refused.problems
    assert "temporary sidecar name" in problem.message
    assert f"{longest} bytes long" in problem.message
    assert (problem.file, problem.line, problem.job) == ("m.yaml", 3, "v")


def test_a_long_path_from_the_pattern_is_blamed_on_the_pattern_not_the_id(
    tmp_path: Path,
) -> None:
    # A short id in a path made long by the pattern's fixed folders: a shorter id would not
    # help, so the pattern is named; an id repeated until the path is long is the id's fault.
    folders = "/".join(["p" * 200] * 21)
    found = check_outputs(tmp_path, [Row("beach", f"{folders}/beach.mp4", "m.yaml", 2)])
    (problem,) = found.problems
    assert "bytes per path" in problem.message
    assert problem.field == "output.pattern"
    long_id = "c" * 200
    by_id = "/".join([long_id] * 21) + f"/{long_id}.mp4"
    (problem,) = check_outputs(tmp_path, [Row(long_id, by_id, "m.yaml", 2)]).problems
    assert problem.field == "id"


def test_a_long_folder_name_from_the_pattern_is_blamed_on_the_pattern(tmp_path: Path) -> None:
    folder = "f" * 300
    found = check_outputs(tmp_path, [Row("beach", f"{folder}/beach.mp4", "m.yaml", 2)])
    (problem,) = found.problems
    assert problem.field == "output.pattern"
    assert "the folder name" in problem.message
    assert "300 bytes long" in problem.message


def test_one_problem_per_job_and_the_list_is_capped(tmp_path: Path) -> None:
    rows = [
        Row(f"{n:03d}" + "x" * 300, f"{n:03d}{'x' * 300}/{n:03d}{'x' * 300}.mp4", "m.yaml", n)
        for n in range(MAX_LISTED + 5)
    ]
    found = check_outputs(tmp_path, rows, source="m.yaml")
    assert len(found.problems) == MAX_LISTED + 1
    assert [p.job for p in found.problems[:MAX_LISTED]] == [r.id for r in rows[:MAX_LISTED]]
    summary = found.problems[-1]
    assert summary.message == "... and 5 more jobs with names too long for this file system"
    assert summary.file == "m.yaml"


@pytest.mark.slow
def test_a_100000_job_batch_prints_a_bounded_list(tmp_path: Path) -> None:
    rows = [Row(f"j{n}", f"b/j{n}{'x' * 260}.mp4", "m.yaml", n) for n in range(100_000)]
    found = check_outputs(tmp_path, rows, source="m.yaml")
    assert len(found.problems) == MAX_LISTED + 1
    assert "99,980 more jobs" in found.problems[-1].message


# --- the output folder ---------------------------------------------------------------------


def test_a_read_only_output_folder_is_refused(manifest: Callable[..., str], tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    path = manifest(["beach"])
    with tmpfs(folder, "ro,size=1m") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("running as root without a tmpfs mount: chmod cannot deny root")
            folder.chmod(0o555)
        try:
            code, out = run("validate", path, "--out", str(folder))
            assert code == 2
            (line,) = errors(out)
            assert line == (
                f"error: {path}: field 'output.dir': the output folder {folder} is not "
                "writable (choose another folder with --out or output.dir)"
            )
            # A folder still to be made inside it cannot be created either.
            code, out = run("plan", path, "--out", str(folder / "videos"))
            assert code == 2
            assert f"cannot be created: {folder} is not writable" in out
        finally:
            if not mounted:
                folder.chmod(0o755)


def test_a_folder_that_os_access_calls_writable_is_probed_with_a_real_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ro"
    with tmpfs(folder, "ro,size=1m") as mounted:
        if not mounted:
            pytest.skip("needs a read-only mount (root with mount permission)")
        monkeypatch.setattr(os, "access", lambda *_args: True)
        (problem,) = check_outputs(folder, [], source="m.yaml").problems
        assert "is not writable: Read-only file system" in problem.message


def test_the_write_probe_leaves_nothing_behind(
    manifest: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    assert run("validate", manifest(["beach"]), "--out", str(folder))[0] == 0
    assert list(folder.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_refused(
    manifest: Callable[..., str], tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("not a folder\n", encoding="utf-8")
    code, out = run("validate", manifest(["beach"]), "--out", str(tmp_path / "taken"))
    assert code == 2
    assert "is not a folder" in out
    code, out = run("validate", manifest(["beach"]), "--out", str(tmp_path / "taken" / "sub"))
    assert code == 2
    assert f"cannot be created: {tmp_path / 'taken'} is not a folder" in out


# --- free space ----------------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def test_a_batch_larger_than_the_free_space_is_warned_about(
    manifest: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "small"
    path = manifest(["a", "b"], "defaults: {resolution: 1080p, duration: 10}\n")
    with tmpfs(folder, "size=1m") as mounted:
        if not mounted:
            monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage(2**20, 0, 2**20))
        code, out = run("validate", path, "--out", str(folder))
        assert code == 0, out
        (warning,) = [line for line in out.splitlines() if line.startswith("warning: ")]
        # two jobs of 10 s at 8 Mbit/s: 10 MB each, plus their sidecars
        assert f"the output folder {folder} has 1.0 MB free, less than the 20.0 MB" in warning
        assert "field 'output.dir'" in warning
        code, out = run("validate", path, "--out", str(folder), "--json")
        assert code == 0
        (item,) = json.loads(out)["warnings"]
        assert item["field"] == "output.dir"
        assert "20.0 MB" in item["message"]
        code, out = run("plan", path, "--out", str(folder), "--json")
        assert code == 0
        assert "1.0 MB free" in json.loads(out)["warnings"][0]["message"]
        code, out = run("plan", path, "--out", str(folder))
        assert code == 0
        assert out.startswith("warning: ")
        assert "1.0 MB free" in out


def test_no_warning_when_the_batch_fits(manifest: Callable[..., str], tmp_path: Path) -> None:
    code, out = run("validate", manifest(["a"]), "--out", str(tmp_path / "videos"))
    assert code == 0
    assert "warning:" not in out


def test_the_estimate_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage(10, 0, 10))
    found = check_outputs(tmp_path, [Row("a", "a.mp4", "m.yaml")], estimated_bytes=11)
    assert found.ok
    assert len(found.warnings) == 1
    assert check_outputs(tmp_path, [], estimated_bytes=10).warnings == []


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0.0 MB"), (999_999_999, "1,000.0 MB"), (10**9, "1.0 GB"), (2_500_000_000, "2.5 GB")],
)
def test_sizes_are_shown_in_mb_or_gb(size: int, shown: str) -> None:
    assert format_size(size) == shown


# --- ownership and free names --------------------------------------------------------------

OURS = {"store": {"id": "store-1"}, "job": {"key": "key-1"}, "request_id": "r-9"}


@pytest.mark.parametrize(
    ("sidecar", "store_id", "request_ids", "owned"),
    [
        pytest.param(None, "store-1", {"r-1"}, False, id="no-sidecar"),
        pytest.param(b"{not json", "store-1", {"r-1"}, False, id="unreadable"),
        pytest.param(b"\xff\xfe", "store-1", {"r-1"}, False, id="not-utf8"),
        pytest.param([1, 2], "store-1", {"r-1"}, False, id="not-an-object"),
        pytest.param(OURS, "store-1", set(), True, id="same-store-same-job"),
        pytest.param(OURS, "store-2", {"r-9"}, False, id="other-store"),
        pytest.param({**OURS, "job": {"key": "key-2"}}, "store-1", set(), False, id="other-job"),
        pytest.param({**OURS, "job": None}, "store-1", set(), False, id="job-not-an-object"),
        pytest.param({**OURS, "store": "x"}, "store-1", set(), False, id="store-not-an-object"),
        pytest.param(OURS, None, {"r-9"}, False, id="unknown-store-proves-nothing"),
        pytest.param({"request_id": "r-1"}, "store-1", {"r-1", "r-2"}, True, id="old-ours"),
        pytest.param({"request_id": "r-3"}, "store-1", {"r-1"}, False, id="old-other"),
        pytest.param({"job": {"key": "key-1"}}, "store-1", {"r-1"}, False, id="old-no-request"),
        pytest.param({"request_id": None}, None, set(), False, id="old-null-request"),
    ],
)
def test_owned_by(
    tmp_path: Path, sidecar: object, store_id: str | None, request_ids: set[str], owned: bool
) -> None:
    video = tmp_path / "beach.mp4"
    video.write_bytes(b"video")
    if isinstance(sidecar, bytes):
        (tmp_path / "beach.json").write_bytes(sidecar)
    elif sidecar is not None:
        (tmp_path / "beach.json").write_text(json.dumps(sidecar), encoding="utf-8")
    assert owned_by(video, store_id=store_id, job_key="key-1", request_ids=request_ids) is owned


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        pytest.param([], "beach.mp4", id="free"),
        pytest.param(["beach.mp4"], "beach-1.mp4", id="video-taken"),
        pytest.param(["beach.json"], "beach-1.mp4", id="sidecar-left-alone"),
        pytest.param(["beach.mp4", "beach-1.json"], "beach-2.mp4", id="sidecar-of-1-taken"),
        pytest.param(["beach.mp4", "beach-1.mp4", "beach-2.mp4"], "beach-3.mp4", id="three"),
        pytest.param(["beach.mp4", "beach-2.mp4"], "beach-1.mp4", id="first-gap"),
    ],
)
def test_free_name(tmp_path: Path, existing: list[str], expected: str) -> None:
    for name in existing:
        (tmp_path / name).write_bytes(b"")
    assert free_name(tmp_path / "beach.mp4") == tmp_path / expected


def test_a_dangling_symlink_is_not_a_free_name(tmp_path: Path) -> None:
    (tmp_path / "beach.mp4").symlink_to(tmp_path / "nowhere.mp4")
    assert free_name(tmp_path / "beach.mp4") == tmp_path / "beach-1.mp4"


def test_free_name_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ownership, "MAX_FREE_NAME_TRIES", 3)
    for name in ("beach.mp4", "beach-1.mp4", "beach-2.json", "beach-3.mp4"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(NoFreeName, match=re.escape("beach-1.mp4 to beach-3.mp4 are all taken")):
        free_name(tmp_path / "beach.mp4")
    assert ownership.MAX_FREE_NAME_TRIES == 3
    monkeypatch.undo()
    assert ownership.MAX_FREE_NAME_TRIES == 10_000
    assert free_name(tmp_path / "beach.mp4") == tmp_path / "beach-4.mp4"
