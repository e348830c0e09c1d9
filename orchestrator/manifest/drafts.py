"""One combination of a job's fields -> drafts: its model, its glob, its native payload.

:mod:`orchestrator.manifest.expand` walks the manifest (defaults, matrix, repeats, ids) and
hands each combination of fields to :class:`DraftMaker`, which looks up the model, expands
an image glob, maps the fields to the model's native payload, resolves the images and keys
every replicate. :class:`Origins` says where a field was written (the job, the matrix or
the defaults), so each problem points at the line the user has to change.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.manifest.inputs import (
    UNKNOWN_MODEL_IMAGE,
    FieldError,
    ImageResolver,
    NativeJob,
    image_values,
    is_glob,
    to_native,
)
from orchestrator.manifest.keys import job_key
from orchestrator.manifest.model import ImageRef, with_images
from orchestrator.manifest.naming import IMAGE_NAMES, Draft, image_stem
from orchestrator.manifest.yamlsafe import LocatedDict, LocatedList
from orchestrator.problems import SHOWN_NAME_CHARS, Problem, show_value

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.catalog import Catalog, ModelSpec
    from orchestrator.catalog.validate import FieldMemo
    from orchestrator.manifest.settings import Reader
    from orchestrator.manifest.sources import RawJob


@dataclass
class Origins:
    """Where each field of a job was written: on the job, in ``matrix:`` or ``defaults:``."""

    file: str
    data: LocatedDict
    defaults: Mapping[str, Any] = field(default_factory=dict)
    matrix_lines: dict[str, int | None] = field(default_factory=dict)

    def origin(self, raw: RawJob, name: str) -> tuple[str, int | None]:
        """The file and line where a job's field was written: job, matrix or defaults."""
        if name in raw.fields:
            return raw.file, raw.line_of(name)
        if name in self.matrix_lines:
            return self.file, self.matrix_lines[name]
        if name in self.defaults:
            return self.file, line_in(self.defaults, name)
        if name == "model" and "model" in self.data:
            return self.file, self.data.line_of("model")
        return raw.file, raw.line

    def job_of(self, raw: RawJob, name: str, label: str) -> str | None:
        """The job to name in a problem with field ``name``: none when the value was written
        in ``defaults:`` or ``matrix:``, where one mistake reaches every job (and is said once).
        """
        if name not in raw.fields and (name in self.matrix_lines or name in self.defaults):
            return None
        return label

    def defaults_only(self, raw: RawJob) -> set[str]:
        """Names whose value comes from ``defaults:`` alone (not the job, not the matrix)."""
        return {
            str(name)
            for name in self.defaults
            if name not in raw.fields and name not in self.matrix_lines
        }

    def from_data_file(self, raw: RawJob, name: str) -> bool:
        """Whether a field's value was written in a jobs_from file (not the manifest)."""
        return raw.file != self.file and name in raw.fields


@dataclass(frozen=True)
class Combination:
    """One job's fields with one value per matrix axis, before its model is looked up."""

    raw: RawJob
    label: str
    explicit_id: Any
    fields: dict[str, Any]
    variant: str
    fit: str | None
    repeat: int
    defaults_only: set[str]


