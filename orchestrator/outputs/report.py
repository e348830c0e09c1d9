"""A static review page for one batch: ``report.html`` beside the videos.

:func:`write_report` reads the store (jobs, counts, spend) and the sidecars, extracts a
poster (the first frame, a small JPEG in ``<batch folder>/.posters/``) for every video,
and writes one self-contained HTML file: a summary, the videos grouped by matrix axis
(rows are base jobs, columns the model, or another axis) and the failures with their
reasons. Every link is relative to the page, so the folder can be moved or zipped. What
the page shows of each job is built in :mod:`.report_clips`, the HTML in
:mod:`.report_html`.

Job ids carry their matrix variant (``beach_model-seedance-1-0-pro``, ``shot_seed-3_r2``):

>>> split_id("beach_model-seedance-1-0-pro")
('beach', (('model', 'seedance-1-0-pro'),))
>>> split_id("shot_seed-3_r2")
('shot', (('seed', '3'), ('take', '2')))
>>> split_id("forest")
('forest', ())
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.catalog import Catalog, builtin_catalog, model_slug
from orchestrator.outputs.atomicwrite import write_atomically
from orchestrator.outputs.report_clips import clip_for, duration_text, failure_for
from orchestrator.outputs.report_html import Clip, CostLine, ModelLine, Page, Row, Sheet, render
from orchestrator.redact import redact
from orchestrator.store.money import any_cost
from orchestrator.store.states import JobState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from orchestrator.store import Store
    from orchestrator.store.records import BatchView, JobView

REPORT_NAME = "report.html"
_FAILURE_STATES = (JobState.FAILED, JobState.NEEDS_RECONCILE)
_AXIS_PART = re.compile(r"([A-Za-z][A-Za-z0-9]*)-(.+)")
_TAKE_PART = re.compile(r"r(\d+)")


class ReportError(ValueError):
    """The report cannot be written (an unknown batch)."""


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Where the page went, how many videos it shows and how many failures it lists."""

    path: Path
    videos: int
    failures: int


def write_report(
    store: Store, batch: str, dest: Path | None = None, catalog: Catalog | None = None
) -> ReportResult:
    """Write ``<output_root>/<batch>/report.html`` (or ``dest``) atomically for one batch.

    Models are named from ``catalog`` (the built-in one by default; a model it does not
    know shows its slug). Posters are (re)generated only when missing or older than their
    video. Raises :class:`ReportError` for a batch the store does not hold.
    """
    view = _batch_view(store, batch)
    root = Path(view.output_root)
    folder = root / batch
    target = (dest if dest is not None else folder / REPORT_NAME).absolute()
    jobs = store.list_jobs(batch=batch)
    payloads = _payloads(store, batch)
    names = _model_names(builtin_catalog() if catalog is None else catalog)
    anchors = {
        job.id: f"f-{number}"
        for number, job in enumerate(j for j in jobs if j.state in _FAILURE_STATES)
    }
    clips = {
        job.id: clip_for(job, payloads.get(job.row_id, {}), names, root, folder, target.parent)
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
            failure_for(job, anchors[job.id], clips[job.id], names)
            for job in jobs
            if job.state in _FAILURE_STATES
        ),
        videos=sum(1 for c in clips.values() if c.video_src is not None),
        costs=_cost_lines(store, batch, names),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, redact(render(page)))
    return ReportResult(path=target, videos=page.videos, failures=len(page.failures))


# --- the store --------------------------------------------------------------------------


def _batch_view(store: Store, batch: str) -> BatchView:
    view = store.batch(batch)
    if view is not None:
        return view
    known = ", ".join(v.name for v in store.batches()) or "none"
    raise ReportError(f"no batch {batch!r} in the store (batches: {known})")


def _payloads(store: Store, batch: str) -> dict[int, dict[str, Any]]:
    """Row id -> native payload (the job views do not carry it)."""
    out: dict[int, dict[str, Any]] = {}
    for row_id, text in store.payloads(batch).items():
        try:
            payload = json.loads(text)
        except ValueError:
            continue
        if isinstance(payload, dict):
            out[row_id] = payload
    return out


def _model_names(catalog: Catalog) -> Callable[[str], str]:
    def name(model_id: str) -> str:
        spec = catalog.get(model_id)
        return spec.display_name if spec is not None else model_slug(model_id)

    return name


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
                turnaround=(
                    duration_text(sum(turnarounds) / len(turnarounds)) if turnarounds else "—"
                ),
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
    return "—" if bounds is None else duration_text((bounds[1] - bounds[0]).total_seconds())


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
