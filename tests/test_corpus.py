"""A corpus of broken manifests and images: each case shows the exact errors and submits nothing.

Every folder under ``tests/corpus/`` is one case: ``manifest.yaml`` (plus any CSV/JSONL
it reads), ``images.yaml`` describing the images to generate (no binaries are committed)
and ``expected.txt``, the ``error:`` lines ``orchestrator validate`` prints, with the
manifest's path written as ``{manifest}`` and the case's folder (for CSV/JSONL rows) as
``{dir}``.

``images.yaml`` maps a file name to ``[width, height]`` (a solid-colour image in the format
the suffix names), ``noise WxH`` (an incompressible PNG) or ``text`` (not an image at all).

``setup.yaml`` makes what cannot be committed, at run time, mapping a name to ``fifo`` (a
named pipe), ``directory``, ``link TARGET`` (a symbolic link, e.g. to ``/dev/zero``) or
``{append: [[TEXT, N], ...]}`` (appends TEXT N times, in turn, to the file: a 50,000-level
nesting or a 9 MB manifest without committing either).

Every case is also run by ``tests/corpus_probe.py``, each in its own process: it must exit 2,
print no traceback and peak under :data:`MAX_RSS_MIB` of memory (a YAML alias bomb used to
reach a gigabyte), and none may hang.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from orchestrator.cli import main

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
MAX_RSS_MIB = 300


def make_images(folder: Path) -> None:
    """Write the images a case's ``images.yaml`` describes into ``folder``."""
    spec_file = folder / "images.yaml"
    if not spec_file.exists():
        return
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    for name, recipe in spec.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if recipe == "text":
            path.write_text("this is not an image\n", encoding="utf-8")
        elif isinstance(recipe, str) and recipe.startswith("noise "):
            width, height = (int(n) for n in recipe.split()[1].split("x"))
            noise = random.Random(name).randbytes(width * height * 3)
            buffer = io.BytesIO()
            Image.frombytes("RGB", (width, height), noise).save(buffer, "PNG", compress_level=0)
            path.write_bytes(buffer.getvalue())
        else:
            width, height = recipe
            Image.new("RGB", (width, height), (200, 120, 40)).save(path, FORMATS[path.suffix])


def make_files(folder: Path) -> None:
    """Make what a case's ``setup.yaml`` describes in ``folder`` (see the module docstring)."""
    spec_file = folder / "setup.yaml"
    if not spec_file.exists():
        return
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    for name, recipe in spec.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if recipe == "fifo":
            os.mkfifo(path)
        elif recipe == "directory":
            path.mkdir()
        elif isinstance(recipe, str) and recipe.startswith("link "):
            path.symlink_to(recipe.split(" ", 1)[1])
        elif isinstance(recipe, dict) and "append" in recipe:
            with path.open("a", encoding="utf-8", newline="") as fh:
                for text, times in recipe["append"]:
                    fh.write(text * times)
        else:
            raise ValueError(f"{spec_file}: unknown recipe {recipe!r} for {name}")


def prepare(case: str, root: Path) -> Path:
    """A copy of one case under ``root``, with its images and files made."""
    folder = root / case
    shutil.copytree(CORPUS / case, folder)
    make_images(folder)
    make_files(folder)
    return folder


def stored_jobs(db: Path) -> int:
    """How many jobs the store holds (0 when it was never created)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        if "jobs" not in tables:
            return 0
        return int(connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES)
def test_a_broken_input_is_refused_with_the_exact_errors(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = prepare(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    manifest = str(folder / "manifest.yaml")
    db = tmp_path / "store.db"
    expected = (
        (folder / "expected.txt")
        .read_text(encoding="utf-8")
        .replace("{manifest}", manifest)
        .replace("{dir}", str(folder))
    )

    out = io.StringIO()
    assert main(["validate", manifest, "--db", str(db)], out=out) == 2
    errors = [line for line in out.getvalue().splitlines() if line.startswith("error: ")]
    assert errors == expected.splitlines()
    assert errors, "a case must expect at least one error"

    out = io.StringIO()
    assert main(["run", manifest, "--db", str(db), "--simulate", "--quiet"], out=out) == 2
    assert [line for line in out.getvalue().splitlines() if line.startswith("error: ")] == errors
    assert stored_jobs(db) == 0
    assert not (folder / "outputs").exists()
    assert not (tmp_path / "pwned").exists()  # what the python-tag cases would have made


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case validated in its own process: exit status, peak RSS and output, by case."""
    root = tmp_path_factory.mktemp("measured")
    jobs = []
    for case in CASES:
        folder = prepare(case, root)
        jobs.append([case, str(folder), str(folder / "manifest.yaml"), str(root / f"{case}.db")])
    probe = Path(__file__).with_name("corpus_probe.py")
    done = subprocess.run(
        [sys.executable, str(probe)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    return {r["case"]: r for r in results}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.slow
def test_a_broken_input_is_refused_in_bounded_memory_without_a_traceback(
    case: str, measured: dict[str, dict[str, Any]]
) -> None:
    result = measured[case]
    assert "Traceback" not in result["output"], result["output"]
    assert result["exit"] == 2, result["output"]
    assert result["rss_kib"] < MAX_RSS_MIB * 1024, f"{result['rss_kib'] / 1024:.0f} MiB"
    assert "error: " in result["output"]
