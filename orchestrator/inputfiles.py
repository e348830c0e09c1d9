"""Reading the files a manifest names without hanging on them or reading them without end.

A manifest may name anything as an image or a ``jobs_from`` file: a named pipe (``open``
blocks until someone writes to it, forever), a device (``/dev/zero`` never ends), a
directory, a socket, or a 50 GB file. :func:`read_bounded` reads only regular files (or,
for a manifest given on the command line, also a pipe), never more than a cap, and says
why in words a user can act on.

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     os.mkfifo(os.path.join(folder, "pipe.jpg"))
...     try:
...         read_bounded(os.path.join(folder, "pipe.jpg"), 100)
...     except FileRefused as exc:
...         print(exc.reason)
is a named pipe (FIFO), not a regular file
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Flags for every open: never wait for a writer (a FIFO), never become a terminal's owner.
_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class FileRefused(Exception):
    """A file that cannot be used; ``reason`` says why (without the file's name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileMissing(FileRefused):
    """Nothing at that path."""


class NotRegular(FileRefused):
    """A directory, a named pipe, a device or a socket where a regular file was wanted."""


class FileTooBig(FileRefused):
    """The file holds more than the cap allows; ``size`` is its size when known."""

    def __init__(self, reason: str, size: int | None, limit: int) -> None:
        super().__init__(reason)
        self.size = size
        self.limit = limit


def kind_of(mode: int) -> str | None:
    """What a file that is not a regular file is, in words (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def format_bytes(size: int) -> str:
    """A byte count for a message, in the binary units the limits are set in.

    >>> format_bytes(64 * 1024 * 1024), format_bytes(9_000_000), format_bytes(812)
    ('64 MiB', '8.58 MiB', '812 bytes')
    """
    mib = 1024 * 1024
    if size >= mib:
        return f"{size // mib:,} MiB" if size % mib == 0 else f"{size / mib:,.2f} MiB"
    return f"{size:,} bytes"


def check_regular(path: str | os.PathLike[str], limit: int | None = None) -> os.stat_result:
    """``os.stat`` of ``path``, refused unless it is a regular file of at most ``limit`` bytes.

    Symbolic links are followed (a link to a regular file is fine). This alone is not a
    safe way to read the file (it may be replaced before it is opened): see
    :func:`read_bounded`.
    """
    name = os.fspath(path)
    with _errors():
        st = os.stat(name)
    _check(st, limit, regular_only=True)
    return st


def read_bounded(path: str | os.PathLike[str], limit: int, *, regular_only: bool = True) -> bytes:
    """The file's bytes: at most ``limit``, from a regular file (or also a pipe).

    The type is checked with ``stat`` before opening (a socket cannot even be opened) and
    again with ``fstat`` on what was opened, since the path may have been replaced in
    between; the open itself never blocks on a FIFO. At most ``limit + 1`` bytes are read,
    so a file that grows while being read, or a pipe without end, is refused too.
    ``regular_only=False`` (a manifest named on the command line, e.g. ``<(generate)``)
    lets pipes and devices through, still capped, and refuses only directories.
    """
    data = read_head(path, limit, regular_only=regular_only, refuse_larger=True)
    if len(data) > limit:
        raise FileTooBig(f"holds more than {format_bytes(limit)}", None, limit)
    return data


def read_head(
    path: str | os.PathLike[str],
    limit: int,
    *,
    regular_only: bool = True,
    refuse_larger: bool = False,
) -> bytes:
    """Like :func:`read_bounded`, but a larger file gives its first ``limit + 1`` bytes
    (for a caller that says where the limit is crossed) unless ``refuse_larger``."""
    name = os.fspath(path)
    size_cap = limit if refuse_larger else None
    with _errors():
        if regular_only:
            _check(os.stat(name), size_cap, regular_only=True)
        fd = os.open(name, _FLAGS | (_NONBLOCK if regular_only else 0))
        try:
            _check(os.fstat(fd), size_cap, regular_only=regular_only)
            chunks: list[bytes] = []
            wanted = limit + 1
            while wanted > 0:
                chunk = os.read(fd, min(wanted, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
        finally:
            os.close(fd)
    return b"".join(chunks)


def file_size(path: str | os.PathLike[str]) -> int | None:
    """The size of a regular file, ``None`` for anything else or on any error."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _check(st: os.stat_result, limit: int | None, *, regular_only: bool) -> None:
    kind = kind_of(st.st_mode)
    if kind == "a directory" or (regular_only and kind is not None):
        raise NotRegular(f"is {kind}, not a regular file")
    if kind is None and limit is not None and st.st_size > limit:
        raise FileTooBig(
            f"is {format_bytes(st.st_size)}, more than the {format_bytes(limit)} allowed",
            st.st_size,
            limit,
        )


@contextmanager
def _errors() -> Iterator[None]:
    """Turn OS errors into :class:`FileRefused` with a reason a user can act on."""
    try:
        yield
    except FileNotFoundError:
        raise FileMissing("file not found") from None
    except IsADirectoryError:
        raise NotRegular("is a directory, not a regular file") from None
    except PermissionError:
        raise FileRefused("permission denied (cannot read the file)") from None
    except OSError as exc:
        raise FileRefused(f"could not read the file ({exc.strerror or exc})") from None
