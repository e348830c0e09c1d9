"""A static review page for one batch: ``report.html`` beside the videos.

:func:`write_report` reads the store (jobs, counts, spend) and the sidecars, extracts a
poster (the first frame, a small JPEG in ``<batch folder>/.posters/``) for every video,
and writes one self-contained HTML file: a summary, the videos grouped by matrix axis
(rows are base jobs, columns the model, or another axis) and the failures with their
reasons. Every link is relative to the page, so the folder can be moved or zipped.

Job ids carry their matrix variant (``beach_model-seedance-1-0-pro``, ``shot_seed-3_r2``):

>>> split_id("beach_model-seedance-1-0-pro")
('beach', (('model', 'seedance-1-0-pro'),))
>>> split_id("shot_seed-3_r2")
('shot', (('seed', '3'), ('take', '2')))
>>> split_id("forest")
('forest', ())
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, BinaryIO
from urllib.parse import quote

import av
from PIL import Image
from sqlalchemy import select

from orchestrator.catalog import builtin_catalog, model_slug
from orchestrator.outputs.paths import SAFE_NAME, OutputPathError, resolve_inside
from orchestrator.outputs.report_html import (
    Clip,
    CostLine,
    Failure,
    ModelLine,
    Page,
    Row,
    Sheet,
    render,
)
from orchestrator.outputs.sidecar import sidecar_path
from orchestrator.redact import redact
from orchestrator.store import Store
from orchestrator.store.money import any_cost
from orchestrator.store.records import BatchView, JobView
from orchestrator.store.states import JobState
from orchestrator.store.tables import JOBS

REPORT_NAME = "report.html"
POSTER_DIR = ".posters"
POSTER_SIZE = (640, 640)
"""Posters are scaled down to fit this box (a grid cell is about 250 px wide)."""
_FAILURE_STATES = (JobState.FAILED, JobState.NEEDS_RECONCILE)
_AXIS_PART = re.compile(r"([A-Za-z][A-Za-z0-9]*)-(.+)")
_TAKE_PART = re.compile(r"r(\d+)")
_IMAGE_NAME = re.compile(r"\.(jpe?g|png|webp|gif|bmp|tiff?|heic|avif)$", re.IGNORECASE)
_RECONCILE_HINT = (
    "the submit may have reached RunComfy but its outcome is unknown; check the RunComfy "
    "dashboard, then run 'orchestrator reconcile' (--resubmit queues it again as a paid attempt)"
)


class ReportError(ValueError):
    """The report cannot be written (an unknown batch)."""


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Where the page went, how many videos it shows and how many failures it lists."""

    path: Path
    videos: int
    failures: int


def write_report(store: Store, batch: str, dest: Path | None = None) -> ReportResult:
    """Write ``<output_root>/<batch>/report.html`` (or ``dest``) atomically for one batch.

    Posters are (re)generated only when missing or older than their video. Raises
    :class:`ReportError` for a batch the store does not hold.
    """
    view = _batch_view(store, batch)
    root = Path(view.output_root)
    folder = root / batch
    target = (dest if dest is not None else folder / REPORT_NAME).absolute()
    jobs = store.list_jobs(batch=batch)
    payloads = _payloads(store, batch)
    names = _model_names()
    anchors = {
        job.id: f"f-{number}"
        for number, job in enumerate(j for j in jobs if j.state in _FAILURE_STATES)
    }
    clips = {
        job.id: _clip(job, payloads.get(job.row_id, {}), names, root, folder, target.parent)
        for job in jobs
    }
    for job_id, anchor in anchors.items():
        clips[job_id] = replace(clips[job_id], anchor=anchor)
    sheets, loose = _arrange(jobs, clips)
    page = Page(
        batch=batch,
        manifest=Path(view.manifest_path).name,  # a shared page need not reveal folders
        generated=_stamp(store.now()),
        total=len(jobs),
        counts=tuple(store.counts(batch).items()),
        spend=store.spend(batch),
        wall=_wall(jobs),
        wall_span=_wall_span(jobs),
        models=_model_lines(store, batch, jobs, names),
        sheets=sheets,
        loose=loose,
        failures=tuple(
            _failure(job, anchors[job.id], clips[job.id], names)
            for job in jobs
            if job.state in _FAILURE_STATES
        ),
        videos=sum(1 for c in clips.values() if c.video_src is not None),
        costs=_cost_lines(store, batch, names),
    )
    _write_atomically(target, redact(render(page)))
    return ReportResult(path=target, videos=page.videos, failures=len(page.failures))


# --- the store --------------------------------------------------------------------------


