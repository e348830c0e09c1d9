"""Pre-flight for the output side: what would fail only after the videos were paid for.

Before anything is stored or submitted, :func:`check_outputs` checks that every file a job
will write (its folders, the video, the JSON sidecar and their temporary ``.part`` names)
fits the file system's limits on names and paths, that the output folder can be written,
and warns when the free space looks short for the batch.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     job = Row("beach", "b/m/beach.mp4", "m.yaml", 4)
...     print(check_outputs(Path(tmp), [job]).ok)
...     long = Row("x" * 252, "b/m/" + "x" * 252 + ".mp4", "m.yaml", 4)
...     print(check_outputs(Path(tmp), [long]).problems[0])  # doctest: +ELLIPSIS
True
m.yaml:4: job '...': field 'id': the file name '...' is 256 bytes long; this file system ...
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from orchestrator.outputs.paths import part_name
from orchestrator.outputs.sidecar import sidecar_path
from orchestrator.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from orchestrator.catalog import Catalog
    from orchestrator.manifest import JobSpec

#: Limits used when the file system does not say (``os.pathconf`` unsupported).
FALLBACK_NAME_MAX = 255
FALLBACK_PATH_MAX = 4096
#: Problems of one kind listed before the rest are summed up in one line.
MAX_LISTED = 20
#: A temporary name's tag as long as the real ones (``secrets.token_hex(4)``).
_SAMPLE_TAG = "0" * 8
#: How much longer than a video's name its other names can be: the sidecar's ``.json`` for
#: a name without a suffix (5), then ``.`` + ``.<8 hex>.part`` for its temporary name (15).
_GROWTH = 5 + 1 + len(_SAMPLE_TAG) + len(".part") + 1
_HINT = "use a shorter id or output.pattern"
_FOLDER_HINT = "choose another folder with --out or output.dir"

# The size estimate is deliberately generous (bit rates at the high end for H.264 at each
# resolution, 8 KB per sidecar) and only ever warns: a wrong guess never blocks a batch.
DEFAULT_SECONDS = 5.0
MBIT_PER_SECOND = {"480p": 1.5, "720p": 4.0, "1080p": 8.0}
DEFAULT_MBIT_PER_SECOND = 4.0
SIDECAR_BYTES = 8 * 1024


class OutputJob(Protocol):
    """What the pre-flight needs of a job (a :class:`JobSpec` has it all)."""

    @property
    def id(self) -> str: ...
    @property
    def output_path(self) -> str: ...
    @property
    def source_file(self) -> str: ...
    @property
    def source_line(self) -> int | None: ...


class Row(NamedTuple):
    """A minimal :class:`OutputJob` (for callers without a :class:`JobSpec`, and tests)."""

    id: str
    output_path: str
    source_file: str
    source_line: int | None = None


@dataclass
class Preflight:
    """What :func:`check_outputs` found: problems refuse the batch, warnings do not."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest ancestor that does."""
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def fs_limits(path: Path) -> tuple[int, int]:
    """``(NAME_MAX, PATH_MAX)`` in bytes of the file system holding ``path`` (which exists)."""
    return _pathconf(path, "PC_NAME_MAX", FALLBACK_NAME_MAX), _pathconf(
        path, "PC_PATH_MAX", FALLBACK_PATH_MAX
    )


def _pathconf(path: Path, name: str, fallback: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError):
        return fallback
    return value if value > 0 else fallback


