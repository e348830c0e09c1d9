"""Putting a verified video in place without overwriting a file this store did not write.

A job's output name is claimed by creating its sidecar exclusively (an atomic hard link),
and only then is the video renamed there. A name already taken by a user's file, another
store's video or another job's keeps its file: the video goes to the first free
``<stem>-N<suffix>`` instead, and the caller records the new name. A name this store
already holds for the job (a re-download, a re-roll, a crash between the sidecar and the
rename) is reused.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     folder = Path(tmp)
...     _ = (folder / "beach.mp4").write_bytes(b"the user's own file")
...     temp = folder / ".beach.mp4.0a1b2c3d.part"
...     _ = temp.write_bytes(b"a verified video")
...     placed = place_video(temp, folder / "beach.mp4", lambda p: {"video": p.name},
...                          is_ours=lambda p: False)
...     placed.name, (folder / "beach.mp4").read_bytes(), placed.read_bytes()
('beach-1.mp4', b"the user's own file", b'a verified video')
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orchestrator.outputs.atomicwrite import publish
from orchestrator.outputs.ownership import MAX_FREE_NAME_TRIES, NoFreeName
from orchestrator.outputs.sidecar import sidecar_path, write_sidecar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path


def place_video(
    temp: Path,
    target: Path,
    record_for: Callable[[Path], Mapping[str, Any]],
    *,
    is_ours: Callable[[Path], bool],
) -> Path:
    """Rename ``temp`` to ``target`` (or the first free alternative) beside its sidecar,
    ``record_for(final path)``; returns the final path. Durable: the folder is fsynced
    (:func:`~orchestrator.outputs.atomicwrite.publish`)."""
    for number in range(MAX_FREE_NAME_TRIES + 1):
        candidate = target if number == 0 else _numbered(target, number)
        # Twice: another writer may claim a free name between our look and our claim.
        for _look in range(2):
            if not _taken(candidate):
                if not write_sidecar(candidate, record_for(candidate), exclusive=True):
                    continue  # claimed by someone else just now: look at it again
            elif is_ours(candidate):
                write_sidecar(candidate, record_for(candidate))
            else:
                break  # someone else's file: try the next name
            publish(temp, candidate)
            return candidate
    raise NoFreeName(f"{target}: no free name among {MAX_FREE_NAME_TRIES} alternatives")


def _numbered(target: Path, number: int) -> Path:
    return target.with_name(f"{target.stem}-{number}{target.suffix}")


def _taken(video: Path) -> bool:
    # lexists: a dangling symlink is taken too (writing through it would follow it).
    return os.path.lexists(video) or os.path.lexists(sidecar_path(video))