@dataclass
class DraftMaker:
    """Turns combinations into drafts, collecting problems and warnings as it goes."""

    origins: Origins
    catalog: Catalog
    resolver: ImageResolver
    base_dir: Path
    reader: Reader
    warnings: list[Problem]
    allow_unknown_model: bool = False
    _warned_models: set[str] = field(default_factory=set)
    _memo: FieldMemo = field(default_factory=dict)

    def drafts(self, combo: Combination) -> list[Draft]:
        """Every draft of one combination: one per glob match and replicate."""
        raw, label, fields = combo.raw, combo.label, dict(combo.fields)
        model_id = fields.pop("model", None) or self.origins.data.get("model")
        if not isinstance(model_id, str) or not model_id:
            self.reader.problem(
                "no model: set 'model:' at the top of the manifest, in defaults or on the job",
                raw.line,
                job=label,
                field="model",
                file=raw.file,
            )
            return []
        model = self.catalog.get(model_id)
        if model is None:
            self._unknown_model(model_id, raw)
        else:
            _drop_shadowed_defaults(model, fields, combo.defaults_only)
        expansions = self._globbed(raw, label, model, fields)
        drafts = []
        for stem, concrete in expansions:
            native = self._native(raw, label, model, concrete, combo.fit)
            if native is None:
                continue
            seed = native.payload.get(model.native_name("seed") or "seed") if model else None
            base_stem = stem or image_stem(concrete)
            explicit_id = combo.explicit_id
            for replicate in range(combo.repeat):
                key = job_key(
                    model_id,
                    with_images(native.payload, native.images, ImageRef.keyed),
                    replicate=replicate,
                    image_fit=combo.fit,
                )
                drafts.append(
                    Draft(
                        raw=raw,
                        explicit_id=None if explicit_id is None else str(explicit_id),
                        stem=base_stem if explicit_id is None or stem else None,
                        variant=combo.variant + (f"_r{replicate + 1}" if combo.repeat > 1 else ""),
                        model=model,
                        model_id=model_id,
                        native=native,
                        replicate=replicate,
                        image_fit=combo.fit,
                        key=key,
                        label=label,
                        seed=seed,
                    )
                )
        return drafts

    def _globbed(
        self, raw: RawJob, label: str, model: ModelSpec | None, fields: dict[str, Any]
    ) -> list[tuple[str | None, dict[str, Any]]]:
        """The fields once per file an image glob matches (once as they are without one)."""
        globbed = [
            name for name, value in fields.items() if is_glob(value) and _is_image_name(model, name)
        ]
        if len(globbed) > 1:
            self.reader.problem(
                "only one field per job may be a glob pattern",
                raw.line,
                job=label,
                field=globbed[1],
                file=raw.file,
            )
            return []
        if not globbed:
            return [(None, fields)]
        name = globbed[0]
        matches = sorted(glob.glob(str(self.base_dir / fields[name]), recursive=True))
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            file, line = self.origins.origin(raw, name)
            self.reader.problem(
                f"the pattern {show_value(fields[name], SHOWN_NAME_CHARS)} matches no file "
                f"(relative to {self.base_dir.name}/)",
                line,
                job=label,
                field=name,
                file=file,
            )
            return []
        return [(Path(m).stem, {**fields, name: m}) for m in matches]

    def _native(
        self,
        raw: RawJob,
        label: str,
        model: ModelSpec | None,
        fields: Mapping[str, Any],
        fit: str | None,
    ) -> NativeJob | None:
        model_label = model.model_id if model else None
        if model is None:
            native = NativeJob(payload=dict(fields), written={k: k for k in fields})
            errors: list[FieldError] = []
            image_fields = [k for k in fields if UNKNOWN_MODEL_IMAGE.search(k)]
        else:
            native, errors = to_native(model, fields, text_values=raw.from_text, memo=self._memo)
            image_fields = [k for k in model.image_fields if k in native.payload]
        for name in image_fields:
            spec = model.fields[name] if model else None
            written = native.written.get(name, name)
            if spec is not None and spec.type != "array" and isinstance(native.payload[name], list):
                # One image, not a list: the schema check passes image references unread.
                shown = show_value(native.payload[name])
                errors.append(
                    FieldError(written, f"needs one image file path or https URL, got {shown}")
                )
                continue
            values = image_values(native.payload[name])
            if len(values) != 1:
                continue  # the schema check already reported the item count
            confined = self.origins.from_data_file(raw, written)
            ref = self.resolver.resolve(written, values[0], spec, fit, confined=confined)
            if isinstance(ref, FieldError):
                errors.append(ref)
            else:
                native.images[name] = ref
        for error in errors:
            name = error.field.split("[")[0]
            file, line = self.origins.origin(raw, name)
            self.reader.problem(
                error.message,
                line,
                job=self.origins.job_of(raw, name, label),
                field=error.field,
                model=model_label,
                hint=error.hint,
                file=file,
            )
        return None if errors else native

    def _unknown_model(self, model_id: str, raw: RawJob) -> None:
        """Refuse a model nobody knows (once), or warn when the user allows it."""
        if model_id in self._warned_models:
            return
        self._warned_models.add(model_id)
        near = self.catalog.suggestions(model_id)
        hint = (
            "did you mean " + " or ".join(show_value(n, SHOWN_NAME_CHARS) for n in near) + "?"
            if near
            else "see 'orchestrator models --remote' for the ids RunComfy offers"
        )
        file, line = self.origins.origin(raw, "model")
        reason = self.catalog.unknown_reason(model_id)
        if not self.allow_unknown_model:
            self.reader.problems.append(
                Problem(
                    f"unknown model {show_value(model_id, SHOWN_NAME_CHARS)}"
                    + (f": {reason}" if reason else "")
                    + "; nothing was submitted (--allow-unknown-model sends it as written)",
                    file=file,
                    line=line,
                    field="model",
                    hint=hint,
                )
            )
            return
        self.warnings.append(
            Problem(
                f"model {show_value(model_id, SHOWN_NAME_CHARS)} has no schema in the catalog: "
                "its inputs are sent as "
                "written, without validation (--allow-unknown-model)",
                file=file,
                line=line,
                field="model",
                hint=hint,
            )
        )


def _is_image_name(model: ModelSpec | None, name: str) -> bool:
    """Whether ``name`` sets an image input (only those may hold a glob pattern)."""
    if model is None:
        return name in IMAGE_NAMES or bool(UNKNOWN_MODEL_IMAGE.search(name))
    native = model.native_name(name)
    return native is not None and model.fields[native].is_image


def _drop_shadowed_defaults(model: ModelSpec, fields: dict[str, Any], defaults: set[str]) -> None:
    """Drop default values for an input the job sets under its other name.

    ``defaults: {duration: 5}`` and a job's ``frames: 241`` (Dreamina's native name for the
    duration) set the same input; the job's own value wins, as with any default.
    """
    own = {model.native_name(name) for name in fields if name not in defaults}
    own.discard(None)
    for name in defaults:
        if name in fields and model.native_name(name) in own:
            del fields[name]


def line_in(mapping: Any, key: Any) -> int | None:
    """The line ``key`` was written on, when ``mapping`` was read from a file."""
    return mapping.line_of(key) if isinstance(mapping, LocatedDict | LocatedList) else None