def _batch_view(store: Store, batch: str) -> BatchView:
    views = store.batches()
    for view in views:
        if view.name == batch:
            return view
    known = ", ".join(v.name for v in views) or "none"
    raise ReportError(f"no batch {batch!r} in the store (batches: {known})")


def _payloads(store: Store, batch: str) -> dict[int, dict[str, Any]]:
    """Row id -> native payload (the job views do not carry it)."""
    query = select(JOBS.c.id, JOBS.c.payload).where(JOBS.c.batch == batch)
    out: dict[int, dict[str, Any]] = {}
    with store.read() as connection:
        for row_id, text in connection.execute(query):
            try:
                payload = json.loads(text)
            except ValueError:
                continue
            if isinstance(payload, dict):
                out[row_id] = payload
    return out


def _model_names() -> Callable[[str], str]:
    catalog = builtin_catalog()

    def name(model_id: str) -> str:
        spec = catalog.get(model_id)
        return spec.display_name if spec is not None else model_slug(model_id)

    return name


# --- one job ------------------------------------------------------------------------------


def _clip(
    job: JobView,
    payload: Mapping[str, Any],
    names: Callable[[str], str],
    root: Path,
    folder: Path,
    page_dir: Path,
) -> Clip:
    prompt, params, inputs = describe_payload(payload)
    clip = Clip(
        job_id=job.id,
        model=names(job.model),
        state=job.state.value,
        prompt=prompt,
        params=params,
        inputs=inputs,
        facts=(),
        note=job.state.value.replace("_", " "),
    )
    if job.state is not JobState.SUCCEEDED:
        return clip
    try:
        video = resolve_inside(root, job.output_path)
    except OutputPathError:
        return replace(clip, note="video path is outside the output folder")
    if not video.is_file():
        return replace(clip, note="video file missing")
    record = _read_json(sidecar_path(video))
    probe = record.get("video")
    if not isinstance(probe, dict):
        probe = {}
    width, height = _int(probe.get("width")), _int(probe.get("height"))
    facts: list[str] = []
    if width and height:
        facts.append(f"{width}×{height}")
    seconds = probe.get("duration_s")
    if isinstance(seconds, int | float) and seconds > 0:
        facts.append(f"{seconds:.1f} s")
    size = job.size_bytes if job.size_bytes is not None else _int(probe.get("bytes"))
    if size:
        facts.append(_size(size))
    if job.cost is not None:
        facts.append(f"${job.cost:,.2f}")
    if job.submitted_at and job.finished_at:
        facts.append(f"ready in {_duration((job.finished_at - job.submitted_at).total_seconds())}")
    if job.attempts > 1:
        facts.append(f"{job.attempts} attempts")
    poster = ensure_poster(video, folder / POSTER_DIR / f"{poster_stem(job.id)}.jpg")
    sidecar = sidecar_path(video)
    return replace(
        clip,
        facts=tuple(facts),
        video_src=relative_url(video, page_dir),
        poster_src=relative_url(poster, page_dir) if poster else None,
        sidecar_src=relative_url(sidecar, page_dir) if sidecar.is_file() else None,
        width=width,
        height=height,
        note=None,
    )


