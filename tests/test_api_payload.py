"""Stored payloads become request bodies with data URIs only at submit time."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import pytest
from model_ids import DREAMINA
from PIL import Image

from orchestrator.api import build_request_payload
from orchestrator.catalog import builtin_catalog
from orchestrator.manifest import load_manifest
from orchestrator.media import ImageChanged

if TYPE_CHECKING:
    from pathlib import Path


def decode(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def manifest(tmp_path: Path, image_line: str, extra: str = "") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        f"batch: b\nmodel: {DREAMINA}\njobs:\n  - id: a\n    prompt: hi\n"
        f"    image: {image_line}\n{extra}",
        encoding="utf-8",
    )
    return path


def test_stored_reference_becomes_a_data_uri(tmp_path: Path) -> None:
    Image.new("RGB", (640, 480), (1, 2, 3)).save(tmp_path / "a.png")
    job = load_manifest(manifest(tmp_path, "a.png")).jobs[0]
    stored = job.stored_payload()
    assert stored["image_urls"][0]["$image"]["sha256"] == job.images["image_urls"].sha256
    body = build_request_payload(stored, builtin_catalog().require(DREAMINA))
    assert body["prompt"] == "hi"
    assert len(body["image_urls"]) == 1
    assert decode(body["image_urls"][0]).size == (640, 480)


def test_fit_mode_is_applied_at_submit_time(tmp_path: Path) -> None:
    Image.new("RGB", (200, 200), (9, 9, 9)).save(tmp_path / "small.png")
    job = load_manifest(manifest(tmp_path, "small.png", "    image_fit: resize\n")).jobs[0]
    body = build_request_payload(job.stored_payload(), builtin_catalog().require(DREAMINA))
    width, height = decode(body["image_urls"][0]).size
    assert width > 320
    assert height > 320


def test_image_changed_since_enqueue_is_an_error(tmp_path: Path) -> None:
    Image.new("RGB", (640, 480), (1, 2, 3)).save(tmp_path / "a.png")
    job = load_manifest(manifest(tmp_path, "a.png")).jobs[0]
    Image.new("RGB", (640, 480), (200, 2, 3)).save(tmp_path / "a.png")
    with pytest.raises(ImageChanged, match="changed since it was enqueued"):
        build_request_payload(job.stored_payload(), builtin_catalog().require(DREAMINA))
