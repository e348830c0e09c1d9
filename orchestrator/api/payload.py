"""The request body of a submit, built from a stored payload at the last moment.

The store keeps ``{"$image": {"path": ..., "sha256": ..., "fit": ...}}`` for each local
image. Here each reference becomes a ``data:`` URI: the file is re-hashed (a file that
changed since enqueue raises :class:`~orchestrator.media.ImageChanged`), oriented, fitted
when the manifest asked for it, and re-encoded as JPEG/PNG only when it has to be.

>>> build_request_payload({"prompt": "hi", "image": "https://x.test/a.png"}, None)
{'prompt': 'hi', 'image': 'https://x.test/a.png'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.manifest.model import IMAGE_MARKER
from orchestrator.media import encode_image

if TYPE_CHECKING:
    from orchestrator.catalog import FieldSpec, ModelSpec


def build_request_payload(stored: Mapping[str, Any], model: ModelSpec | None) -> dict[str, Any]:
    """The JSON body to POST: every image reference replaced by its data URI."""
    body: dict[str, Any] = {}
    for name, value in stored.items():
        spec = model.fields.get(name) if model else None
        if isinstance(value, list):
            body[name] = [_resolve(item, spec) for item in value]
        else:
            body[name] = _resolve(value, spec)
    return body


def _resolve(value: Any, spec: FieldSpec | None) -> Any:
    if not (isinstance(value, Mapping) and IMAGE_MARKER in value):
        return value
    marker = value[IMAGE_MARKER]
    encoded = encode_image(
        marker["path"],
        expected_sha256=marker["sha256"],
        rules=spec.rules if spec else (),
        fit=marker.get("fit"),
        allowed_formats=spec.image_formats if spec else None,
    )
    return encoded.data_uri