def describe_payload(
    payload: Mapping[str, Any],
) -> tuple[str | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(prompt, other parameters as text, input image names) of a native payload.

    >>> describe_payload({"promptText": "waves", "duration": 5,
    ...                   "promptImage": {"$image": {"path": "/in/beach.jpg", "sha256": "ab"}}})
    ('waves', (('duration', '5'),), ('beach.jpg',))
    """
    prompt: str | None = None
    params: list[tuple[str, str]] = []
    inputs: list[str] = []
    for name, value in payload.items():
        images = _image_names(value)
        if prompt is None and isinstance(value, str) and _is_prompt(name):
            prompt = value
        elif images:
            inputs.extend(images)
        else:
            params.append((name, _text(value)))
    return prompt, tuple(params), tuple(inputs)


def _is_prompt(name: str) -> bool:
    lowered = name.lower()
    return "prompt" in lowered and "negative" not in lowered


def _image_names(value: Any) -> list[str]:
    """The file names of an image field (a stored reference, a URL or path, or a list)."""
    if isinstance(value, list) and value:
        names = [_image_names(item) for item in value]
        return [n for found in names for n in found] if all(names) else []
    if isinstance(value, dict) and isinstance(value.get("$image"), dict):
        return [PurePath(str(value["$image"].get("path", "image"))).name]
    if isinstance(value, str) and not any(c.isspace() for c in value):
        bare = value.split("?")[0].split("#")[0]
        if _IMAGE_NAME.search(bare):
            return [bare.rsplit("/", 1)[-1]]
    return []


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float) or value is None:
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def _failure(job: JobView, anchor: str, clip: Clip, names: Callable[[str], str]) -> Failure:
    reason = job.error or (
        _RECONCILE_HINT if job.state is JobState.NEEDS_RECONCILE else "no reason recorded"
    )
    if job.state is JobState.NEEDS_RECONCILE and job.error:
        reason = f"{job.error} ({_RECONCILE_HINT})"
    return Failure(
        anchor=anchor,
        job_id=job.id,
        model=names(job.model),
        state=job.state.value,
        attempts=f"{job.attempts}/{job.max_attempts}",
        reason=reason,
        prompt=clip.prompt,
    )


# --- grouping by matrix axis --------------------------------------------------------------


def split_id(job_id: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(base id, ((axis, label), ...)) from a job id; a replicate ``_rN`` is axis ``take``."""
    parts = job_id.split("_")
    axes: list[tuple[str, str]] = []
    if len(parts) > 1 and (take := _TAKE_PART.fullmatch(parts[-1])):
        axes.append(("take", take[1]))
        parts.pop()
    while len(parts) > 1 and (found := _AXIS_PART.fullmatch(parts[-1])):
        axes.insert(0, (found[1], found[2]))
        parts.pop()
    return "_".join(parts), tuple(axes)


def _arrange(
    jobs: Sequence[JobView], clips: Mapping[str, Clip]
) -> tuple[tuple[Sheet, ...], tuple[Clip, ...]]:
    """Comparison sheets for jobs that share matrix axes; the rest as a plain grid.

    Failed or unfinished jobs appear in a sheet as placeholders (so a row stays aligned)
    but never in the plain grid, which only shows videos.
    """
    groups: dict[tuple[str, ...], list[tuple[JobView, str, tuple[tuple[str, str], ...]]]] = {}
    for job in jobs:
        base, axes = split_id(job.id)
        groups.setdefault(tuple(a for a, _ in axes), []).append((job, base, axes))
    sheets: list[Sheet] = []
    loose: list[Clip] = []
    for names, members in groups.items():
        column = _column_axis(names, [axes for _, _, axes in members])
        if column is None or len(members) < 2:
            loose.extend(clips[j.id] for j, _, _ in members if clips[j.id].video_src)
            continue
        sheets.append(_sheet(column, names, members, clips))
    return tuple(sheets), tuple(loose)


def _column_axis(names: tuple[str, ...], all_axes: list[tuple[tuple[str, str], ...]]) -> int | None:
    """The index of the axis to lay out as columns: ``model`` if it varies, else the
    innermost axis that varies; None when no axis varies (the ids only looked like one)."""
    varying = [i for i in range(len(names)) if len({axes[i][1] for axes in all_axes}) > 1]
    if not varying:
        return None
    return next((i for i in varying if names[i] == "model"), varying[-1])


def _sheet(
    column: int,
    names: tuple[str, ...],
    members: list[tuple[JobView, str, tuple[tuple[str, str], ...]]],
    clips: Mapping[str, Clip],
) -> Sheet:
    columns: dict[str, str] = {}
    rows: dict[tuple[str, ...], dict[str, Clip]] = {}
    for job, base, axes in members:
        label = axes[column][1]
        clip = clips[job.id]
        columns.setdefault(label, clip.model if names[column] == "model" else label)
        key = (base, *(f"{a} {v}" for i, (a, v) in enumerate(axes) if i != column))
        rows.setdefault(key, {})[label] = clip
    built = []
    for key, cells in rows.items():
        prompts = {c.prompt for c in cells.values()}
        inputs = {c.inputs for c in cells.values()}
        built.append(
            Row(
                title=key[0],
                tags=key[1:],
                prompt=prompts.pop() if len(prompts) == 1 else None,
                inputs=inputs.pop() if len(inputs) == 1 else (),
                cells=tuple(cells.get(label) for label in columns),
            )
        )
    return Sheet(axis=names[column], columns=tuple(columns.values()), rows=tuple(built))


# --- summary ------------------------------------------------------------------------------


def _model_lines(
    store: Store, batch: str, jobs: Sequence[JobView], names: Callable[[str], str]
) -> tuple[ModelLine, ...]:
    lines = []
    for model_id, counts in store.counts_by_model(batch).items():
        mine = [j for j in jobs if j.model == model_id]
        turnarounds = [
            (j.finished_at - j.submitted_at).total_seconds()
            for j in mine
            if j.state is JobState.SUCCEEDED and j.finished_at and j.submitted_at
        ]
        succeeded = counts.get(JobState.SUCCEEDED.value, 0)
        failed = sum(counts.get(s.value, 0) for s in _FAILURE_STATES)
        lines.append(
            ModelLine(
                model_id=model_id,
                name=names(model_id),
                succeeded=succeeded,
                failed=failed,
                other=sum(counts.values()) - succeeded - failed,
                spend=sum(j.cost or 0.0 for j in mine),
                turnaround=(_duration(sum(turnarounds) / len(turnarounds)) if turnarounds else "—"),
            )
        )
    return tuple(lines)


def _cost_lines(store: Store, batch: str, names: Callable[[str], str]) -> tuple[CostLine, ...]:
    """Estimate against actual per model, as ``status`` shows it (none when nothing has an
    estimate or a cost)."""
    costs = store.cost_by_model(batch)
    if not any_cost(costs):
        return ()
    return tuple(
        CostLine(
            model_id=c.model_id,
            name=names(c.model_id),
            billed=c.billed,
            jobs=c.jobs,
            estimate=c.billed_estimate_usd,
            actual=c.actual_usd,
            difference=c.difference_text(),
            over=c.over_estimate,
        )
        for c in costs
    )


def _wall_bounds(jobs: Sequence[JobView]) -> tuple[datetime, datetime] | None:
    downloads = [j.downloaded_at for j in jobs if j.downloaded_at is not None]
    if not jobs or not downloads:
        return None
    return min(j.created_at for j in jobs), max(downloads)


def _wall(jobs: Sequence[JobView]) -> str:
    bounds = _wall_bounds(jobs)
    return "—" if bounds is None else _duration((bounds[1] - bounds[0]).total_seconds())


def _wall_span(jobs: Sequence[JobView]) -> str:
    bounds = _wall_bounds(jobs)
    if bounds is None:
        return "no video downloaded yet"
    start, end = bounds
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S} UTC"
    return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``12 min 5 s``, ``3 h 12 min``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _size(size: int) -> str:
    if size < 1000 * 1000:
        return f"{max(1, round(size / 1000))} KB"
    return f"{size / 1e6:.1f} MB"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- files --------------------------------------------------------------------------------


