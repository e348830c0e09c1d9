"""Deterministic job keys.

A job key is the sha256 of the canonical JSON of what makes a video what it is: the model,
the native payload with local images replaced by their content hash, the image fit mode and
the replicate index. The job's name, its place in the manifest and the image's path are
left out, so reordering jobs, renaming a file or moving the manifest changes no key, while
editing one prompt changes exactly that job's key.

>>> a = job_key("m", {"prompt": "a", "seed": 1}, replicate=0)
>>> a == job_key("m", {"seed": 1, "prompt": "a"}, replicate=0)
True
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

KEY_VERSION = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def job_key(
    model_id: str, keyed_payload: Mapping[str, Any], *, replicate: int, image_fit: str | None = None
) -> str:
    """The 64-hex key of one job."""
    material = {
        "v": KEY_VERSION,
        "model": model_id,
        "payload": keyed_payload,
        "replicate": replicate,
        "image_fit": image_fit,
    }
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()
