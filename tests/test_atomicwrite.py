"""The one atomic-write helper every writer uses (report, posters, export, sidecar, download)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from orchestrator.outputs import atomicwrite
from orchestrator.outputs.atomicwrite import (
    atomic_file,
    atomic_path,
    create_exclusively,
    open_temporary,
    temporary_path,
    write_atomically,
)
from orchestrator.outputs.paths import part_target

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_the_new_content_is_renamed_over_the_target(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    seen: list[str] = []
    with atomic_file(target) as handle:
        handle.write(b"new")
        seen = names(tmp_path)
        assert target.read_text() == "old"  # readers see the old file until the rename
    assert target.read_text() == "new"
    assert names(tmp_path) == ["report.html"]
    (temporary,) = (name for name in seen if name != "report.html")
    assert part_target(temporary) == "report.html"  # named the way crash recovery expects


def test_text_is_written_as_utf8(tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    write_atomically(target, "é\r\n")
    assert target.read_bytes() == "é\r\n".encode()


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "export.jsonl"
    target.write_text("old")
    with pytest.raises(type(error)), atomic_file(target) as handle:
        handle.write(b"half")
        raise error
    assert target.read_text() == "old"
    assert names(tmp_path) == ["export.jsonl"]


def test_a_failed_rename_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(_source: object, _target: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(atomicwrite.os, "replace", refuse)
    target = tmp_path / "a.json"
    with pytest.raises(PermissionError):
        write_atomically(target, "{}")
    assert names(tmp_path) == []


def test_two_writers_of_one_target_never_share_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metadata.jsonl"
    both_open = threading.Barrier(2)
    temporaries: list[str] = []

    def writer(text: str) -> None:
        with atomic_file(target) as handle:
            temporaries.append(handle.name)
            both_open.wait()  # each writes only once the other's temporary exists too
            handle.write(text.encode() * 10_000)

    threads = [threading.Thread(target=writer, args=(text,)) for text in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(temporaries)) == 2
    assert target.read_text() in ("a" * 10_000, "b" * 10_000)  # one whole file, never mixed
    assert names(tmp_path) == ["metadata.jsonl"]


def test_a_taken_temporary_name_is_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tags: Iterator[str] = iter(["0badf00d", "0badf00d", "cafe0001"])
    monkeypatch.setattr(atomicwrite.secrets, "token_hex", lambda _n: next(tags))
    target = tmp_path / "a.mp4"
    first, handle = open_temporary(target)
    handle.close()
    second, handle = open_temporary(target)  # the same random tag comes up: another one
    handle.close()
    assert (first.name, second.name) == (".a.mp4.0badf00d.part", ".a.mp4.cafe0001.part")


def test_too_many_taken_names_fail_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomicwrite.secrets, "token_hex", lambda _n: "0badf00d")
    target = tmp_path / "a.mp4"
    temporary_path(target).write_bytes(b"another writer's")
    with pytest.raises(FileExistsError):
        write_atomically(target, "mine")
    assert names(tmp_path) == [".a.mp4.0badf00d.part"]  # left alone: it is not ours


def test_a_path_the_caller_fills_is_renamed_or_removed(tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(b"video")
    target = tmp_path / "linked.mp4"
    with atomic_path(target) as temp:
        temp.hardlink_to(source)
    assert target.read_bytes() == b"video"
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "other.mp4") as temp:
        temp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert names(tmp_path) == ["linked.mp4", "video.mp4"]


def test_an_exclusive_create_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    assert create_exclusively(target, b"first")
    assert not create_exclusively(target, b"second")
    assert target.read_bytes() == b"first"
    assert names(tmp_path) == ["a.json"]
