"""A generic validator for native payloads against a model's input schema.

It interprets the JSON-schema subset the RunComfy pages use: ``required``, ``type``,
``enum``, ``maxLength``/``minLength``, ``minimum``/``maximum``, ``minItems``/``maxItems`` and
``items.type``. Image rules (``validations``) need the image itself and are checked by
:mod:`orchestrator.media`; here an image field only has its shape checked.

>>> from orchestrator.catalog import builtin_catalog
>>> lite = builtin_catalog().require("bytedance/seedance-1-0/lite/image-to-video")
>>> for issue in validate_payload(lite, {"prompt": "x", "duration": 7}, images_ok=True):
...     print(issue)
field 'first_frame_image_url': required by this model
field 'duration': 7 is not allowed; allowed: 5, 10
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.catalog.spec import FieldSpec, ModelSpec, _show
from orchestrator.problems import SHOWN_NAME_CHARS, did_you_mean, show_value

if TYPE_CHECKING:
    from collections.abc import Mapping

TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """One field of a payload that the schema does not accept."""

    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"field {show_value(self.field, SHOWN_NAME_CHARS)}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


def matches_type(value: Any, type_name: str | None) -> bool:
    """JSON-schema type check that does not let ``True`` pass as ``1``."""
    if type_name is None:
        return True
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "array":
        return isinstance(value, list)
    if type_name == "object":
        return isinstance(value, dict)
    return True


def in_enum(value: Any, enum: tuple[Any, ...]) -> bool:
    """Enum membership where ``True`` is not ``1`` and ``5`` equals ``5.0``."""
    return any(value == option and _same_kind(value, option) for option in enum)


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))


def _same_kind(a: Any, b: Any) -> bool:
    return type(a) is type(b) or _both_numbers(a, b)


def check_field(spec: FieldSpec, value: Any, *, images_ok: bool = False) -> list[FieldIssue]:
    """Problems with one value for one field (empty when it is accepted)."""
    name = spec.name
    if spec.is_image and images_ok:
        # Image values are references resolved elsewhere; only the list shape matters here.
        if spec.type == "array":
            if not isinstance(value, list):
                # Sent as it is, a single reference would not be the list the API expects.
                return [FieldIssue(name, f"{_show_value(value)} is not a list", "write [ ... ]")]
            return _check_items_count(spec, value)
        return []
    if not matches_type(value, spec.type):
        wanted = TYPE_NAMES.get(spec.type or "", spec.type or "?")
        return [FieldIssue(name, f"{_show_value(value)} is not {wanted}", spec.allowed_text())]
    issues: list[FieldIssue] = []
    if spec.enum is not None and not in_enum(value, spec.enum):
        issues.append(
            FieldIssue(name, f"{_show_value(value)} is not allowed; {spec.allowed_text()}")
        )
    if isinstance(value, str):
        if spec.max_length is not None and len(value) > spec.max_length:
            issues.append(
                FieldIssue(
                    name,
                    f"is {len(value):,} characters long; at most {spec.max_length:,} allowed",
                )
            )
        if spec.min_length is not None and len(value) < spec.min_length:
            issues.append(FieldIssue(name, f"needs at least {spec.min_length:,} characters"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            issues.append(
                FieldIssue(name, f"{_show_value(value)} is below the minimum {_show(spec.minimum)}")
            )
        if spec.maximum is not None and value > spec.maximum:
            issues.append(
                FieldIssue(name, f"{_show_value(value)} is above the maximum {_show(spec.maximum)}")
            )
    if isinstance(value, list):
        issues.extend(_check_items_count(spec, value))
        if spec.items_type is not None:
            for index, item in enumerate(value):
                if not matches_type(item, spec.items_type):
                    wanted = TYPE_NAMES.get(spec.items_type, spec.items_type)
                    issues.append(
                        FieldIssue(f"{name}[{index}]", f"{_show_value(item)} is not {wanted}")
                    )
    return issues


def _check_items_count(spec: FieldSpec, value: list[Any]) -> list[FieldIssue]:
    issues = []
    if spec.min_items is not None and len(value) < spec.min_items:
        issues.append(
            FieldIssue(spec.name, f"has {len(value)} items; at least {spec.min_items} needed")
        )
    if spec.max_items is not None and len(value) > spec.max_items:
        issues.append(
            FieldIssue(spec.name, f"has {len(value)} items; at most {spec.max_items} allowed")
        )
    return issues


#: Memo of :func:`check_field` verdicts for scalar values, shared across the jobs of one
#: manifest: a 100,000-job matrix repeats the same few values over and over.
FieldMemo = dict[tuple[str, str, type, Any], list[FieldIssue]]


def validate_payload(
    model: ModelSpec,
    payload: Mapping[str, Any],
    *,
    images_ok: bool = False,
    memo: FieldMemo | None = None,
) -> list[FieldIssue]:
    """Every problem of a native payload for ``model``, in schema order.

    ``images_ok`` skips the shape check of image fields whose values are references the
    caller resolves (local files are checked against the rules with Pillow). ``memo``
    caches the verdict on each scalar value (it must not mix ``images_ok`` settings).
    """
    issues: list[FieldIssue] = []
    for name, spec in model.fields.items():
        value = payload.get(name)
        if value is None:
            if spec.required:
                issues.append(FieldIssue(name, "required by this model"))
            continue
        if memo is not None and isinstance(value, str | int | float):
            memo_key = (model.model_id, name, type(value), value)
            found = memo.get(memo_key)
            if found is None:
                found = memo[memo_key] = check_field(spec, value, images_ok=images_ok)
            issues.extend(found)
        else:
            issues.extend(check_field(spec, value, images_ok=images_ok))
    issues.extend(
        FieldIssue(
            name,
            "is not an input of this model; it takes: " + ", ".join(model.input_names()),
            did_you_mean(name, model.input_names()),
        )
        for name in payload
        if name not in model.fields
    )
    return issues


def _show_value(value: Any) -> str:
    """A payload value in a message: as the user wrote it (``true``, ``5``), at most ~40
    characters; a list or mapping through :func:`~orchestrator.problems.show_value`, which
    walks only a few of its items (``str()`` would write out all of them)."""
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown)
    if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()):
        return _show(value)
    return show_value(value, 40)
