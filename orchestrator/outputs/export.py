"""Export a batch's finished videos as a dataset: one row per succeeded job.

Formats (:func:`export_batch`):

- ``jsonl``: one JSON object per line (default ``<output_root>/<batch>/export.jsonl``).
- ``csv``: a header and one line per row, columns in a stable order; nested values
  (``timings``) and non-text values are JSON-encoded, missing values are empty cells, and
  text that a spreadsheet would run as a formula is prefixed with ``'``
  (default ``<output_root>/<batch>/export.csv``).
- ``hf``: a Hugging Face ``videofolder`` (default ``<output_root>/<batch>-hf``): the videos
  (hard links when possible, else copies) and ``metadata.jsonl`` whose ``file_name`` is each
  video's path inside the folder. Exporting again into the same folder updates it in place.
  ``datasets`` infers splits from names holding ``train``/``test``/``validation``, so keep
  those words out of job ids when a single split is wanted.

Every row holds the job (``id``, ``key``, ``batch``, ``model``), its inputs under universal
names where the model has them (``prompt``, ``image_path``/``image_sha256``,
``last_image_*``, ``duration`` in seconds, ``resolution``, ``ratio`` as sent, ``seed``), any
other native input, then ``request_id``, ``attempts``, ``video_path`` (relative to the
batch's output root, or to the folder for ``hf``), ``video_abspath``, what the probe found
(``duration_s``, ``fps``, ``width``, ``height``, ``frames``, ``codec``), ``size_bytes``,
``sha256``, ``cost_usd``, ``timings`` and ``sidecar``: False when the video's JSON sidecar
was missing and the store's columns were used instead (probe fields then stay empty).
Files are written atomically (:mod:`~orchestrator.outputs.atomicwrite`); ``hf`` never writes
outside its folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.catalog import Catalog, ModelSpec, builtin_catalog
from orchestrator.outputs.atomicwrite import atomic_path, write_atomically
from orchestrator.outputs.paths import check_relative, resolve_inside
from orchestrator.outputs.sidecar import sidecar_path
from orchestrator.redact import redact_value
from orchestrator.store.states import JobState

if TYPE_CHECKING:
    from orchestrator.store.records import JobView
    from orchestrator.store.store import Store

ExportFormat = Literal["jsonl", "csv", "hf"]
HEAD = (
    *("id", "key", "batch", "model", "prompt", "image_path", "image_sha256"),
    *("last_image_path", "last_image_sha256", "duration", "resolution", "ratio", "seed"),
)
"""The first columns, in this order; other native inputs follow (sorted), then TAIL."""
TAIL = (
    *("request_id", "attempts", "video_path", "video_abspath", "duration_s", "fps"),
    *("width", "height", "frames", "codec", "size_bytes", "sha256", "cost_usd"),
    *("timings", "sidecar"),
)
_PROBE = ("duration_s", "fps", "width", "height", "frames", "codec")
_IMAGES = ("image", "last_image")
METADATA = "metadata.jsonl"


class ExportError(ValueError):
    """An export that cannot be made (unknown batch, unsafe destination)."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Where the export went, how many rows it holds and the jobs left out (``id: why``)."""

    path: Path
    rows: int
    skipped: list[str] = field(default_factory=list)


def export_batch(
    store: Store,
    batch: str,
    fmt: ExportFormat,
    dest: Path | None = None,
    catalog: Catalog | None = None,
) -> ExportResult:
    """Export the succeeded jobs of ``batch`` as ``fmt`` to ``dest`` (or the default)."""
    view = store.batch(batch)
    if view is None:
        raise ExportError(f"unknown batch {batch!r}")
    if fmt not in ("jsonl", "csv", "hf"):
        raise ExportError(f"unknown export format {fmt!r}: use jsonl, csv or hf")
    root = Path(view.output_root)
    rows, sources, skipped = collect_rows(
        store, batch, root, builtin_catalog() if catalog is None else catalog
    )
    rows = [redact_value(row) for row in rows]  # the redaction policy, at this sink too
    if fmt == "hf":
        folder = (dest or root / f"{batch}-hf").resolve()
        _write_videofolder(folder, rows, sources)
        return ExportResult(folder, len(rows), skipped)
    path = (dest or root / batch / f"export.{fmt}").resolve()
    columns = _columns(rows)
    rows = [{c: row.get(c) for c in columns} for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, _jsonl(rows) if fmt == "jsonl" else _csv(rows, columns))
    return ExportResult(path, len(rows), skipped)


