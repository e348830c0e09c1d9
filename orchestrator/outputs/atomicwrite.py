"""Writing a file so that readers see the old one or the whole new one, never a part.

Every writer of the program (the report and its posters, the export in each format, the
sidecar, the download) goes through here:

1. the bytes go to a temporary file in the target's own folder (a rename is atomic only
   within one file system), under a name no other writer uses:
   :func:`~orchestrator.outputs.paths.part_name` with a random tag, created exclusively, so
   two writers of one target never share a temporary;
2. the temporary is fsynced, then renamed over the target, then (where it matters) the
   folder is fsynced so the rename itself survives a power cut;
3. on any error, ``KeyboardInterrupt`` included, the temporary is removed and the target
   is left as it was.

A temporary left behind by a killed process is named ``.<target>.<tag>.part``: crash
recovery finds it by its target (:class:`~orchestrator.engine.download.Leftovers`).

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     target = Path(tmp) / "notes.txt"
...     write_atomically(target, "first\\n")
...     with atomic_file(target) as handle:
...         _ = handle.write(b"second\\n")
...     target.read_text(), sorted(p.name for p in Path(tmp).iterdir())
('second\\n', ['notes.txt'])
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING, BinaryIO

from orchestrator.outputs.paths import PART_TAG_LENGTH, part_name

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Fresh names tried when a random one is already taken (by a writer that is still running,
#: or a temporary a killed process left): with 32 random bits, one retry is already rare.
NAME_TRIES = 8


def temporary_path(target: Path) -> Path:
    """A new temporary name beside ``target`` (``.<name>.<8 random hex>.part``).

    The name is only likely to be free; :func:`open_temporary` creates it exclusively and
    tries another when it is not.
    """
    return target.with_name(part_name(target.name, secrets.token_hex(PART_TAG_LENGTH // 2)))


def open_temporary(target: Path) -> tuple[Path, BinaryIO]:
    """Create a new temporary beside ``target`` exclusively (another name when a random one
    is taken) and open it for writing; the caller closes it, then puts it in place
    (:func:`publish`) or removes it (:func:`discard`). For writers that cannot use
    :func:`atomic_file`: a download streams and is verified before it is put in place."""
    for tried in range(1, NAME_TRIES + 1):
        temp = temporary_path(target)
        try:
            return temp, open(temp, "xb")
        except FileExistsError:
            if tried == NAME_TRIES:
                raise
    raise AssertionError("unreachable: the last try returns or raises")


@contextlib.contextmanager
def atomic_file(target: Path, *, sync_folder: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write ``target``'s new content to; on a clean exit it is fsynced
    and renamed over ``target`` (the folder fsynced too, unless ``sync_folder`` is False);
    on any exception it is removed and ``target`` keeps its old content.

    The folder must exist. The file is created with the usual permissions (the umask's),
    unlike :func:`tempfile.mkstemp`'s owner-only files.
    """
    temp, handle = open_temporary(target)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        publish(temp, target, sync_folder=sync_folder)
    except BaseException:
        discard(temp)
        raise


def write_atomically(target: Path, data: bytes | str, *, sync_folder: bool = True) -> None:
    """Replace ``target`` with ``data`` (text is written as UTF-8) through :func:`atomic_file`."""
    with atomic_file(target, sync_folder=sync_folder) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def atomic_path(target: Path, *, sync_folder: bool = True) -> Iterator[Path]:
    """A temporary name for the caller to create (a hard link, a copy); on a clean exit the
    file there is fsynced and renamed over ``target``, on any exception it is removed.

    The name is fresh but not reserved: create it with a call that refuses an existing name
    (:func:`os.link` does) when two writers could race for one target.
    """
    temp = temporary_path(target)
    try:
        yield temp
        _fsync_file(temp)
        publish(temp, target, sync_folder=sync_folder)
    except BaseException:
        discard(temp)
        raise


def create_exclusively(target: Path, data: bytes) -> bool:
    """Write ``data`` at ``target`` only if no file is there: False (nothing written) when
    the name is taken. Readers never see a partial file.

    The whole file is written to a temporary first and hard-linked to ``target``, which is
    atomic and refuses an existing name; on a file system without hard links, ``target``
    is created exclusively and written in place instead.
    """
    temp, handle = open_temporary(target)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            return _create_in_place(target, data)
        return True
    finally:
        discard(temp)


def publish(temp: Path, target: Path, *, sync_folder: bool = True) -> None:
    """Rename ``temp`` over ``target``; with ``sync_folder``, fsync the folder so the
    rename is durable too."""
    os.replace(temp, target)
    if sync_folder:
        fsync_folder(target.parent)


def fsync_folder(folder: Path) -> None:
    """Make the names in ``folder`` durable (renames, links, new files)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(temp: Path) -> None:
    """Remove a temporary, if it is still there (a vanished folder leaves nothing to do)."""
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _create_in_place(target: Path, data: bytes) -> bool:
    try:
        handle = open(target, "xb")  # noqa: SIM115 - closed below
    except FileExistsError:
        return False
    with handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


__all__ = [
    "NAME_TRIES",
    "atomic_file",
    "atomic_path",
    "create_exclusively",
    "discard",
    "fsync_folder",
    "open_temporary",
    "publish",
    "temporary_path",
    "write_atomically",
]
