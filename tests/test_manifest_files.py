"""Files a manifest names are regular files read with a cap: images at validate time and at
submit time, never blocking on a named pipe, never reading without end."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from model_ids import DREAMINA, LITE

from orchestrator.inputfiles import (
    FileMissing,
    FileRefused,
    FileTooBig,
    NotRegular,
    check_regular,
    read_bounded,
    read_head,
)
from orchestrator.manifest import Expansion
from orchestrator.manifest import inputs as inputs_module
from orchestrator.media import ImageNotFound, ImageUnreadable, TooLarge, encode_image
from orchestrator.media.encode import MAX_IMAGE_FILE_BYTES
from orchestrator.problems import Problem

Load = Callable[..., Expansion]
ProblemsOf = Callable[..., list[Problem]]
MakeImage = Callable[..., Path]


def one_job(model: str, image: str = "beach.jpg", extra: str = "") -> str:
    return (
        f"batch: demo\nmodel: {model}\njobs:\n  - id: a\n    prompt: hi\n"
        f"    image: {image}\n{extra}"
    )


def special(kind: str, path: Path) -> Path:
    """A FIFO, a directory, a device (a link to /dev/zero) or a listening socket at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    return path


KINDS = {
    "fifo": "a named pipe (FIFO)",
    "directory": "a directory",
    "device": "a character device",
    "socket": "a socket",
}


# -- inputfiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_only_regular_files_are_read(tmp_path: Path, kind: str) -> None:
    path = special(kind, tmp_path / "thing")
    with pytest.raises(NotRegular) as caught:
        read_bounded(path, 100)
    assert caught.value.reason == f"is {KINDS[kind]}, not a regular file"
    with pytest.raises(NotRegular):
        check_regular(path)


def test_a_regular_file_within_the_cap_is_read_and_one_over_it_is_not(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    with pytest.raises(FileTooBig) as caught:
        read_bounded(path, 99)
    assert (caught.value.size, caught.value.limit) == (100, 99)
    assert caught.value.reason == "is 100 bytes, more than the 99 bytes allowed"
    assert read_head(path, 10) == b"x" * 11  # the head says where the limit is crossed
    with pytest.raises(FileMissing):
        read_bounded(tmp_path / "gone", 10)


def test_a_path_swapped_for_a_fifo_after_the_stat_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stat sees a regular file; by the open, the path is a FIFO. The open does not
    # block (O_NONBLOCK) and fstat on what was opened refuses it.
    regular = tmp_path / "regular"
    regular.write_bytes(b"x")
    fifo = special("fifo", tmp_path / "swapped")
    real_stat = os.stat
    # (os.stat is os.stat everywhere; the stand-in changes nothing for any other path.)
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **k: real_stat(regular if p == str(fifo) else p, *a, **k)
    )
    with pytest.raises(NotRegular, match="named pipe"):
        read_bounded(fifo, 100)


def test_a_pipe_is_read_when_allowed_up_to_the_cap(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"y" * 50)
    os.close(write_end)
    try:
        with pytest.raises(FileTooBig):
            read_bounded(f"/dev/fd/{read_end}", 10, regular_only=False)
    finally:
        os.close(read_end)
    with pytest.raises(NotRegular):
        read_bounded(tmp_path, 10, regular_only=False)  # a directory never is


def test_os_errors_become_reasons(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileRefused) as caught:
        read_bounded(tmp_path / "file" / "below", 10)
    assert caught.value.reason == "could not read the file (Not a directory)"


# -- images at validate time -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_image_that_is_not_a_regular_file_is_refused_without_waiting(
    problems_of: ProblemsOf, manifest_path: Path, tmp_path: Path, kind: str
) -> None:
    special(kind, tmp_path / "beach.jpg")
    [problem] = problems_of(one_job(LITE))
    assert (problem.file, problem.line, problem.job, problem.field) == (
        str(manifest_path),
        6,
        "a",
        "image",
    )
    assert problem.message == f"image beach.jpg: is {KINDS[kind]}, not a regular file"
    assert problem.hint == "an image path must name a regular file"