def estimate_job_bytes(job: JobSpec, catalog: Catalog | None = None) -> int:
    """A generous size of one job's video and sidecar: its seconds (the model's duration
    field, else 5 s) at a bit rate by resolution (480p 1.5, 720p 4, 1080p 8, else 4 Mbit/s).

    >>> from orchestrator.catalog import builtin_catalog
    >>> from dataclasses import replace
    >>> from orchestrator.manifest import JobSpec
    >>> job = JobSpec("a", "a", "", "bytedance/dreamina-3-0/pro/image-to-video", "d",
    ...               {"frames": 241, "resolution": "1080p"}, {}, 0, None, "k", "a.mp4", "m", 1)
    >>> estimate_job_bytes(job, builtin_catalog())  # 10 s at 8 Mbit/s + the sidecar
    10008192
    >>> estimate_job_bytes(replace(job, model_id="acme/unknown", payload={}))  # 5 s at 4 Mbit/s
    2508192
    """
    model = catalog.get(job.model_id) if catalog is not None else None
    seconds = model.duration_seconds(job.payload) if model is not None else None
    if seconds is None or seconds <= 0:
        seconds = DEFAULT_SECONDS
    resolution = job.payload.get("resolution")
    mbit = DEFAULT_MBIT_PER_SECOND
    if isinstance(resolution, str):
        mbit = MBIT_PER_SECOND.get(resolution, DEFAULT_MBIT_PER_SECOND)
    return int(seconds * mbit * 1_000_000 / 8) + SIDECAR_BYTES


def estimate_batch_bytes(jobs: Iterable[JobSpec], catalog: Catalog | None = None) -> int:
    """The sum of :func:`estimate_job_bytes` over a batch."""
    return sum(estimate_job_bytes(job, catalog) for job in jobs)


def check_outputs(
    root: Path,
    jobs: Sequence[OutputJob],
    *,
    estimated_bytes: int | None = None,
    source: str | None = None,
    name_max: int | None = None,
    path_max: int | None = None,
) -> Preflight:
    """Check where ``jobs`` will write under ``root`` (absolute; created on demand).

    ``estimated_bytes`` (see :func:`estimate_batch_bytes`) turns on the free-space warning;
    ``source`` is the manifest the folder problems point at; ``name_max`` and ``path_max``
    override what the file system says. The folder is probed by creating and removing a
    temporary file in it when it exists; nothing else is written.
    """
    found = Preflight()
    existing = nearest_existing(root)
    folder_problem = _check_folder(root, existing, source)
    if folder_problem is not None:
        found.problems.append(folder_problem)
    names_limit, paths_limit = fs_limits(existing) if existing.is_dir() else (None, None)
    names_limit = name_max or names_limit or FALLBACK_NAME_MAX
    paths_limit = path_max or paths_limit or FALLBACK_PATH_MAX
    found.problems.extend(_check_lengths(root, jobs, names_limit, paths_limit, source))
    if folder_problem is None and estimated_bytes:
        try:
            free: int | None = shutil.disk_usage(existing).free
        except OSError:  # no figure, no warning: the estimate is only ever advice
            free = None
        if free is not None and free < estimated_bytes:
            found.warnings.append(
                Problem(
                    f"the output folder {root} has {format_size(free)} free, less than the "
                    f"{format_size(estimated_bytes)} this batch's videos may take "
                    "(a deliberately generous estimate)",
                    file=source,
                    field="output.dir",
                    hint=f"free some space, or {_FOLDER_HINT}",
                )
            )
    return found


def format_size(size: float) -> str:
    """Bytes as MB or GB (powers of 1000, like ``df -H``).

    >>> format_size(1_500_000), format_size(25_300_000_000)
    ('1.5 MB', '25.3 GB')
    """
    if size >= 1e9:
        return f"{size / 1e9:,.1f} GB"
    return f"{size / 1e6:,.1f} MB"


