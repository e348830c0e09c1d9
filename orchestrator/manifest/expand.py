"""Manifest -> concrete jobs: defaults, matrix, image globs, repeats, ids, keys, paths.

:func:`load_manifest` reads a manifest file and returns an :class:`Expansion` or raises
:class:`~orchestrator.problems.InputError` with every problem found. Nothing here talks to
the API or the store; it only reads the manifest, the files it names and the images.
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.catalog import Catalog, ModelSpec, PriceTable, builtin_catalog
from orchestrator.catalog.validate import FieldMemo
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
from orchestrator.manifest.model import BatchSettings, ImageRef, JobSpec, with_images
from orchestrator.manifest.naming import IMAGE_NAMES, Draft, axis_label, build_jobs, image_stem
from orchestrator.manifest.settings import Reader, check_image_fit, read_settings
from orchestrator.manifest.sources import RawJob, inline_jobs, jobs_from_files
from orchestrator.manifest.yamlsafe import LocatedDict, LocatedList, load_yaml, read_manifest
from orchestrator.media import ImageInfo
from orchestrator.outputs.paths import SAFE_NAME
from orchestrator.problems import SHOWN_NAME_CHARS, InputError, Problem, show_value


@dataclass
class Expansion:
    """A manifest, expanded: batch settings, jobs in manifest order, and warnings."""

    settings: BatchSettings
    jobs: list[JobSpec]
    warnings: list[Problem] = field(default_factory=list)

    def by_model(self) -> dict[str, list[JobSpec]]:
        out: dict[str, list[JobSpec]] = {}
        for job in self.jobs:
            out.setdefault(job.model_id, []).append(job)
        return out


def load_manifest(
    path: str | Path,
    *,
    catalog: Catalog | None = None,
    prices: PriceTable | None = None,
    probe_url: Callable[[str], ImageInfo] | None = None,
    allow_unknown_model: bool = False,
) -> Expansion:
    """Read, check and expand a manifest file; raise :class:`InputError` on any problem.

    A model id the catalog does not know is a problem (nothing would validate its inputs,
    and RunComfy would refuse it); ``allow_unknown_model`` sends its inputs as written,
    with a warning, for a user who knows better.
    """
    manifest = Path(path)
    shown = str(path)
    data = load_yaml(read_manifest(manifest, shown), shown)
    if not isinstance(data, LocatedDict):
        raise InputError(
            [Problem("a manifest is a YAML mapping (batch:, model:, jobs: ...)", file=shown)]
        )
    catalog = catalog or builtin_catalog()
    expander = _Expander(
        data=data,
        file=shown,
        base_dir=manifest.resolve().parent,
        catalog=catalog,
        prices=prices or PriceTable(),
        resolver=ImageResolver(base_dir=manifest.resolve().parent, probe_url=probe_url),
        allow_unknown_model=allow_unknown_model,
    )
    return expander.run()


@dataclass
class _Expander:
    data: LocatedDict
    file: str
    base_dir: Path
    catalog: Catalog
    prices: PriceTable
    resolver: ImageResolver
    allow_unknown_model: bool = False
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    _warned_models: set[str] = field(default_factory=set)
    _defaults: Mapping[str, Any] = field(default_factory=dict)
    _matrix_lines: dict[str, int | None] = field(default_factory=dict)
    _explicit_ids: dict[str, RawJob] = field(default_factory=dict)
    _labels: dict[str, list[str]] = field(default_factory=dict)
    _memo: FieldMemo = field(default_factory=dict)

    def run(self) -> Expansion:
        reader = Reader(self.file, self.problems)
        settings = read_settings(self.data, self.file, reader)
        defaults = self._defaults = self._mapping("defaults")
        matrix = self._matrix()
        top_fit = check_image_fit(
            self.data.get("image_fit"), self.data.line_of("image_fit"), reader, "image_fit"
        )
        top_repeat = self._repeat(self.data.get("repeat", 1), self.data.line_of("repeat"), None)
        raw_jobs = inline_jobs(
            self.data.get("jobs"), self.file, self.data.line_of("jobs"), self.problems
        )
        raw_jobs += jobs_from_files(
            self.data.get("jobs_from"),
            self.base_dir,
            self.file,
            self.data.line_of("jobs_from"),
            self.problems,
        )
        if not raw_jobs and not self.problems:
            self.problems.append(
                Problem("the manifest has no jobs: add 'jobs:' or 'jobs_from:'", file=self.file)
            )
        drafts: list[Draft] = []
        for raw in raw_jobs:
            drafts.extend(self._expand(raw, defaults, matrix, top_fit, top_repeat))
        # Duplicate ids and identical jobs are looked for among the good jobs even when other
        # jobs have problems, so every mistake is reported in one pass.
        jobs = build_jobs(drafts, settings, self.prices, self._problem)
        if self.problems:
            # A mistake in defaults or the matrix shows up once per job it reaches; say it once.
            raise InputError(list(dict.fromkeys(self.problems)))
        return Expansion(settings=settings, jobs=jobs, warnings=self.warnings)

    # -- manifest-level pieces -------------------------------------------------------------

    def _mapping(self, key: str) -> Mapping[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._problem(f"'{key}' must be a mapping", self.data.line_of(key), field=key)
            return {}
        for name in value:
            if not isinstance(name, str):
                self._problem(
                    f"a field name must be text, got {show_value(name)}",
                    _line(value, name),
                    field=key,
                    hint="quote it",
                )
                return {}
        for meta in ("id",):
            if meta in value:
                self._problem(
                    f"'{meta}' cannot be a default; ids are per job",
                    _line(value, meta),
                    field=f"{key}.{meta}",
                )
        return value

    def _matrix(self) -> list[tuple[str, list[Any]]]:
        value = self.data.get("matrix")
        if value is None:
            return []
        if not isinstance(value, dict):
            self._problem(
                "'matrix' must map field names to lists of values",
                self.data.line_of("matrix"),
                field="matrix",
            )
            return []
        axes = []
        for axis, values in value.items():
            line = _line(value, axis)
            if axis in ("id", "repeat"):
                self._problem(f"'{axis}' cannot be a matrix axis", line, field=f"matrix.{axis}")
            elif not isinstance(values, list) or not values:
                self._problem("a matrix axis needs a non-empty list", line, field=f"matrix.{axis}")
            elif len({_hashable(v) for v in values}) != len(values):
                self._problem("a matrix axis lists a value twice", line, field=f"matrix.{axis}")
            else:
                axes.append((str(axis), list(values)))
                self._matrix_lines[str(axis)] = line
                self._labels[str(axis)] = [self._axis_label(str(axis), v, values) for v in values]
        return axes

    def _axis_label(self, axis: str, value: Any, values: list[Any]) -> str:
        model = self.catalog.get(value) if axis == "model" and isinstance(value, str) else None
        return axis_label(axis, value, values, slug=model.slug if model else None)

    def _origin(self, raw: RawJob, name: str) -> tuple[str, int | None]:
        """The file and line where a job's field was written: job, matrix or defaults."""
        if name in raw.fields:
            return raw.file, raw.line_of(name)
        if name in self._matrix_lines:
            return self.file, self._matrix_lines[name]
        if name in self._defaults:
            return self.file, _line(self._defaults, name)
        if name == "model" and "model" in self.data:
            return self.file, self.data.line_of("model")
        return raw.file, raw.line

    def _job_of(self, raw: RawJob, name: str, label: str) -> str | None:
        """The job to name in a problem with field ``name``: none when the value was written
        in ``defaults:`` or ``matrix:``, where one mistake reaches every job (and is said once).
        """
        if name not in raw.fields and (name in self._matrix_lines or name in self._defaults):
            return None
        return label

    def _repeat(
        self, value: Any, line: int | None, job: str | None, file: str | None = None
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self._problem(
                f"'repeat' must be a whole number >= 1, got {show_value(value)}",
                line,
                job=job,
                field="repeat",
                file=file,
            )
            return 1
        return value

    # -- one raw job -------------------------------------------------------------------------

    def _expand(
        self,
        raw: RawJob,
        defaults: Mapping[str, Any],
        matrix: list[tuple[str, list[Any]]],
        top_fit: str | None,
        top_repeat: int,
    ) -> list[Draft]:
        explicit_id = raw.fields.get("id")
        label = raw.label
        if explicit_id is not None:
            # str() only of a scalar: an id may be anything YAML can write, a bomb included.
            scalar = isinstance(explicit_id, str | int | float)
            label = str(explicit_id) if scalar else show_value(explicit_id)
        if explicit_id is not None and (
            isinstance(explicit_id, bool)  # `id: yes` is YAML for True, not a name
            or not isinstance(explicit_id, str | int)
            or not SAFE_NAME.match(str(explicit_id))
        ):
            self._problem(
                f"id {show_value(explicit_id)} is not allowed: use letters, "
                "digits, '.', '_' and '-', "
                "starting with a letter or digit (ids become file names)",
                raw.line_of("id"),
                job=label,
                field="id",
                file=raw.file,
            )
            return []
        if explicit_id is not None:
            # Checked here, not among the expanded jobs, so it is found even when one of the
            # two jobs has other problems.
            first = self._explicit_ids.setdefault(str(explicit_id), raw)
            if first is not raw:
                self._problem(
                    f"duplicate job id {show_value(label, SHOWN_NAME_CHARS)} "
                    f"(first used at {first.file}:{first.line})",
                    raw.line_of("id"),
                    job=label,
                    field="id",
                    file=raw.file,
                )
        for axis, _values in matrix:
            if axis in raw.fields:
                self._problem(
                    f"'{axis}' is also a matrix axis; set it in one place only",
                    raw.line_of(axis),
                    job=label,
                    field=axis,
                    file=raw.file,
                )
                return []
        merged = {**defaults, **raw.fields}
        merged.pop("id", None)
        fit_file, fit_line = self._origin(raw, "image_fit")
        fit = check_image_fit(
            merged.pop("image_fit", top_fit),
            fit_line,
            Reader(fit_file, self.problems),
            "image_fit",
            job=self._job_of(raw, "image_fit", label),
        )
        repeat_file, repeat_line = self._origin(raw, "repeat")
        repeat = self._repeat(
            merged.pop("repeat", top_repeat),
            repeat_line,
            self._job_of(raw, "repeat", label),
            repeat_file,
        )
        drafts: list[Draft] = []
        defaults_only = self._defaults_only(raw)
        positions = itertools.product(*(range(len(values)) for _axis, values in matrix))
        for combo in positions:
            fields = dict(merged)
            variant = ""
            for (axis, values), index in zip(matrix, combo, strict=True):
                fields[axis] = values[index]
                variant += f"_{axis}-{self._labels[axis][index]}"
            drafts.extend(
                self._expand_combo(
                    raw, label, explicit_id, fields, variant, fit, repeat, defaults_only
                )
            )
        return drafts

    def _expand_combo(
        self,
        raw: RawJob,
        label: str,
        explicit_id: Any,
        fields: dict[str, Any],
        variant: str,
        fit: str | None,
        repeat: int,
        defaults_only: set[str],
    ) -> list[Draft]:
        model_id = fields.pop("model", None) or self.data.get("model")
        if not isinstance(model_id, str) or not model_id:
            self._problem(
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
            _drop_shadowed_defaults(model, fields, defaults_only)
        globbed = [
            name for name, value in fields.items() if is_glob(value) and _is_image_name(model, name)
        ]
        if len(globbed) > 1:
            self._problem(
                "only one field per job may be a glob pattern",
                raw.line,
                job=label,
                field=globbed[1],
                file=raw.file,
            )
            return []
        expansions: list[tuple[str | None, dict[str, Any]]] = [(None, fields)]
        if globbed:
            name = globbed[0]
            matches = sorted(glob.glob(str(self.base_dir / fields[name]), recursive=True))
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                file, line = self._origin(raw, name)
                self._problem(
                    f"the pattern {show_value(fields[name], SHOWN_NAME_CHARS)} matches no file "
                    f"(relative to {self.base_dir.name}/)",
                    line,
                    job=label,
                    field=name,
                    file=file,
                )
                return []
            expansions = [(Path(m).stem, {**fields, name: m}) for m in matches]
        drafts = []
        for stem, concrete in expansions:
            native = self._native(raw, label, model, concrete, fit)
            if native is None:
                continue
            seed = native.payload.get(model.native_name("seed") or "seed") if model else None
            base_stem = stem or image_stem(concrete)
            for replicate in range(repeat):
                key = job_key(
                    model_id,
                    with_images(native.payload, native.images, ImageRef.keyed),
                    replicate=replicate,
                    image_fit=fit,
                )
                drafts.append(
                    Draft(
                        raw=raw,
                        explicit_id=None if explicit_id is None else str(explicit_id),
                        stem=base_stem if explicit_id is None or stem else None,
                        variant=variant + (f"_r{replicate + 1}" if repeat > 1 else ""),
                        model=model,
                        model_id=model_id,
                        native=native,
                        replicate=replicate,
                        image_fit=fit,
                        key=key,
                        label=label,
                        seed=seed,
                    )
                )
        return drafts

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
            ref = self.resolver.resolve(
                written, values[0], spec, fit, confined=self._from_data_file(raw, written)
            )
            if isinstance(ref, FieldError):
                errors.append(ref)
            else:
                native.images[name] = ref
        for error in errors:
            name = error.field.split("[")[0]
            file, line = self._origin(raw, name)
            self._problem(
                error.message,
                line,
                job=self._job_of(raw, name, label),
                field=error.field,
                model=model_label,
                hint=error.hint,
                file=file,
            )
        return None if errors else native

    def _defaults_only(self, raw: RawJob) -> set[str]:
        """Names whose value comes from ``defaults:`` alone (not the job, not the matrix)."""
        return {
            str(name)
            for name in self._defaults
            if name not in raw.fields and name not in self._matrix_lines
        }

    def _from_data_file(self, raw: RawJob, name: str) -> bool:
        """Whether a field's value was written in a jobs_from file (not the manifest)."""
        return raw.file != self.file and name in raw.fields

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
        file, line = self._origin(raw, "model")
        reason = self.catalog.unknown_reason(model_id)
        if not self.allow_unknown_model:
            self.problems.append(
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

    # -- whole-batch pieces -------------------------------------------------------------------

    def _problem(
        self,
        message: str,
        line: int | None,
        *,
        job: str | None = None,
        field: str | None = None,
        model: str | None = None,
        hint: str | None = None,
        file: str | None = None,
    ) -> None:
        self.problems.append(
            Problem(
                message,
                file=file or self.file,
                line=line,
                job=job,
                field=field,
                model=model,
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


def _line(mapping: Any, key: Any) -> int | None:
    return mapping.line_of(key) if isinstance(mapping, LocatedDict | LocatedList) else None


def _hashable(value: Any) -> Any:
    """A key that tells matrix values apart: lists and mappings by their full ``repr``.

    Written out in full on purpose (two values may differ only deep inside), which is
    affordable because the loader bounds what a manifest expands to (its aliases included:
    see :mod:`orchestrator.manifest.yamlbounds`), and is never shown to the user.
    """
    return repr(value) if isinstance(value, dict | list) else (type(value).__name__, value)
