"""A corpus of broken manifests and images: each case shows the exact errors and submits nothing.

Every folder under ``tests/corpus/`` is one case: ``manifest.yaml`` (plus any CSV/JSONL
it reads), ``images.yaml`` describing the images to generate (no binaries are committed)
and ``expected.txt``, the ``error:`` lines ``orchestrator validate`` prints, with the
manifest's path written as ``{manifest}`` and the case's folder (for CSV/JSONL rows) as
``{dir}``.

``images.yaml`` maps a file name to ``[width, height]`` (a solid-colour image in the format
the suffix names), ``noise WxH`` (an incompressible PNG) or ``text`` (not an image at all).
"""

from __future__ import annotations

import io
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from PIL import Image

from orchestrator.cli import main

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


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
    folder = tmp_path / case
    shutil.copytree(CORPUS / case, folder)
    make_images(folder)
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
