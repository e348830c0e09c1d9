"""Manifest -> concrete jobs: defaults, matrix, image globs, repeats, ids, keys, paths.

:func:`load_manifest` reads a manifest file (:func:`expand_manifest` takes its content as a
mapping) and returns an :class:`Expansion` or raises
:class:`~orchestrator.problems.InputError` with every problem found. Each combination of a
job's fields becomes drafts in :mod:`orchestrator.manifest.drafts`. Nothing here talks to
the API or the store; it only reads the manifest, the files it names and the images.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.catalog import Catalog, PriceTable, builtin_catalog
from orchestrator.manifest.drafts import Combination, DraftMaker, Origins, line_in
from orchestrator.manifest.inputs import ImageResolver
from orchestrator.manifest.naming import Draft, axis_label, build_jobs
from orchestrator.manifest.settings import Reader, check_image_fit, read_settings
from orchestrator.manifest.sources import RawJob, inline_jobs, jobs_from_files
from orchestrator.manifest.yamlsafe import LocatedDict, load_yaml, located, read_manifest
from orchestrator.outputs.paths import SAFE_NAME
from orchestrator.problems import SHOWN_NAME_CHARS, InputError, Problem, show_value

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from orchestrator.manifest.model import BatchSettings, JobSpec
    from orchestrator.media import ImageInfo


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
    return _expand_data(
        data,
        file=shown,
        base_dir=manifest.resolve().parent,
        manifest_path=shown,
        catalog=catalog,
        prices=prices,
        probe_url=probe_url,
        allow_unknown_model=allow_unknown_model,
    )


def expand_manifest(
    data: Mapping[str, Any],
    *,
    source: str = "<dict>",
    base_dir: str | Path = ".",
    catalog: Catalog | None = None,
    prices: PriceTable | None = None,
    probe_url: Callable[[str], ImageInfo] | None = None,
    allow_unknown_model: bool = False,
) -> Expansion:
    """Check and expand a manifest given as a mapping (what a manifest file holds).

    Relative image paths, ``jobs_from`` files and ``output.dir`` are read from
    ``base_dir``; problems name ``source`` as their file (and no line: nothing was read
    from a file). Raises :class:`InputError` like :func:`load_manifest`.

    >>> expand_manifest({"batch": "b", "jobs": []}, source="<mine>")
    Traceback (most recent call last):
    ...
    orchestrator.problems.InputError: <mine>: the manifest has no jobs: add 'jobs:' or 'jobs_from:'
    """
    base = Path(base_dir).resolve()
    return _expand_data(
        located(data, source),
        file=source,
        base_dir=base,
        # output.dir is relative to the manifest's folder: here, base_dir.
        manifest_path=str(base / source),
        catalog=catalog,
        prices=prices,
        probe_url=probe_url,
        allow_unknown_model=allow_unknown_model,
    )


def _expand_data(
    data: Any,
    *,
    file: str,
    base_dir: Path,
    manifest_path: str,
    catalog: Catalog | None,
    prices: PriceTable | None,
    probe_url: Callable[[str], ImageInfo] | None,
    allow_unknown_model: bool,
) -> Expansion:
    if not isinstance(data, LocatedDict):
        raise InputError(
            [Problem("a manifest is a YAML mapping (batch:, model:, jobs: ...)", file=file)]
        )
    expander = _Expander(
        data=data,
        file=file,
        base_dir=base_dir,
        catalog=catalog or builtin_catalog(),
        prices=prices or PriceTable(),
        resolver=ImageResolver(base_dir=base_dir, probe_url=probe_url),
        allow_unknown_model=allow_unknown_model,
    )
    expansion = expander.run()
    if manifest_path != file:
        expansion.settings = replace(expansion.settings, manifest_path=manifest_path)
    return expansion


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
    _explicit_ids: dict[str, RawJob] = field(default_factory=dict)
    _labels: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reader = Reader(self.file, self.problems)
        self.origins = Origins(self.file, self.data)
        self.maker = DraftMaker(
            origins=self.origins,
            catalog=self.catalog,
            resolver=self.resolver,
            base_dir=self.base_dir,
            reader=self.reader,
            warnings=self.warnings,
            allow_unknown_model=self.allow_unknown_model,
        )

    def run(self) -> Expansion:
        reader = self.reader
        settings = read_settings(self.data, self.file, reader)
        defaults = self.origins.defaults = self._mapping("defaults")
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
        jobs = build_jobs(drafts, settings, self.prices, self.reader.problem)
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
            self.reader.problem(f"'{key}' must be a mapping", self.data.line_of(key), field=key)
            return {}
        for name in value:
            if not isinstance(name, str):
                self.reader.problem(
                    f"a field name must be text, got {show_value(name)}",
                    line_in(value, name),
                    field=key,
                    hint="quote it",
                )
                return {}
        for meta in ("id",):
            if meta in value:
                self.reader.problem(
                    f"'{meta}' cannot be a default; ids are per job",
                    line_in(value, meta),
                    field=f"{key}.{meta}",
                )
        return value

    def _matrix(self) -> list[tuple[str, list[Any]]]:
        value = self.data.get("matrix")
        if value is None:
            return []
        if not isinstance(value, dict):
            self.reader.problem(
                "'matrix' must map field names to lists of values",
                self.data.line_of("matrix"),
                field="matrix",
            )
            return []
        axes = []
        for axis, values in value.items():
            line = line_in(value, axis)
            if axis in ("id", "repeat"):
                self.reader.problem(
                    f"'{axis}' cannot be a matrix axis", line, field=f"matrix.{axis}"
                )
            elif not isinstance(values, list) or not values:
                self.reader.problem(
                    "a matrix axis needs a non-empty list", line, field=f"matrix.{axis}"
                )
            elif len({_hashable(v) for v in values}) != len(values):
                self.reader.problem(
                    "a matrix axis lists a value twice", line, field=f"matrix.{axis}"
                )
            else:
                axes.append((str(axis), list(values)))
                self.origins.matrix_lines[str(axis)] = line
                self._labels[str(axis)] = [self._axis_label(str(axis), v, values) for v in values]
        return axes

    def _axis_label(self, axis: str, value: Any, values: list[Any]) -> str:
        model = self.catalog.get(value) if axis == "model" and isinstance(value, str) else None
        return axis_label(axis, value, values, slug=model.slug if model else None)

    def _repeat(
        self, value: Any, line: int | None, job: str | None, file: str | None = None
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.reader.problem(
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
            self.reader.problem(
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
                self.reader.problem(
                    f"duplicate job id {show_value(label, SHOWN_NAME_CHARS)} "
                    f"(first used at {first.file}:{first.line})",
                    raw.line_of("id"),
                    job=label,
                    field="id",
                    file=raw.file,
                )
        for axis, _values in matrix:
            if axis in raw.fields:
                self.reader.problem(
                    f"'{axis}' is also a matrix axis; set it in one place only",
                    raw.line_of(axis),
                    job=label,
                    field=axis,
                    file=raw.file,
                )
                return []
        merged = {**defaults, **raw.fields}
        merged.pop("id", None)
        fit_file, fit_line = self.origins.origin(raw, "image_fit")
        fit = check_image_fit(
            merged.pop("image_fit", top_fit),
            fit_line,
            Reader(fit_file, self.problems),
            "image_fit",
            job=self.origins.job_of(raw, "image_fit", label),
        )
        repeat_file, repeat_line = self.origins.origin(raw, "repeat")
        repeat = self._repeat(
            merged.pop("repeat", top_repeat),
            repeat_line,
            self.origins.job_of(raw, "repeat", label),
            repeat_file,
        )
        drafts: list[Draft] = []
        defaults_only = self.origins.defaults_only(raw)
        positions = itertools.product(*(range(len(values)) for _axis, values in matrix))
        for combo in positions:
            fields = dict(merged)
            variant = ""
            for (axis, values), index in zip(matrix, combo, strict=True):
                fields[axis] = values[index]
                variant += f"_{axis}-{self._labels[axis][index]}"
            drafts.extend(
                self.maker.drafts(
                    Combination(
                        raw, label, explicit_id, fields, variant, fit, repeat, defaults_only
                    )
                )
            )
        return drafts


def _hashable(value: Any) -> Any:
    """A key that tells matrix values apart: lists and mappings by their full ``repr``.

    Written out in full on purpose (two values may differ only deep inside), which is
    affordable because the loader bounds what a manifest expands to (its aliases included:
    see :mod:`orchestrator.manifest.yamlbounds`), and is never shown to the user.
    """
    return repr(value) if isinstance(value, dict | list) else (type(value).__name__, value)
