"""Whose file is this? Telling our videos from someone else's, and finding a free name.

A video already at a job's output path was written by this store for this job when its JSON
sidecar says so; anything else (a missing or unreadable sidecar, another store, another job)
is not ours and must not be overwritten or adopted.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     video = Path(tmp) / "beach.mp4"
...     before = free_name(video).name
...     _ = video.write_bytes(b"")
...     print(before, free_name(video).name, owned_by(video, store_id="s", job_key="k",
...                                                   request_ids=()))
beach.mp4 beach-1.mp4 False
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from orchestrator.outputs.sidecar import sidecar_path

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

#: How many numbered names :func:`free_name` tries before it gives up.
MAX_FREE_NAME_TRIES = 10_000


class NoFreeName(FileExistsError):
    """Every numbered alternative of an output name is taken."""


def owned_by(
    video: Path, *, store_id: str | None, job_key: str, request_ids: Collection[str]
) -> bool:
    """Whether the file at ``video`` was written by the store ``store_id`` for ``job_key``.

    The sidecar beside it decides: ``store.id`` and ``job.key`` must both match. A sidecar
    from an older version (no ``store`` section) is ours when its ``request_id`` is one of
    ``request_ids`` (the RunComfy requests this store made for the job). A missing,
    unreadable or malformed sidecar means "not ours"; so does a ``store`` section when
    ``store_id`` is ``None`` (an unknown store proves nothing).
    """
    try:
        document = json.loads(sidecar_path(video).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(document, dict):
        return False
    if "store" in document:
        store, job = document["store"], document.get("job")
        return (
            store_id is not None
            and isinstance(store, dict)
            and isinstance(job, dict)
            and store.get("id") == store_id
            and job.get("key") == job_key
        )
    request_id = document.get("request_id")
    return isinstance(request_id, str) and request_id in request_ids


def free_name(target: Path) -> Path:
    """``target`` itself when neither it nor its sidecar exists, else the first of
    ``<stem>-1<suffix>``, ``<stem>-2<suffix>``, ... whose video and sidecar are both free.

    Raise :class:`NoFreeName` after :data:`MAX_FREE_NAME_TRIES` taken alternatives.
    """
    if _free(target):
        return target
    for number in range(1, MAX_FREE_NAME_TRIES + 1):
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
        if _free(candidate):
            return candidate
    raise NoFreeName(
        f"{target}: {target.stem}-1{target.suffix} to "
        f"{target.stem}-{MAX_FREE_NAME_TRIES}{target.suffix} are all taken"
    )


def _free(video: Path) -> bool:
    # lexists: a dangling symlink is taken too (writing through it would follow it).
    return not os.path.lexists(video) and not os.path.lexists(sidecar_path(video))
