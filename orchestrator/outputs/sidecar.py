"""The provenance sidecar written beside each video (``beach.mp4`` -> ``beach.json``).

It says exactly what produced the file: the job, the model, the payload as sent (local
images as their path and sha256, never bytes), the request id, attempts, timings, cost and
what the video probe found. It never holds the API token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator import __version__

SCHEMA = "runcomfy-orchestrator/sidecar/1"


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def write_sidecar(video: Path, record: Mapping[str, Any]) -> Path:
    """Write the sidecar atomically (temp file, fsync, rename) and return its path."""
    path = sidecar_path(video)
    document = {"schema": SCHEMA, "orchestrator": __version__, **record}
    temp = path.with_name(f".{path.name}.part")
    with open(temp, "w", encoding="utf-8") as handle:
        # One write of the whole text: json.dump writes each token separately.
        handle.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return path
