"""The provenance sidecar written beside each video (``beach.mp4`` -> ``beach.json``).

It says exactly what produced the file: the store and job, the model, the payload as sent
(local images as their path and sha256, never bytes), the request id, attempts, timings,
cost and what the video probe found. It never holds the API token. Its ``store.id`` is how
a later run tells a video it wrote from a user's file or another store's video.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.outputs.paths import part_name
from orchestrator.redact import redact

SCHEMA = "runcomfy-orchestrator/sidecar/1"


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def write_sidecar(video: Path, record: Mapping[str, Any], *, exclusive: bool = False) -> bool:
    """Write the sidecar atomically (unique temp file, fsync, rename).

    With ``exclusive`` the sidecar is only created, never replaced: False when a file is
    already there (the name is someone else's; nothing is written). That is how a download
    claims an output name before its video is moved there.
    """
    path = sidecar_path(video)
    document = {"schema": SCHEMA, "orchestrator": __version__, **record}
    # One write of the whole text: json.dump writes each token separately.
    text = redact(json.dumps(document, indent=2, sort_keys=True, default=str)) + "\n"
    temp = path.with_name(part_name(path.name, secrets.token_hex(4)))
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if not exclusive:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # atomic, and refuses an existing name
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create instead
            return _create_exclusive(path, text)
        return True
    finally:
        temp.unlink(missing_ok=True)


def _create_exclusive(path: Path, text: str) -> bool:
    try:
        handle = open(path, "x", encoding="utf-8")  # noqa: SIM115 - closed below
    except FileExistsError:
        return False
    with handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return True