def collect_rows(
    store: Store, batch: str, root: Path, catalog: Catalog
) -> tuple[list[dict[str, Any]], list[Path], list[str]]:
    """The rows of the succeeded jobs, their video files, and ``id: reason`` for the rest."""
    payloads = store.payloads(batch)
    rows: list[dict[str, Any]] = []
    sources: list[Path] = []
    skipped: list[str] = []
    for job in store.list_jobs(batch=batch):
        if job.state is not JobState.SUCCEEDED:
            skipped.append(f"{job.id}: {job.state.value}")
            continue
        video = resolve_inside(root, job.output_path)
        if not video.is_file():
            skipped.append(f"{job.id}: video file missing ({video})")
            continue
        payload = json.loads(payloads[job.row_id])
        row = {"id": job.id, "key": job.key, "batch": job.batch, "model": job.model}
        row.update(flatten_inputs(payload, catalog.get(job.model)))
        row.update(_result(job, _read_sidecar(video, job.key)))
        row.update(video_path=job.output_path, video_abspath=str(video))
        rows.append(row)
        sources.append(video)
    return rows, sources, skipped


def flatten_inputs(payload: Mapping[str, Any], spec: ModelSpec | None) -> dict[str, Any]:
    """A native payload as columns: universal names where the model has them.

    >>> from orchestrator.catalog import builtin_catalog
    >>> spec = builtin_catalog().get("bytedance/dreamina-3-0/pro/image-to-video")
    >>> marker = {"$image": {"path": "/in/a.jpg", "sha256": "ab"}}
    >>> flatten_inputs({"prompt": "hi", "frames": 241, "image_urls": [marker]}, spec)
    {'duration': 10.0, 'image_path': '/in/a.jpg', 'image_sha256': 'ab', 'prompt': 'hi'}
    """
    out: dict[str, Any] = {}
    for native, value in sorted(payload.items()):
        universal = spec.universal_name(native) if spec else None
        if universal is None and spec is None and native in ("prompt", "seed"):
            universal = native
        if universal in _IMAGES:
            path, digest = _image(value)
            out[f"{universal}_path"], out[f"{universal}_sha256"] = path, digest
        elif universal == "duration" and spec is not None:
            out["duration"] = spec.duration_seconds(payload)
        elif universal is not None:
            out[universal] = value
        else:
            out[f"input_{native}" if native in HEAD + TAIL else native] = _plain(value)
    return out


