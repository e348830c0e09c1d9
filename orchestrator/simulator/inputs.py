"""What the simulated API accepts: the catalog schemas, data URIs and https URLs.

:func:`check_submission` returns the ``detail`` entries of a 422 reply (empty when the body
is accepted) and the first-frame image bytes the video is rendered from.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.catalog import ModelSpec, validate_payload
from orchestrator.media import ImageError, check_image, probe_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping

DATA_URI = re.compile(r"^data:(image/(?:png|jpeg|jpg|webp));base64,(.*)$", re.DOTALL | re.I)


@dataclass
class Checked:
    """The verdict on one submit body."""

    detail: list[dict[str, Any]] = field(default_factory=list)
    first_image: bytes | None = None
    first_image_url: str | None = None


def _issue(field_name: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", field_name], "msg": message, "type": kind}


def decode_data_uri(value: str) -> bytes | None:
    """The bytes of a ``data:image/...;base64,`` URI, or None if it is malformed."""
    match = DATA_URI.match(value)
    if match is None:
        return None
    try:
        return base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None


def check_image_value(
    model: ModelSpec, field_name: str, value: Any, checked: Checked, index: int | None = None
) -> None:
    """Check one image value (https URL or data URI) against the field's rules."""
    where = field_name if index is None else f"{field_name}[{index}]"
    if not isinstance(value, str):
        checked.detail.append(_issue(where, "must be an https URL or a data URI", "type_error"))
        return
    if value.lower().startswith("https://"):
        if checked.first_image is None and checked.first_image_url is None:
            checked.first_image_url = value
        return
    data = decode_data_uri(value)
    if data is None:
        checked.detail.append(
            _issue(
                where,
                "malformed data URI or URL (https URL or base64 image data URI)",
                "value_error.url",
            )
        )
        return
    try:
        info = probe_bytes(data, where)
    except ImageError as exc:
        checked.detail.append(
            _issue(where, f"not a readable image: {exc.reason}", "value_error.image")
        )
        return
    for rule in check_image(info, model.fields[field_name].rules):
        checked.detail.append(_issue(where, rule.message, "value_error.image"))
    if checked.first_image is None and checked.first_image_url is None:
        checked.first_image = data


def check_submission(model: ModelSpec, body: Mapping[str, Any]) -> Checked:
    """Validate a submit body the way the real API is documented to."""
    checked = Checked()
    for issue in validate_payload(model, body):
        checked.detail.append(_issue(issue.field, issue.message, "value_error"))
    bad_fields = {entry["loc"][1] for entry in checked.detail}
    for name in model.image_fields:
        if name not in body or name in bad_fields:
            continue
        value = body[name]
        if isinstance(value, list):
            for index, item in enumerate(value):
                check_image_value(model, name, item, checked, index)
        else:
            check_image_value(model, name, value, checked)
    return checked
