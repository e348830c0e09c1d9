"""Timing variants RunComfy's docs leave open: how /result stamps times, how long runs take.

The docs show ``created_at`` and ``finished_at`` as ISO 8601 with an offset, but never
promise it, nor that a job's ``finished_at - created_at`` is its run time. A client that
measures run times from them must survive other forms, so a profile can choose them::

    timestamps: iso            # iso | naive | epoch_s | epoch_ms | absent | constant
    timestamp_skew_seconds: 0  # added to every stamp (may be negative): a clock hours off
    constant_run_seconds: 60   # timestamps: constant -> finished_at = created_at + this
    created_at: submit         # submit (accepted) | start (left the queue; submit until then)
    run_time_scale:            # run times that depend on the clip asked for
      clip_seconds: true       # x (clip seconds / 5)
      resolutions: {"480p": 0.6, "720p": 1.0, "1080p": 2.0}  # x factor of resolution/ratio

:mod:`.profile` reads these keys through :func:`parse_timing`; :mod:`.state` renders the
stamps with :func:`stamp_fields` and scales run times with :meth:`RunTimeScale.factor`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: ``iso``: ISO 8601, microseconds, +00:00. ``naive``: the same without any offset (a server
#: in local time). ``epoch_s``: a float of seconds since 1970. ``epoch_ms``: an integer of
#: milliseconds. ``absent``: neither field. ``constant``: ISO, but ``finished_at`` is always
#: ``created_at + constant_run_seconds``, whatever the job took.
TIMESTAMP_FORMS = ("iso", "naive", "epoch_s", "epoch_ms", "absent", "constant")
CREATED_AT = ("submit", "start")
TIMING_KEYS = (
    "timestamps",
    "timestamp_skew_seconds",
    "constant_run_seconds",
    "created_at",
    "run_time_scale",
)
#: Skews and constant run times are bounded so stamp arithmetic can never overflow a
#: datetime in the middle of a request; a year is far beyond any real clock error.
MAX_SECONDS = 366 * 86400.0
#: The clip length the sampled run times stand for (the seed models' default clip).
REFERENCE_CLIP_SECONDS = 5.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimingError(ValueError):
    """A bad timing setting (:mod:`.profile` reports it as a ProfileError with its origin)."""


@dataclass(frozen=True, slots=True)
class RunTimeScale:
    """Factors applied to a sampled run time from what the payload asks for."""

    clip_seconds: bool = False
    resolutions: Mapping[str, float] = field(default_factory=dict)

    def factor(self, clip_seconds: float, body: Mapping[str, Any]) -> float:
        """The multiplier for one submission (1.0 when nothing applies).

        ``resolution`` is read first and ``ratio`` only without it: Runway has no
        resolution field, and its ``ratio`` values (``1280:720``) name pixel sizes.
        """
        factor = clip_seconds / REFERENCE_CLIP_SECONDS if self.clip_seconds else 1.0
        key = body.get("resolution")
        if key is None:
            key = body.get("ratio")
        if key is not None:
            factor *= self.resolutions.get(str(key), 1.0)
        return factor


def stamp_fields(
    form: str, created: datetime, finished: datetime | None, constant_run_seconds: float
) -> dict[str, Any]:
    """``created_at`` and (for a finished job) ``finished_at`` as ``form`` renders them."""
    if form == "absent":
        return {}
    if form == "constant" and finished is not None:
        finished = created + timedelta(seconds=constant_run_seconds)
    stamps = {"created_at": render(form, created)}
    if finished is not None:
        stamps["finished_at"] = render(form, finished)
    return stamps


def render(form: str, moment: datetime) -> str | float | int:
    """One aware UTC moment in a stamp form (not ``absent``)."""
    if form == "naive":
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds")
    if form == "epoch_s":
        return (moment - EPOCH).total_seconds()
    if form == "epoch_ms":
        # Integer arithmetic on the timedelta: exact, where float seconds x 1000 may not be.
        return (moment - EPOCH) // timedelta(milliseconds=1)
    return moment.isoformat(timespec="microseconds")


def parse_timing(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Profile values for the timing keys present in ``raw`` (others are ignored).

    Raises TimingError naming the key; the caller adds where the profile came from.
    """
    values: dict[str, Any] = {}
    if "timestamps" in raw:
        values["timestamps"] = _choice(raw["timestamps"], "timestamps", TIMESTAMP_FORMS)
    if "created_at" in raw:
        values["created_at"] = _choice(raw["created_at"], "created_at", CREATED_AT)
    if "timestamp_skew_seconds" in raw:
        skew = _signed(raw["timestamp_skew_seconds"], "timestamp_skew_seconds")
        values["timestamp_skew_seconds"] = skew
    if "constant_run_seconds" in raw:
        seconds = _signed(raw["constant_run_seconds"], "constant_run_seconds")
        if seconds <= 0:
            raise TimingError(f"constant_run_seconds must be > 0, got {seconds:g}")
        values["constant_run_seconds"] = seconds
    if "run_time_scale" in raw:
        values["run_time_scale"] = _run_time_scale(raw["run_time_scale"])
    return values


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise TimingError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _signed(value: Any, key: str) -> float:
    """A finite number of seconds, negative allowed, within :data:`MAX_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimingError(f"{key} must be a number of seconds, got {value!r}")
    if abs(value) > MAX_SECONDS:
        raise TimingError(f"{key} must be within ±{MAX_SECONDS:g} seconds, got {value!r}")
    return float(value)


def _run_time_scale(raw: Any) -> RunTimeScale:
    if raw is None:
        return RunTimeScale()
    if not isinstance(raw, Mapping):
        raise TimingError(
            f"run_time_scale must be a mapping with clip_seconds and resolutions, got {raw!r}"
        )
    known = ("clip_seconds", "resolutions")
    unknown = set(raw) - set(known)
    if unknown:
        raise TimingError(
            f"run_time_scale: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: "
            + ", ".join(known)
        )
    clip = raw.get("clip_seconds", False)
    if not isinstance(clip, bool):
        raise TimingError(f"run_time_scale.clip_seconds must be true or false, got {clip!r}")
    resolutions = raw.get("resolutions") or {}
    if not isinstance(resolutions, Mapping):
        raise TimingError(f"run_time_scale.resolutions must map values to factors: {resolutions!r}")
    factors: dict[str, float] = {}
    for name, factor in resolutions.items():
        if not isinstance(name, str):
            # YAML 1.1 reads an unquoted 16:9 as the number 969 (base 60); such a key
            # would never match the payload's "16:9", so it is refused, not ignored.
            raise TimingError(
                f"run_time_scale.resolutions keys are strings (quote values like "
                f'"16:9"), got {name!r}'
            )
        at = f"run_time_scale.resolutions.{name}"
        number = isinstance(factor, int | float) and not isinstance(factor, bool)
        if not number or not math.isfinite(factor) or factor <= 0:
            raise TimingError(f"{at} must be a number > 0, got {factor!r}")
        factors[name] = float(factor)
    return RunTimeScale(clip_seconds=clip, resolutions=factors)