def _image(value: Any) -> tuple[str | None, str | None]:
    """(path or URL, sha256) of an image input: a marker, a URL, or a list of one."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, Mapping) and isinstance(value.get("$image"), Mapping):
        return value["$image"].get("path"), value["$image"].get("sha256")
    return (value, None) if isinstance(value, str) else (None, None)


def _plain(value: Any) -> Any:
    """A value with image markers replaced by their path."""
    if isinstance(value, Mapping):
        if isinstance(value.get("$image"), Mapping):
            return value["$image"].get("path")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read_sidecar(video: Path, key: str) -> dict[str, Any] | None:
    """The sidecar beside ``video`` if it is readable and describes this job."""
    try:
        document = json.loads(sidecar_path(video).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or (document.get("job") or {}).get("key") != key:
        return None
    return document


def _result(job: JobView, sidecar: Mapping[str, Any] | None) -> dict[str, Any]:
    """The result columns, from the sidecar or else from the store's columns."""
    out: dict[str, Any] = {"request_id": job.request_id, "attempts": job.attempts}
    out.update(dict.fromkeys(_PROBE), size_bytes=job.size_bytes, sha256=job.sha256)
    out.update(cost_usd=job.cost, sidecar=sidecar is not None)
    stamps = {
        "queued": job.created_at,
        "submitted": job.submitted_at,
        "started": job.started_at,
        "finished": job.finished_at,
        "downloaded": job.downloaded_at,
    }
    out["timings"] = {name: t.isoformat() if t else None for name, t in stamps.items()}
    if sidecar is None:
        return out
    video = sidecar.get("video") or {}
    frames, seconds = video.get("frames"), video.get("duration_s")
    fps = round(frames / seconds, 3) if frames and seconds else None
    out.update({name: video.get(name) for name in _PROBE if name != "fps"}, fps=fps)
    out.update(size_bytes=video.get("bytes", job.size_bytes), sha256=video.get("sha256"))
    for name in ("request_id", "attempts", "cost_usd", "timings"):
        if sidecar.get(name) is not None:
            out[name] = sidecar[name]
    return out


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """HEAD, then every other input column (sorted), then TAIL."""
    extra = {name for row in rows for name in row} - set(HEAD) - set(TAIL)
    return [*HEAD, *sorted(extra), *TAIL]


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _csv(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    # RFC 4180 line ends: with "\n" alone, a "\r" inside a prompt would go unquoted and
    # split the row for every reader.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


#: What a spreadsheet reads as the start of a formula (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell: text as is, nothing as empty, anything else as JSON.

    Text a spreadsheet would run as a formula (a prompt such as ``=HYPERLINK(...)``) gets
    a leading ``'``, the OWASP rule: shown as text, never executed. Numbers are written
    by us as numbers and left alone, so ``-3`` stays a number.

    >>> _cell("=HYPERLINK(1)"), _cell("@SUM(A1)"), _cell(-3), _cell("a-b")
    ("'=HYPERLINK(1)", "'@SUM(A1)", '-3', 'a-b')
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return json.dumps(value, ensure_ascii=False)


def _write_videofolder(folder: Path, rows: list[dict[str, Any]], sources: list[Path]) -> None:
    """Link or copy the videos into ``folder`` and write ``metadata.jsonl`` last.

    ``folder`` must be new, empty or an earlier export (it has ``metadata.jsonl``); files an
    earlier export listed that this one does not are removed.
    """
    old = _previous_export(folder)
    for source in sources:
        if source.is_relative_to(folder):
            raise ExportError(f"{folder}: the destination holds videos being exported ({source})")
    names = [row["video_path"] for row in rows]
    prefix = f"{rows[0]['batch']}/" if rows else ""
    if prefix and all(name.startswith(prefix) for name in names):
        names = [name.removeprefix(prefix) for name in names]
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for row, source, name in zip(rows, sources, names, strict=True):
        target = resolve_inside(folder, name)
        _place(source, target)
        record = {"file_name": name, **row, "video_path": name, "video_abspath": str(target)}
        records.append(record)
    columns = _columns(records)
    records = [{"file_name": r["file_name"], **{c: r.get(c) for c in columns}} for r in records]
    write_atomically(folder / METADATA, _jsonl(records))
    for name in old - set(names):
        stale = resolve_inside(folder, name)
        stale.unlink(missing_ok=True)


def _previous_export(folder: Path) -> set[str]:
    """The file names an earlier export in ``folder`` listed; refuse any other content."""
    if not folder.exists():
        return set()
    if not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder")
    metadata = folder / METADATA
    if not metadata.is_file():
        if any(folder.iterdir()):
            raise ExportError(f"{folder}: not empty and not an earlier export (no {METADATA})")
        return set()
    names = set()
    for line in metadata.read_text(encoding="utf-8").splitlines():
        name = json.loads(line).get("file_name") if line.strip() else None
        if isinstance(name, str):
            names.add(check_relative(name))
    return names


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` at ``target`` (a copy across filesystems), atomically."""
    if target.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # No fsync of each video's folder: metadata.jsonl, written last and durably, is what
    # makes the export whole, and exporting again places any video that went missing.
    with atomic_path(target, sync_folder=False) as temp:
        try:
            os.link(source, temp)
        except FileExistsError:
            raise  # another writer's temporary: never copy over it
        except OSError:
            shutil.copy2(source, temp)
