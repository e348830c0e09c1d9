"""What the review page shows of one job: its clip (prompt, parameters, input images,
facts and poster) and, for a failed job, its failure line.

Posters are the first frame of each video, a small JPEG in ``<batch folder>/.posters/``,
made once and remade only when the video is newer. Every link is relative to the page.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import av

from orchestrator.outputs.atomicwrite import atomic_file
from orchestrator.outputs.paths import SAFE_NAME, OutputPathError, resolve_inside
from orchestrator.outputs.report_html import Clip, Failure
from orchestrator.outputs.sidecar import sidecar_path
from orchestrator.store.states import JobState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from PIL import Image

    from orchestrator.store.records import JobView

POSTER_DIR = ".posters"
POSTER_SIZE = (640, 640)
"""Posters are scaled down to fit this box (a grid cell is about 250 px wide)."""
_IMAGE_NAME = re.compile(r"\.(jpe?g|png|webp|gif|bmp|tiff?|heic|avif)$", re.IGNORECASE)
_RECONCILE_HINT = (
    "the submit may have reached RunComfy but its outcome is unknown; check the RunComfy "
    "dashboard, then run 'orchestrator reconcile' (--resubmit queues it again as a paid attempt)"
)


def clip_for(
    job: JobView,
    payload: Mapping[str, Any],
    names: Callable[[str], str],
    root: Path,
    folder: Path,
    page_dir: Path,
) -> Clip:
    """The clip of ``job``: its video under ``root``, its poster under ``folder``, links
    relative to ``page_dir``; a succeeded job whose video is missing gets a note instead."""
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
        facts.append(size_text(size))
    if job.cost is not None:
        facts.append(f"${job.cost:,.2f}")
    if job.submitted_at and job.finished_at:
        facts.append(
            f"ready in {duration_text((job.finished_at - job.submitted_at).total_seconds())}"
        )
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


def failure_for(job: JobView, anchor: str, clip: Clip, names: Callable[[str], str]) -> Failure:
    """The failure line of a failed (or unreconciled) job, with its reason or a hint."""
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
    # A poster is remade when missing: no folder fsync for it.
    with atomic_file(poster, sync_folder=False) as handle:
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


def duration_text(seconds: float) -> str:
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


def size_text(size: int) -> str:
    """A file size for people: ``48 KB``, ``12.3 MB``."""
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