def test_an_image_over_the_global_cap_is_refused_without_being_read(
    problems_of: ProblemsOf,
    make_image: MakeImage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_image("beach.jpg", (1280, 720))
    size = os.path.getsize(make_image("beach.jpg", (1280, 720)))
    monkeypatch.setattr(inputs_module, "MAX_IMAGE_FILE_BYTES", size - 1)
    monkeypatch.setattr(inputs_module, "read_bounded", _must_not_read)
    # image_fit: the rule's limit does not apply (the image may be shrunk), the cap does.
    [problem] = problems_of(one_job(LITE, extra="    image_fit: resize\n"))
    assert problem.message == (
        f"image beach.jpg: is {size:,} bytes, more than the {size - 1:,} bytes allowed"
    )
    assert problem.hint == "make the file smaller"


def _must_not_read(*args: object, **kwargs: object) -> bytes:
    raise AssertionError("the file was read")


def test_an_image_over_the_rule_is_not_read_unless_image_fit_may_shrink_it(
    problems_of: ProblemsOf, load: Load, make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = make_image("big.png", (1300, 1300), compress_level=0)  # over Dreamina's 4.7 MB
    real_read = read_bounded
    reads: list[int] = []

    def counting(path: str | os.PathLike[str], limit: int) -> bytes:
        reads.append(limit)
        return real_read(path, limit)

    monkeypatch.setattr(inputs_module, "read_bounded", counting)
    [problem] = problems_of(one_job(DREAMINA, "big.png"))
    assert problem.message.startswith("image big.png (5.07 MB) breaks the model's rules")
    assert reads == []
    [job] = load(one_job(DREAMINA, "big.png", "    image_fit: resize\n")).jobs
    assert job.images["image_urls"].size_bytes == big.stat().st_size
    assert reads == [MAX_IMAGE_FILE_BYTES]


def test_one_file_used_by_two_models_is_read_once(
    load: Load, make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image("beach.jpg", (1280, 720))
    real_read = read_bounded
    reads: list[object] = []

    def counting(path: str | os.PathLike[str], limit: int) -> bytes:
        reads.append(path)
        return real_read(path, limit)

    monkeypatch.setattr(inputs_module, "read_bounded", counting)
    text = one_job(
        LITE, extra=f"  - id: b\n    prompt: hi\n    image: beach.jpg\n    model: {DREAMINA}\n"
    )
    assert len(load(text).jobs) == 2
    assert len(reads) == 1


def test_an_image_edited_between_two_reads_is_probed_again(
    make_image: MakeImage, tmp_path: Path
) -> None:
    path = make_image("beach.jpg", (1280, 720))
    resolver = inputs_module.ImageResolver(base_dir=tmp_path)
    first = resolver.resolve("image", "beach.jpg", None, None)
    make_image("beach.jpg", (640, 360))
    os.utime(path, ns=(1, 1))  # a new mtime even on a coarse clock
    second = inputs_module.ImageResolver(base_dir=tmp_path, _probed=resolver._probed).resolve(
        "image", "beach.jpg", None, None
    )
    assert not isinstance(first, inputs_module.FieldError)
    assert not isinstance(second, inputs_module.FieldError)
    assert (first.width, second.width) == (1280, 640)


# -- images at submit time ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_encode_refuses_what_the_path_has_become_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    path = special(kind, tmp_path / "beach.jpg")
    with pytest.raises(ImageUnreadable) as caught:
        encode_image(path, expected_sha256="0" * 64)
    assert caught.value.reason == f"is {KINDS[kind]}, not a regular file"


def test_encode_refuses_a_missing_or_huge_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImageNotFound):
        encode_image(tmp_path / "gone.jpg", expected_sha256="0" * 64)
    sparse = tmp_path / "huge.jpg"
    with sparse.open("wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # 100 MiB without writing them
    assert stat.S_ISREG(sparse.stat().st_mode)
    with pytest.raises(TooLarge) as caught:
        encode_image(sparse, expected_sha256="0" * 64)
    assert caught.value.reason == "is 100 MiB, more than the 64 MiB allowed"