def _check_folder(root: Path, existing: Path, source: str | None) -> Problem | None:
    """Why the output folder cannot be written, or None when it can."""

    def problem(reason: str) -> Problem:
        return Problem(
            f"the output folder {root} {reason}", file=source, field="output.dir", hint=_FOLDER_HINT
        )

    if not existing.is_dir():
        if existing == root:
            return problem("is not a folder")
        return problem(f"cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == root:
            return problem("is not writable")
        return problem(f"cannot be created: {existing} is not writable")
    if existing == root:
        # os.access can say yes to root on a read-only mount: only a real file is proof.
        try:
            handle, probe = tempfile.mkstemp(prefix=".orchestrator-check-", dir=root)
        except OSError as exc:
            return problem(f"is not writable: {exc.strerror or exc}")
        os.close(handle)
        os.unlink(probe)
    return None


class _Kind:
    """Problems of one kind: the first :data:`MAX_LISTED` listed, the rest counted."""

    def __init__(self, summary: str) -> None:
        self.summary = summary
        self.listed: list[Problem] = []
        self.more = 0

    def add(self, problem: Problem) -> None:
        if len(self.listed) < MAX_LISTED:
            self.listed.append(problem)
        else:
            self.more += 1

    def problems(self, source: str | None) -> list[Problem]:
        if not self.more:
            return self.listed
        return [*self.listed, Problem(f"... and {self.more:,} more {self.summary}", file=source)]


def _check_lengths(
    root: Path, jobs: Sequence[OutputJob], name_max: int, path_max: int, source: str | None
) -> list[Problem]:
    names = _Kind("jobs with names too long for this file system")
    paths = _Kind("jobs with paths too long for this file system")
    base = str(root).rstrip("/") + "/"
    base_bytes = _bytes(base)
    longest_path = path_max - 1  # PATH_MAX counts the terminating NUL
    folders_ok: set[str] = set()
    for job in jobs:
        folder, _slash, video = job.output_path.rpartition("/")
        video_bytes = _bytes(video)
        stem = base_bytes + (_bytes(folder) + 1 if folder else 0)
        # Every other name is at most _GROWTH bytes longer than the video's: a cheap test
        # that clears nearly every job of a big batch without building the names.
        if (
            video_bytes + _GROWTH <= name_max
            and stem + video_bytes + _GROWTH <= longest_path
            and folder in folders_ok
        ):
            continue
        sidecar = sidecar_path(Path(video)).name
        files = (
            ("file name", video),
            ("sidecar name", sidecar),
            ("temporary download name", part_name(video, _SAMPLE_TAG)),
            ("temporary sidecar name", part_name(sidecar, _SAMPLE_TAG)),
        )
        # One problem of each kind per job: the first name that does not fit.
        over = None
        if folder not in folders_ok:
            over = next(
                (("folder name", p, p) for p in folder.split("/") if _bytes(p) > name_max), None
            )
            if over is None:
                folders_ok.add(folder)
        if over is None:
            over = next(((w, n, video) for w, n in files if _bytes(n) > name_max), None)
        if over is not None:
            what, name, origin = over
            names.add(
                Problem(
                    f"the {what} {_short(name)!r} is {_bytes(name)} bytes long; this file "
                    f"system allows at most {name_max} bytes per name (UTF-8)",
                    file=job.source_file,
                    line=job.source_line,
                    job=job.id,
                    field=_field(job, origin),
                    hint=_HINT,
                )
            )
        what, longest = max(files, key=lambda item: _bytes(item[1]))
        size = stem + _bytes(longest)
        if size > longest_path:
            blame = _path_field(job, size - longest_path)
            paths.add(
                Problem(
                    f"the full path of its {what} is {size} bytes long "
                    f"({_short(base + job.output_path)}); this system allows at most "
                    f"{longest_path} bytes per path",
                    file=job.source_file,
                    line=job.source_line,
                    job=job.id,
                    field=blame if _bytes(job.output_path) >= base_bytes else "output.dir",
                    hint=f"{_HINT}, or a shorter --out / output.dir",
                )
            )
    return names.problems(source) + paths.problems(source)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _short(text: str, keep: int = 24) -> str:
    """Long names shown by their ends: ``'xxxxxx...xxx.mp4'``."""
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-keep:]}"


def _path_field(job: OutputJob, excess: int) -> str:
    """``id`` when the id's bytes in the path are at least what it is over by (a shorter id
    would fix it), else ``output.pattern`` (its fixed parts are the long ones)."""
    ids = {job.id, getattr(job, "base_id", job.id)}
    used = max((job.output_path.count(i) * _bytes(i) for i in ids if i), default=0)
    return "id" if used >= excess else "output.pattern"


def _field(job: OutputJob, origin: str) -> str:
    """``id`` when the job's id is part of what is too long, else ``output.pattern``."""
    ids = {job.id, getattr(job, "base_id", job.id)}
    return "id" if any(i and i in origin for i in ids) else "output.pattern"
