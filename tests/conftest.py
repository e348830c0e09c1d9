"""Shared helpers: images made with Pillow and manifests written into ``tmp_path``."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pg_server import PostgresUnavailable, ThrowawayPostgres
from PIL import Image

from orchestrator.manifest import Expansion, load_manifest
from orchestrator.problems import InputError, Problem

ImageFactory = Callable[..., Path]
#: Encoded images by recipe: each is encoded once per test session, then only written.
_ENCODED: dict[tuple[object, ...], bytes] = {}
ManifestWriter = Callable[..., Path]


@pytest.fixture
def make_image(tmp_path: Path) -> ImageFactory:
    """``make_image("in/beach.jpg", (1280, 720))``: a real image under ``tmp_path``.

    The format follows the suffix; ``color`` makes images of one size differ in content;
    ``compress_level=0`` (PNG) gives a big file quickly.
    """

    def make(
        name: str | Path,
        size: tuple[int, int] = (1280, 720),
        *,
        color: tuple[int, int, int] = (200, 120, 40),
        **options: object,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix]
        recipe = (fmt, size, color, tuple(sorted(options.items())))
        if recipe not in _ENCODED:
            buffer = io.BytesIO()
            Image.new("RGB", size, color).save(buffer, fmt, **options)
            _ENCODED[recipe] = buffer.getvalue()
        path.write_bytes(_ENCODED[recipe])
        return path

    return make


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    """Where :func:`write_manifest` writes by default."""
    return tmp_path / "manifest.yaml"


@pytest.fixture
def write_manifest(manifest_path: Path) -> ManifestWriter:
    """``write_manifest(text, path=None)``: dedented YAML written to a file, its path returned."""

    def write(text: str, path: Path | None = None) -> Path:
        target = path or manifest_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return target

    return write


@pytest.fixture
def load(write_manifest: ManifestWriter) -> Callable[..., Expansion]:
    """``load(text)``: write a manifest and expand it (it must be valid)."""

    def run(text: str, path: Path | None = None, **kwargs: object) -> Expansion:
        return load_manifest(write_manifest(text, path), **kwargs)  # type: ignore[arg-type]

    return run


@pytest.fixture
def problems_of(write_manifest: ManifestWriter) -> Callable[..., list[Problem]]:
    """``problems_of(text)``: write a manifest that must be refused; every problem found."""

    def run(text: str, path: Path | None = None, **kwargs: object) -> list[Problem]:
        target = write_manifest(text, path)
        with pytest.raises(InputError) as caught:
            load_manifest(target, **kwargs)  # type: ignore[arg-type]
        assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
        return caught.value.problems

    return run


# -- databases: the store contract runs on memory, SQLite and PostgreSQL alike ---------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """A throwaway PostgreSQL server for the session (skipped if none can start, except
    under CI, where a missing server is a failure: the contract must run there)."""
    server = ThrowawayPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: ThrowawayPostgres) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (dropped after the test)."""
    url = postgres.new_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


BACKENDS = ("memory", "sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store location on each backend: in memory, an SQLite file, a PostgreSQL database."""
    if request.param == "memory":
        return ":memory:"
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))