def relative_url(path: Path, start: Path) -> str:
    """A URL for ``path`` relative to the folder ``start`` (``../a b.mp4`` -> ``../a%20b.mp4``).

    >>> relative_url(Path("/out/b/m/beach.mp4"), Path("/out/b"))
    'm/beach.mp4'
    """
    return quote(PurePath(os.path.relpath(path, start)).as_posix())


def poster_stem(job_id: str) -> str:
    """A file name for a job's poster: the id itself when it is already file-safe.

    >>> poster_stem("beach_model-seedance-1-0-pro"), poster_stem("odd/id")
    ('beach_model-seedance-1-0-pro', 'odd-id-6ab7847e')
    """
    if SAFE_NAME.fullmatch(job_id) and len(job_id) <= 150:
        return job_id
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", job_id).strip("-._")[:60] or "job"
    return f"{cleaned}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"


def ensure_poster(video: Path, poster: Path) -> Path | None:
    """The poster of ``video`` (its first frame as a JPEG), made when missing or stale.

    Returns None when the video cannot be decoded: the page then shows no poster.
    """
    try:
        if poster.is_file() and poster.stat().st_mtime >= video.stat().st_mtime:
            return poster
        image = _first_frame(video)
    except (OSError, av.error.FFmpegError):
        return None
    if image is None:
        return None
    image.thumbnail(POSTER_SIZE)
    poster.parent.mkdir(parents=True, exist_ok=True)
    with _temp_beside(poster) as handle:
        image.convert("RGB").save(handle, "JPEG", quality=82, optimize=True)
    return poster


def _first_frame(video: Path) -> Image.Image | None:
    with av.open(str(video)) as container:
        if not container.streams.video:
            return None
        for frame in container.decode(container.streams.video[0]):
            # PyAV's stub leaves to_image untyped; it returns a Pillow image.
            to_image: Callable[[], Image.Image] = frame.to_image
            return to_image()
    return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_beside(path) as handle:
        handle.write(text.encode("utf-8"))


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[BinaryIO]:
    """A temp file next to ``path``: fsynced and renamed over it on success, else removed.

    Its name is unique (two reports at once never share one) and it is created with the
    usual permissions, unlike :func:`tempfile.mkstemp`'s owner-only files.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        with open(temp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
