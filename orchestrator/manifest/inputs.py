"""One job's fields -> the model's native payload, with its images resolved and checked.

Universal names (``prompt``, ``image``, ``duration`` ...) are mapped through the model's
catalog entry; native names pass through. Every value is checked against the schema and
every local image is probed and checked against the field's rules, so a job that reaches
the store is one the API should accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from orchestrator.catalog import UNIVERSAL_NAMES, FieldSpec, ModelSpec, validate_payload
from orchestrator.inputfiles import (
    FileRefused,
    FileTooBig,
    NotRegular,
    check_regular,
    read_bounded,
)
from orchestrator.manifest.model import ImageRef
from orchestrator.manifest.yamlbounds import MAX_NUMBER_DIGITS
from orchestrator.media import (
    CannotFit,
    FitMode,
    ImageError,
    ImageInfo,
    ImageRule,
    check_image,
    plan_fit,
    probe_bytes,
)
from orchestrator.media.encode import MAX_IMAGE_FILE_BYTES
from orchestrator.problems import SHOWN_NAME_CHARS, clipped, did_you_mean, show_value

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from orchestrator.catalog.validate import FieldMemo

INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
BOOLEAN_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
GLOB_CHARS = re.compile(r"[*?\[]")
#: Field names treated as images for models without a schema.
UNKNOWN_MODEL_IMAGE = re.compile(r"(^|_)(image|last_image)$|image_urls?$|Image$")


@dataclass(frozen=True, slots=True)
class FieldError:
    """A problem with one field of one job (the caller adds file, line and job)."""

    field: str
    message: str
    hint: str | None = None


@dataclass
class NativeJob:
    """A job's payload in the model's own field names, images still as references."""

    payload: dict[str, Any] = field(default_factory=dict)
    images: dict[str, ImageRef] = field(default_factory=dict)
    #: native field -> the name the user wrote (for error messages)
    written: dict[str, str] = field(default_factory=dict)


def from_text(spec: FieldSpec | None, value: Any) -> Any:
    """Convert a CSV cell to the field's type when it clearly is one; else keep the text."""
    if spec is None or not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) > MAX_NUMBER_DIGITS:
        return value  # no number: Python would refuse to read 4,300 digits, and none is sane
    if spec.type == "integer" and INTEGER_TEXT.match(text):
        return int(text)
    if spec.type == "number" and NUMBER_TEXT.match(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    if spec.type == "boolean" and text.lower() in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[text.lower()]
    return value


def to_native(
    model: ModelSpec,
    fields: Mapping[str, Any],
    *,
    text_values: bool,
    memo: FieldMemo | None = None,
) -> tuple[NativeJob, list[FieldError]]:
    """Map universal names to native fields and check values against the schema."""
    job = NativeJob()
    errors: list[FieldError] = []
    for name, value in fields.items():
        alias = model.aliases.get(name)
        if name in model.fields and (alias is None or alias.field != name):
            alias = None  # a native name that is another field's universal alias
        target = alias.field if alias else (name if name in model.fields else None)
        if target is None:
            if name in UNIVERSAL_NAMES:
                message = (
                    f"this model has no {show_value(name)} input; it takes: {model.inputs_text()}"
                )
                errors.append(FieldError(name, message))
            else:
                errors.append(
                    FieldError(
                        name,
                        f"is not an input of this model; it takes: {model.inputs_text()}",
                        did_you_mean(name, model.input_names()),
                    )
                )
            continue
        if target in job.payload:
            errors.append(
                FieldError(
                    name,
                    f"sets the same input as {show_value(job.written[target])} "
                    f"(native field {target!r}); "
                    "keep one of them",
                )
            )
            continue
        spec = model.fields[target]
        if text_values and not spec.is_image:
            value = from_text(spec, value)
        if alias is not None:
            if alias.values is not None and not isinstance(value, str | int | float):
                # A value table maps words and numbers; a list or mapping is never in it
                # (and translate() would render it whole, for every job it reaches).
                ok, native_value = False, value
            else:
                ok, native_value = alias.translate(value)
            if not ok and alias.values is not None:
                native_enum = model.fields[target].enum or tuple(alias.values.values())
                errors.append(
                    FieldError(
                        name,
                        f"{show_value(value)} is not available for this model; allowed: "
                        + ", ".join(alias.values),
                        f"or the native {target!r} values: "
                        + ", ".join(str(v) for v in native_enum),
                    )
                )
                continue
            value = native_value
            if alias.wrap_list and not isinstance(value, list):
                value = [value]
        job.payload[target] = value
        job.written[target] = name
    for issue in validate_payload(model, job.payload, images_ok=True, memo=memo):
        shown = job.written.get(issue.field, issue.field)
        if issue.message == "required by this model":
            universal = model.universal_name(issue.field)
            shown = universal or issue.field
            also = (
                f" (native name {issue.field!r})" if universal and universal != issue.field else ""
            )
            errors.append(FieldError(shown, f"is required by this model{also}"))
            continue
        if shown == issue.field or issue.field not in model.fields:
            errors.append(FieldError(shown, issue.message, issue.hint))
        else:
            errors.append(FieldError(shown, issue.message + f" (as {issue.field!r})", issue.hint))
    return job, errors


def image_values(value: Any) -> list[Any]:
    """The image references a field holds (a list field holds several)."""
    return list(value) if isinstance(value, list) else [value]


@dataclass
class ImageResolver:
    """Turns image values into checked :class:`ImageRef` objects, one probe per file.

    A local image must be a regular file (a named pipe would block forever, a device never
    end) of at most :data:`MAX_IMAGE_FILE_BYTES`, or of at most the field's file-size rule
    when no ``image_fit`` may shrink it: a bigger file is refused without being read.
    """

    base_dir: Path
    probe_url: Callable[[str], ImageInfo] | None = None
    #: Probes by (path, mtime, size, inode): a file used by many jobs is read once.
    _probed: dict[tuple[str, int, int, int], ImageInfo] = field(default_factory=dict)
    _refs: dict[tuple[str, tuple[ImageRule, ...], str | None], ImageRef | FieldError] = field(
        default_factory=dict
    )

    def resolve(
        self,
        written: str,
        value: Any,
        spec: FieldSpec | None,
        fit: str | None,
        *,
        confined: bool = False,
    ) -> ImageRef | FieldError:
        """A checked reference, or the problem that keeps it from being sent.

        ``confined``: the value came from a data file (a ``jobs_from`` CSV/JSONL row), which
        may hold anyone's text: a local path must stay inside the manifest's folder, so a
        row cannot make the tool read and upload an arbitrary file.
        """
        if not isinstance(value, str) or not value.strip():
            return FieldError(
                written, f"needs an image file path or https URL, got {show_value(value)}"
            )
        if confined and "://" not in value and not value.lower().startswith("data:"):
            inside = (self.base_dir / value).resolve().is_relative_to(self.base_dir.resolve())
            if not inside:
                return FieldError(
                    written,
                    f"image path {show_value(value)} leaves the manifest's folder",
                    "paths in jobs_from rows must name files inside the manifest's folder",
                )
        # Keyed by the rules themselves: two models' fields may share a name, not their rules.
        cache_key = (value, spec.rules if spec else (), fit)
        cached = self._refs.get(cache_key)
        if cached is None:
            cached = self._resolve(written, value, spec, fit)
            self._refs[cache_key] = cached
        if isinstance(cached, FieldError) and cached.field != written:
            return FieldError(written, cached.message, cached.hint)
        return cached

    def _resolve(
        self, written: str, value: str, spec: FieldSpec | None, fit: str | None
    ) -> ImageRef | FieldError:
        lowered = value.lower()
        if lowered.startswith("data:"):
            return FieldError(
                written,
                "inline data: URIs are not accepted in a manifest",
                "save the image to a file and give its path; it is encoded at submit time",
            )
        if lowered.startswith("http://"):
            return FieldError(written, "image URLs must use https (RunComfy fetches them)")
        if lowered.startswith("https://"):
            if self.probe_url is None:
                return ImageRef(url=value)
            try:
                info = self.probe_url(value)
            except ImageError as exc:
                return FieldError(
                    written, f"image URL {clipped(value, SHOWN_NAME_CHARS)}: {exc.reason}"
                )
            problem = self._check(written, info, spec, fit)
            return problem or ImageRef(
                url=value,
                sha256=info.sha256,
                width=info.width,
                height=info.height,
                size_bytes=info.size_bytes,
                format=info.format,
            )
        if "://" in value:
            return FieldError(
                written, f"unsupported image URL scheme in {show_value(value)}; use https"
            )
        path = (self.base_dir / value).resolve()
        probed = self._probe(written, value, path, spec, fit)
        if isinstance(probed, FieldError):
            return probed
        info = probed
        problem = self._check(written, info, spec, fit)
        return problem or ImageRef(
            path=str(path),
            sha256=info.sha256,
            width=info.width,
            height=info.height,
            size_bytes=info.size_bytes,
            format=info.format,
        )

    def _probe(
        self, written: str, value: str, path: Path, spec: FieldSpec | None, fit: str | None
    ) -> ImageInfo | FieldError:
        """Read and probe a local image within its size cap (see the class docstring)."""
        rule_cap = spec.limits.max_bytes if spec is not None and fit is None else None
        cap = MAX_IMAGE_FILE_BYTES if rule_cap is None else min(rule_cap, MAX_IMAGE_FILE_BYTES)
        name = clipped(value, SHOWN_NAME_CHARS)
        try:
            st = check_regular(path, MAX_IMAGE_FILE_BYTES)
            if st.st_size > cap and spec is not None and cap == rule_cap:
                return self._too_big_for_rules(written, path, st.st_size, spec)
            key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
            info = self._probed.get(key)
            if info is None:
                info = self._probed[key] = probe_bytes(read_bounded(path, cap), str(path))
        except FileTooBig as exc:
            return FieldError(written, f"image {name}: {exc.reason}", "make the file smaller")
        except NotRegular as exc:
            return FieldError(
                written, f"image {name}: {exc.reason}", "an image path must name a regular file"
            )
        except (FileRefused, ImageError) as exc:
            return FieldError(written, f"image {name}: {exc.reason}")
        return info

    @staticmethod
    def _too_big_for_rules(written: str, path: Path, size: int, spec: FieldSpec) -> FieldError:
        """The file-size rules a file breaks, said without reading it."""
        broken = [r for r in spec.rules if r.measure == "file_size_mb" and not r.holds(1, 1, size)]
        reasons = "; ".join(dict.fromkeys(rule.message for rule in broken))
        rules = ", ".join(rule.text for rule in broken)
        return FieldError(
            written,
            f"image {path.name} ({size / 1_000_000:.2f} MB) breaks the model's rules: {reasons}",
            f"rules {rules}; set image_fit: resize, pad or crop to adapt it",
        )

    def _check(
        self, written: str, info: ImageInfo, spec: FieldSpec | None, fit: str | None
    ) -> FieldError | None:
        if spec is None or not spec.rules:
            return None
        size = f"{info.width}x{info.height}, {info.size_bytes / 1_000_000:.2f} MB"
        if fit is not None:
            try:
                mode = cast("FitMode", fit)  # checked against IMAGE_FIT_MODES by the manifest
                plan_fit(info.width, info.height, spec.limits, mode, rules=spec.rules)
            except CannotFit as exc:
                return FieldError(written, f"image {Path(info.path).name} ({size}): {exc.reason}")
            return None
        broken = check_image(info, spec.rules)
        if not broken:
            return None
        reasons = "; ".join(dict.fromkeys(rule.message for rule in broken))
        rules = ", ".join(rule.text for rule in broken)
        return FieldError(
            written,
            f"image {Path(info.path).name} ({size}) breaks the model's rules: {reasons}",
            f"rules {rules}; set image_fit: resize, pad or crop to adapt it",
        )


def is_glob(value: Any) -> bool:
    """Whether an image value is a local glob pattern (``frames/*.png``)."""
    return isinstance(value, str) and "://" not in value and bool(GLOB_CHARS.search(value))
