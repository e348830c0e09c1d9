"""The manifest's top-level vocabulary and its batch-wide settings.

Jobs are expanded in :mod:`orchestrator.manifest.expand`; this module checks everything
else (``batch``, ``output``, ``limits``, ``retry`` ...) and reports each mistake with its
line and, for a misspelt key, the closest known one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.manifest.model import (
    DEFAULT_OUTPUT_DIR,
    DEFAULT_PATTERN,
    IMAGE_FIT_MODES,
    BatchSettings,
    Limits,
    OutputSpec,
    RetryPolicy,
)
from orchestrator.manifest.yamlsafe import LocatedDict
from orchestrator.outputs.paths import (
    PATTERN_FIELDS,
    OutputPathError,
    pattern_fields,
    render_output_path,
)
from orchestrator.problems import Problem, did_you_mean, show_value

if TYPE_CHECKING:
    from collections.abc import Mapping

TOP_LEVEL_KEYS = (
    "batch",
    "description",
    "model",
    "defaults",
    "jobs",
    "jobs_from",
    "matrix",
    "output",
    "limits",
    "retry",
    "image_fit",
    "repeat",
)
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Reader:
    """Collects problems while reading typed values out of a located mapping."""

    file: str
    problems: list[Problem]

    def problem(
        self,
        message: str,
        line: int | None,
        *,
        field: str | None = None,
        hint: str | None = None,
        job: str | None = None,
        model: str | None = None,
        file: str | None = None,
    ) -> None:
        """Add a problem, in this reader's file unless ``file`` names another one."""
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

    def unknown_keys(
        self, mapping: Mapping[Any, Any], allowed: tuple[str, ...], where: str, prefix: str = ""
    ) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(
                    f"unknown key {show_value(key)} in {where}; known keys: {', '.join(allowed)}",
                    _line(mapping, key),
                    field=f"{prefix}{key}",
                    hint=did_you_mean(str(key), allowed),
                )

    def number(
        self,
        mapping: Mapping[Any, Any],
        key: str,
        default: float | None,
        *,
        minimum: float,
        integer: bool,
        prefix: str,
    ) -> Any:
        if key not in mapping or mapping[key] is None:
            return default
        value = mapping[key]
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or value < minimum:
            kind = "a whole number" if integer else "a number"
            self.problem(
                f"must be {kind} >= {minimum:g}, got {show_value(value)}",
                _line(mapping, key),
                field=f"{prefix}{key}",
            )
            return default
        return value


def _line(mapping: Mapping[Any, Any], key: Any) -> int | None:
    if isinstance(mapping, LocatedDict):
        return mapping.line_of(key)
    return None


def read_settings(data: LocatedDict, file: str, reader: Reader) -> BatchSettings:
    """Check the top-level keys and read the batch-wide settings."""
    reader.unknown_keys(data, TOP_LEVEL_KEYS, "the manifest")
    batch = data.get("batch")
    if batch is None:
        reader.problem(
            "the manifest needs a 'batch' name ([A-Za-z0-9._-]+)", data.line, field="batch"
        )
        batch = "batch"
    elif not isinstance(batch, str) or not BATCH_NAME.match(batch):
        reader.problem(
            f"batch name {show_value(batch)} is not allowed: use letters, digits, '.', '_' "
            "and '-' "
            "(up to 100, starting with a letter or digit)",
            data.line_of("batch"),
            field="batch",
        )
        batch = "batch"
    return BatchSettings(
        batch=batch,
        manifest_path=file,
        output=_read_output(data, reader),
        limits=_read_limits(data, reader),
        retry=_read_retry(data, reader),
    )


def _section(data: LocatedDict, key: str, reader: Reader) -> Mapping[Any, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        reader.problem(f"'{key}' must be a mapping", data.line_of(key), field=key)
        return {}
    return value


def _read_output(data: LocatedDict, reader: Reader) -> OutputSpec:
    section = _section(data, "output", reader)
    reader.unknown_keys(section, ("dir", "pattern"), "'output'", "output.")
    out_dir = section.get("dir", DEFAULT_OUTPUT_DIR)
    if not isinstance(out_dir, str) or not out_dir.strip():
        reader.problem("must be a folder path", _line(section, "dir"), field="output.dir")
        out_dir = DEFAULT_OUTPUT_DIR
    pattern = section.get("pattern", DEFAULT_PATTERN)
    if not isinstance(pattern, str) or not pattern.strip():
        reader.problem("must be a path pattern", _line(section, "pattern"), field="output.pattern")
        pattern = DEFAULT_PATTERN
    else:
        try:
            used = pattern_fields(pattern)
            # Its fixed parts ('..', an absolute start ...) would break every job's path: say
            # so once, at the pattern's line.
            render_output_path(pattern, {name: name for name in PATTERN_FIELDS})
        except OutputPathError as exc:
            reader.problem(str(exc), _line(section, "pattern"), field="output.pattern")
            pattern = DEFAULT_PATTERN
        else:
            if not {"id", "job", "key"} & set(used):
                reader.problem(
                    "pattern must contain {id}, {job} or {key} so every job gets its own file",
                    _line(section, "pattern"),
                    field="output.pattern",
                )
                pattern = DEFAULT_PATTERN
    return OutputSpec(dir=out_dir, pattern=pattern)


def _read_limits(data: LocatedDict, reader: Reader) -> Limits:
    section = _section(data, "limits", reader)
    keys = (
        "max_in_flight",
        "max_in_flight_per_model",
        "submits_per_second",
        "max_downloads",
        "max_spend",
    )
    reader.unknown_keys(section, keys, "'limits'", "limits.")
    base = Limits()
    return Limits(
        max_in_flight=reader.number(
            section, "max_in_flight", base.max_in_flight, minimum=1, integer=True, prefix="limits."
        ),
        max_in_flight_per_model=reader.number(
            section, "max_in_flight_per_model", None, minimum=1, integer=True, prefix="limits."
        ),
        submits_per_second=reader.number(
            section, "submits_per_second", None, minimum=0.001, integer=False, prefix="limits."
        ),
        max_downloads=reader.number(
            section, "max_downloads", base.max_downloads, minimum=1, integer=True, prefix="limits."
        ),
        max_spend=reader.number(
            section, "max_spend", None, minimum=0, integer=False, prefix="limits."
        ),
    )


def _read_retry(data: LocatedDict, reader: Reader) -> RetryPolicy:
    section = _section(data, "retry", reader)
    reader.unknown_keys(section, ("max_attempts", "base_delay", "max_delay"), "'retry'", "retry.")
    base = RetryPolicy()
    return RetryPolicy(
        max_attempts=reader.number(
            section, "max_attempts", base.max_attempts, minimum=1, integer=True, prefix="retry."
        ),
        base_delay=reader.number(
            section, "base_delay", base.base_delay, minimum=0, integer=False, prefix="retry."
        ),
        max_delay=reader.number(
            section, "max_delay", base.max_delay, minimum=0, integer=False, prefix="retry."
        ),
    )


def check_image_fit(
    value: Any, line: int | None, reader: Reader, field: str, job: str | None = None
) -> str | None:
    """``image_fit`` must be one of the modes (or absent / ``none``)."""
    if value is None or value == "none":
        return None
    if value not in IMAGE_FIT_MODES:
        reader.problem(
            f"{show_value(value)} is not an image_fit mode; allowed: none, "
            f"{', '.join(IMAGE_FIT_MODES)}",
            line,
            field=field,
            job=job,
        )
        return None
    return str(value)
