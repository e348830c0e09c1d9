"""Names for expanded jobs: matrix labels, unique ids and output paths.

These depend on the whole batch (an auto-named job needs to know whether another job shares
its image name), so they are decided after every job is expanded.

>>> axis_label("seed", 3, [1, 2, 3])
'3'
>>> axis_label("ratio", "16:9", ["16:9"])
'16x9'
>>> long_prompt = "a very long prompt that makes a poor file name"
>>> axis_label("prompt", long_prompt, ["x", long_prompt])
'2'
"""

from __future__ import annotations

import functools
import os.path
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.catalog import ModelSpec, PriceTable, model_slug
from orchestrator.manifest.inputs import UNKNOWN_MODEL_IMAGE, NativeJob
from orchestrator.manifest.model import BatchSettings, JobSpec
from orchestrator.outputs.paths import OutputPathError, render_output_path
from orchestrator.problems import SHOWN_NAME_CHARS, clipped, show_value

if TYPE_CHECKING:
    from orchestrator.manifest.sources import RawJob

IMAGE_NAMES = ("image", "last_image")
#: How a name is reported: (message, line, job, field, hint, file).
Report = Callable[..., None]


@dataclass(slots=True)
class Draft:
    """A job before its id and output path are known (they depend on all other jobs)."""

    raw: RawJob
    explicit_id: str | None
    stem: str | None
    variant: str
    model: ModelSpec | None
    model_id: str
    native: NativeJob
    replicate: int
    image_fit: str | None
    key: str
    label: str
    seed: Any


def safe_name(text: str | None) -> str:
    """Letters, digits, '.', '_' and '-' only, no leading punctuation, at most 60 chars."""
    if not text:
        return ""
    text = text.replace(":", "x")
    cleaned = "".join(c if (c.isalnum() and c.isascii()) or c in "._-" else "-" for c in text)
    return cleaned.strip("-._")[:60]


def axis_label(axis: str, value: Any, values: list[Any], slug: str | None = None) -> str:
    """A short, file-safe label for one matrix value (``seed-3``, ``model-seedance-1-0-pro``).

    A value that makes a poor file name (long prompts, nested values) is labelled by its
    1-based position on the axis.
    """
    if axis == "model" and isinstance(value, str):
        return slug or (model_slug(value) if "/" in value else safe_name(value) or "model")
    if axis in IMAGE_NAMES and isinstance(value, str):
        stem = safe_name(_stem(value))
        if stem:
            return stem
    if isinstance(value, bool):
        return "true" if value else "false"
    text = safe_name(str(value)) if isinstance(value, str | int | float) else ""
    if text and len(text) <= 24 and text == str(value).replace(":", "x"):
        return text
    return str(values.index(value) + 1)


def image_stem(fields: Mapping[str, Any]) -> str | None:
    """The file name (without extension) of a job's first image, to name the job after."""
    for name, value in fields.items():
        if (name in IMAGE_NAMES or UNKNOWN_MODEL_IMAGE.search(name)) and isinstance(value, str):
            return _stem(value) or None
    return None


@functools.lru_cache(maxsize=4096)
def _stem(value: str) -> str:
    return os.path.splitext(os.path.basename(value.split("?")[0]))[0]


def assign_ids(drafts: list[Draft]) -> list[tuple[str, str]]:
    """Base ids and full ids (base + variant), unique within the batch.

    An explicit id is kept as written (two jobs with one explicit id are reported when the
    manifest is read). A job without one is named after its image file; when several share
    that name, the first eight hex digits of the job key are added, which stays stable when
    jobs are reordered.
    """
    bases: list[str] = []
    for draft in drafts:
        if draft.explicit_id is not None:
            base = draft.explicit_id + (f"-{draft.stem}" if draft.stem else "")
        else:
            base = safe_name(draft.stem) or "job"
        bases.append(base)
    counts: dict[str, int] = {}
    for draft, base in zip(drafts, bases, strict=True):
        counts[base + draft.variant] = counts.get(base + draft.variant, 0) + 1
    out = []
    for draft, base in zip(drafts, bases, strict=True):
        if draft.explicit_id is None and counts[base + draft.variant] > 1:
            base = f"{base}-{draft.key[:8]}"
        out.append((base, base + draft.variant))
    return out


def build_jobs(
    drafts: list[Draft], settings: BatchSettings, prices: PriceTable, report: Report
) -> list[JobSpec]:
    """Turn drafts into jobs: identical jobs, ids and output paths checked batch-wide."""
    first_by_key: dict[str, Draft] = {}
    for draft in drafts:
        seen = first_by_key.get(draft.key)
        if seen is not None:
            report(
                f"is identical to job {show_value(seen.label, SHOWN_NAME_CHARS)} "
                f"({seen.raw.file}:{seen.raw.line}): "
                "same model and inputs",
                draft.raw.line,
                job=draft.label,
                model=draft.model_id,
                hint="change an input, or use 'repeat: N' for several takes of one job",
                file=draft.raw.file,
            )
        else:
            first_by_key[draft.key] = draft
    jobs = []
    by_path: dict[str, str] = {}
    pattern = settings.output.pattern
    for draft, (base_id, full_id) in zip(drafts, assign_ids(drafts), strict=True):
        slug = draft.model.slug if draft.model else model_slug(draft.model_id)
        values = {
            "batch": settings.batch,
            "model_slug": slug,
            "model": draft.model_id.replace("/", "_"),
            "id": base_id,
            "variant": draft.variant,
            "job": full_id,
            "replicate": draft.replicate + 1,
            "seed": draft.seed,
            "key": draft.key[:12],
        }
        try:
            output_path = render_output_path(pattern, values)
        except OutputPathError as exc:
            report(
                str(exc), draft.raw.line, job=full_id, field="output.pattern", file=draft.raw.file
            )
            continue
        other = by_path.get(output_path)
        if other is not None and other != full_id:  # equal ids: reported as duplicate ids
            report(
                f"writes to {clipped(output_path, SHOWN_NAME_CHARS)}, like job "
                f"{show_value(other, SHOWN_NAME_CHARS)}",
                draft.raw.line,
                job=full_id,
                field="output.pattern",
                hint="add {variant} or {job} to output.pattern",
                file=draft.raw.file,
            )
            continue
        by_path[output_path] = full_id
        jobs.append(
            JobSpec(
                id=full_id,
                base_id=base_id,
                variant=draft.variant,
                model_id=draft.model_id,
                model_slug=slug,
                payload=draft.native.payload,
                images=draft.native.images,
                replicate=draft.replicate,
                image_fit=draft.image_fit,
                key=draft.key,
                output_path=output_path,
                source_file=draft.raw.file,
                source_line=draft.raw.line,
                estimated_cost_usd=prices.estimate(draft.model, draft.native.payload),
                known_model=draft.model is not None,
            )
        )
    return jobs
