"""The provenance sidecar written beside each video (``beach.mp4`` -> ``beach.json``).

It says exactly what produced the file: the store and job, the model, the payload as sent
(local images as their path and sha256, never bytes), the request id, attempts, timings,
cost and what the video probe found. It never holds the API token. Its ``store.id`` is how
a later run tells a video it wrote from a user's file or another store's video.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from orchestrator import __version__
from orchestrator.outputs.atomicwrite import create_exclusively, write_atomically
from orchestrator.redact import redact

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

SCHEMA = "runcomfy-orchestrator/sidecar/1"


def sidecar_path(video: Path) -> Path:
    """Where the sidecar of ``video`` goes: beside it, with ``.json`` for its suffix."""
    return video.with_suffix(".json")


def write_sidecar(video: Path, record: Mapping[str, Any], *, exclusive: bool = False) -> bool:
    """Write the sidecar atomically (:mod:`~orchestrator.outputs.atomicwrite`).

    With ``exclusive`` the sidecar is only created, never replaced: False when a file is
    already there (the name is someone else's; nothing is written). That is how a download
    claims an output name before its video is moved there.
    """
    path = sidecar_path(video)
    document = {"schema": SCHEMA, "orchestrator": __version__, **record}
    # One write of the whole text: json.dump writes each token separately.
    text = redact(json.dumps(document, indent=2, sort_keys=True, default=str)) + "\n"
    if exclusive:
        return create_exclusively(path, text.encode("utf-8"))
    # No folder fsync here: a sidecar is written just before its video is put in place
    # (orchestrator.outputs.placing), and that rename fsyncs the same folder.
    write_atomically(path, text, sync_folder=False)
    return True
