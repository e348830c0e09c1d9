"""Simulator profiles: how many slots, how long each model runs, what it costs, what breaks.

A profile is YAML. Every key is optional; the built-in profiles live beside this module:
``calm``, ``flaky``, ``hostile``, ``outages`` (calm, plus a few file-host outages of each
kind in its first ten simulated minutes), and calm with one timing variant each:
``stamps-absent``, ``stamps-constant``, ``stamps-skewed`` (+3 h), ``stamps-naive`` (no
offset, -5 h), ``stamps-epoch-ms`` and ``runs-vary`` (run times per model, clip length and
resolution)::

    slots: 8                      # concurrent jobs per account; the rest wait in a FIFO queue
    time_scale: 0.01              # real seconds per simulated second (60 s of work -> 0.6 s)
    seed: 7                       # makes fault decisions and durations reproducible
    balance_usd: null             # a number makes submits fail with 402 once it runs out
    durations:                    # simulated seconds per model (or "default")
      default: {distribution: uniform, low: 40, high: 80}
      runwayml/runway-gen-4/turbo/image-to-video: {distribution: fixed, seconds: 30}
    prices: {default: 0.1}        # USD per second of video (per video when the model's
                                  # price_unit is output); a model whose catalog entry has
                                  # a price (the invented ones) costs that unless named
                                  # here (see .served)
    publish_prices: true          # false: the catalog says base_price_usd: null
    schema_changes:               # the served and enforced schema differs from the file:
      acme/wonder-video/v2/image-to-video:
        clip_seconds: {enum: [4, 8, 12]}   # also minimum, maximum, minLength, maxLength,
                                           # default; null removes the keyword
    url_ttl: 3600                 # simulated seconds a download URL stays valid
    faults:                       # probability of each fault, per request
      rate_limit: 0.02            # 429 with Retry-After ...
      result_wrong_request_id: 0  # hostile replies (per request unless said otherwise):
      status_wrong_request_id: 0  #   the reply of another job of the account (its
                                  #   request_id, state and output; a made-up id if none)
      result_bad_url: 0           #   per job: completes with output.video an ftp:, file:,
                                  #   relative, rooted, javascript: or data: URL (one of
                                  #   them, by request id; the same on every /result)
      status_retry_after_huge: 0  #   per job: its first /status answers 429 with
                                  #   Retry-After: retry_after_huge_seconds (86400)
      submit_retry_after_huge: 0  #   per payload: its first submit answers that 429
                                  #   (nothing is created)
    file_outages:                 # windows when the file host is down (simulated seconds)
      - {after: 60, seconds: 45, kind: error}   # every download answers 5xx
      - {after: 300, seconds: 90, kind: refuse} # its listener is closed: ECONNREFUSED
    timestamps: iso               # how /result stamps created_at and finished_at:
                                  # iso (ISO 8601, microseconds, +00:00), naive (no offset),
                                  # epoch_s (float seconds), epoch_ms (integer ms), absent
                                  # (neither field), constant (iso, but finished_at is always
                                  # created_at + constant_run_seconds)
    timestamp_skew_seconds: 0     # added to every stamp, may be negative (a clock hours off)
    constant_run_seconds: 60      # > 0, real seconds, for timestamps: constant
    created_at: submit            # submit (accepted) or start (left the queue; the submit
                                  # time while it is still queued)
    run_time_scale:               # multiplies each sampled run time
      clip_seconds: false         # true: x (the clip's seconds / 5)
      resolutions: {}             # e.g. {"480p": 0.6, "1080p": 2.0}: x the factor of the
                                  # payload's resolution (else its ratio); others x 1
    file_tricks:                  # hostile file-host replies, all off (see .tricks):
      truncate_faststart: false   # a faststart copy cut to 60 %, Content-Length matching
      redirect_hops: 0            # N 302s first (file host name <-> address, same listener)
      redirect_untrusted: false   # the last 302 to https://untrusted.invalid:PORT instead
      gzip_videos: false          # the body gzipped, with Content-Encoding: gzip
      drip_seconds: 0             # > 0: one byte per this many simulated seconds
      first_downloads: null       # only the first N downloads of each video (null: all)

An outage opens at the first file-host request at or after ``after`` (default 0; that
request already meets it) and lasts ``seconds`` from then; ``kind`` defaults to ``error``.

``schema_changes`` stands for RunComfy changing a model's schema under a client: what
``GET /v1/models`` serves and what submits are validated against both follow it. Its models
and fields are checked against the simulator's default catalog (:func:`.served.default_catalog`);
an unknown one is a ProfileError. A running simulator changes a field with
:meth:`.state.Simulator.change_field`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.simulator.served import (
    SchemaChangeError,
    apply_changes,
    check_change,
    default_catalog,
)
from orchestrator.simulator.timing import TIMING_KEYS, RunTimeScale, TimingError, parse_timing
from orchestrator.simulator.tricks import FileTricks, TrickError, parse_file_tricks

if TYPE_CHECKING:
    import random

BUILTIN_PROFILES = (
    "calm",
    "flaky",
    "hostile",
    "outages",
    "stamps-absent",
    "stamps-constant",
    "stamps-skewed",
    "stamps-naive",
    "stamps-epoch-ms",
    "runs-vary",
)
OUTAGE_KINDS = ("error", "refuse")
DISTRIBUTIONS = ("fixed", "uniform", "lognormal")
#: Top-level settings checked as numbers >= 0 (``None`` allowed where the default is None)
#: and as whole numbers, so a bad value fails here rather than in the middle of a request.
NUMBER_KEYS = ("time_scale", "url_ttl", "balance_usd", "record_ttl", "video_seconds")
NULLABLE_KEYS = ("balance_usd", "record_ttl", "video_seconds")
WHOLE_KEYS = (
    "slots",
    "seed",
    "submit_status",
    "queue_position_base",
    "video_fps",
    "video_max_side",
)


#: Fault settings that are not probabilities (seconds).
FAULT_SETTINGS = ("slow_seconds", "retry_after_seconds", "retry_after_huge_seconds")
#: Faults no built-in profile enables: each parks a job for a person or holds it for
#: minutes, which would change what the soaks' and benchmarks' figures mean.
HOSTILE_REPLY_FAULTS = (
    "result_wrong_request_id",
    "status_wrong_request_id",
    "result_bad_url",
    "status_retry_after_huge",
    "submit_retry_after_huge",
)


class ProfileError(ValueError):
    """A profile file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Duration:
    """How long a model runs, in simulated seconds."""

    distribution: str = "fixed"
    seconds: float = 60.0
    low: float = 30.0
    high: float = 90.0
    sigma: float = 0.3

    def sample(self, rng: random.Random) -> float:
        """One run time (never below 0.1 simulated seconds)."""
        if self.distribution == "fixed":
            value = self.seconds
        elif self.distribution == "uniform":
            value = rng.uniform(self.low, self.high)
        else:
            value = rng.lognormvariate(math.log(self.seconds), self.sigma)
        return max(0.1, value)


@dataclass(frozen=True, slots=True)
class Faults:
    """Probability of each fault per request (0 = never). Every route can fail with 5xx."""

    rate_limit: float = 0.0  # 429 with a Retry-After header
    rate_limit_bare: float = 0.0  # 429 without Retry-After
    server_error: float = 0.0  # 500/502/503 on any API route, before doing anything
    submit_accepted_then_error: float = 0.0  # the job is created, the reply is a 500
    slow_reply: float = 0.0  # the reply waits ``slow_seconds`` (real) before it is sent
    connection_drop: float = 0.0  # headers sent, then the connection is closed
    job_failed: float = 0.0  # the job fails: /status and /result say ``failed``
    job_failed_result_only: float = 0.0  # /status says ``completed``, /result ``failed``
    no_output: float = 0.0  # completed, but the result holds no output URL
    expired_url: float = 0.0  # a download URL answers 403 as if it had expired
    truncated_download: float = 0.0  # honest Content-Length, body cut short
    # Hostile replies (no built-in profile enables them: see HOSTILE_REPLY_FAULTS).
    result_wrong_request_id: float = 0.0  # a /result reply is another job's (id and output)
    status_wrong_request_id: float = 0.0  # a /status reply is another job's (id and state)
    result_bad_url: float = 0.0  # the job completes with an output URL no client can fetch
    status_retry_after_huge: float = 0.0  # a job's first /status: 429, huge Retry-After
    submit_retry_after_huge: float = 0.0  # a payload's first submit: 429, huge Retry-After
    slow_seconds: float = 3.0
    retry_after_seconds: int = 1
    retry_after_huge_seconds: int = 86_400

    def any_http_fault(self) -> bool:
        return any(
            getattr(self, name) > 0
            for name in (
                "rate_limit",
                "rate_limit_bare",
                "server_error",
                "slow_reply",
                "connection_drop",
            )
        )


@dataclass(frozen=True, slots=True)
class FileOutage:
    """One planned file-host outage, in simulated seconds (see :mod:`.outages`)."""

    seconds: float
    after: float = 0.0
    kind: str = "error"  # error: downloads answer 5xx; refuse: connections are refused


@dataclass(frozen=True)
class Profile:
    """Everything that shapes one simulated account."""

    name: str = "calm"
    slots: int = 8
    time_scale: float = 1.0
    seed: int = 0
    balance_usd: float | None = None
    durations: Mapping[str, Duration] = field(default_factory=lambda: {"default": Duration()})
    prices: Mapping[str, float] = field(default_factory=lambda: {"default": 0.1})
    url_ttl: float = 3600.0
    record_ttl: float | None = None
    submit_status: int = 200
    queue_position_base: int = 1
    video_fps: int = 8
    video_max_side: int = 320
    video_seconds: float | None = None
    publish_prices: bool = True
    """False: ``GET /v1/models/{id}`` gives ``base_price_usd: null`` (the docs never
    promise a price), while submits are still billed at ``prices``."""
    faults: Faults = field(default_factory=Faults)
    schema_changes: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    file_outages: tuple[FileOutage, ...] = ()
    # Timing variants (see :mod:`.timing`): what /result stamps and how run times scale.
    timestamps: str = "iso"
    timestamp_skew_seconds: float = 0.0
    constant_run_seconds: float = 60.0
    created_at: str = "submit"
    run_time_scale: RunTimeScale = field(default_factory=RunTimeScale)
    file_tricks: FileTricks = field(default_factory=FileTricks)

    def duration_for(self, model_id: str) -> Duration:
        return self.durations.get(model_id) or self.durations.get("default") or Duration()

    def price_for(self, model_id: str) -> float:
        return float(self.prices.get(model_id, self.prices.get("default", 0.0)))

    def with_overrides(self, **changes: Any) -> Profile:
        """A copy with some settings replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_profile(name_or_path: str | Path | None) -> Profile:
    """A built-in profile by name (one of :data:`BUILTIN_PROFILES`) or a YAML file."""
    if name_or_path is None:
        name_or_path = "calm"
    text: str
    label = str(name_or_path)
    if label in BUILTIN_PROFILES:
        text = (resources.files("orchestrator.simulator") / "profiles" / f"{label}.yaml").read_text(
            "utf-8"
        )
    else:
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(
                f"{path}: cannot read the profile ({exc.strerror}); built-in profiles: "
                + ", ".join(BUILTIN_PROFILES)
            ) from exc
        label = path.stem
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{name_or_path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{name_or_path}: a profile is a YAML mapping")
    return parse_profile(raw, name=str(raw.pop("name", label)), origin=str(name_or_path))


def parse_profile(raw: Mapping[str, Any], *, name: str = "custom", origin: str = "") -> Profile:
    """Build a profile from a mapping; unknown keys and bad values raise ProfileError."""
    where = f"{origin}: " if origin else ""
    known = {f.name for f in fields(Profile)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ProfileError(
            f"{where}unknown profile key(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(known))
        )
    values: dict[str, Any] = {"name": name}
    for key, value in raw.items():
        if key in ("durations", "prices", "faults") and not isinstance(value, Mapping | None):
            raise ProfileError(f"{where}{key} must be a mapping, got {value!r}")
        if key == "durations":
            durations = (value or {}).items()
            values[key] = {str(m): _duration(d, f"{where}durations.{m}") for m, d in durations}
        elif key == "prices":
            prices = (value or {}).items()
            values[key] = {str(m): _number(p, f"{where}prices.{m}") for m, p in prices}
        elif key == "faults":
            values[key] = _faults(value or {}, where)
        elif key == "file_outages":
            values[key] = _file_outages(value, where)
        elif key == "schema_changes":
            values[key] = _schema_changes(value, where)
        elif key == "file_tricks":
            try:
                values[key] = parse_file_tricks(value)
            except TrickError as exc:
                raise ProfileError(f"{where}{exc}") from exc
        elif key in TIMING_KEYS:
            continue  # parsed together below
        elif key in NUMBER_KEYS and not (value is None and key in NULLABLE_KEYS):
            values[key] = _number(value, f"{where}{key}")
        elif key == "publish_prices" and not isinstance(value, bool):
            raise ProfileError(f"{where}publish_prices must be true or false, got {value!r}")
        elif key in WHOLE_KEYS and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProfileError(f"{where}{key} must be a whole number, got {value!r}")
        else:
            values[key] = value
    try:
        values.update(parse_timing(raw))
    except TimingError as exc:
        raise ProfileError(f"{where}{exc}") from exc
    profile = Profile(**values)
    if not isinstance(profile.slots, int) or profile.slots < 1:
        raise ProfileError(f"{where}slots must be a whole number >= 1")
    if _number(profile.time_scale, f"{where}time_scale") <= 0:
        raise ProfileError(f"{where}time_scale must be > 0")
    if not 200 <= profile.submit_status <= 299:
        raise ProfileError(f"{where}submit_status must be a 2xx code")
    if profile.video_fps < 1 or profile.video_max_side < 2:
        raise ProfileError(f"{where}video_fps must be >= 1 and video_max_side >= 2")
    return profile


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProfileError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


def _duration(raw: Any, where: str) -> Duration:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return Duration(seconds=_number(raw, where))
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{where} must be seconds or a mapping with a distribution")
    distribution = raw.get("distribution", "fixed")
    if distribution not in DISTRIBUTIONS:
        raise ProfileError(f"{where}: distribution must be one of {', '.join(DISTRIBUTIONS)}")
    numbers = {k: _number(v, f"{where}.{k}") for k, v in raw.items() if k != "distribution"}
    if distribution == "lognormal" and numbers.get("seconds", 1.0) <= 0:
        raise ProfileError(f"{where}: a lognormal duration needs seconds > 0 (its median)")
    try:
        return Duration(distribution=distribution, **numbers)
    except TypeError as exc:
        raise ProfileError(f"{where}: {exc}") from exc


def _faults(raw: Mapping[str, Any], where: str) -> Faults:
    known = {f.name for f in fields(Faults)}
    unknown = set(raw) - known
    if unknown:
        raise ProfileError(
            f"{where}unknown fault(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(known))
        )
    values: dict[str, Any] = {k: _number(v, f"{where}faults.{k}") for k, v in raw.items()}
    for key, value in values.items():
        if key not in FAULT_SETTINGS and value > 1:
            raise ProfileError(f"{where}faults.{key} is a probability (0 to 1), got {value}")
    for key in ("retry_after_seconds", "retry_after_huge_seconds"):
        if key in values:
            values[key] = int(values[key])
    return Faults(**values)


def _schema_changes(raw: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model_id: {field: {keyword: value}}}``, checked against the default catalog."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{where}schema_changes must map model ids to {{field: changes}}")
    changes: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for model_id, fields in raw.items():
            at = f"schema_changes.{model_id}"
            if not isinstance(fields, Mapping) or not fields:
                raise SchemaChangeError(f"{at} must map field names to changes")
            changes[str(model_id)] = {
                str(name): check_change(change, f"{at}.{name}") for name, change in fields.items()
            }
        # Applied to a throwaway copy, so a typo fails when the profile is read.
        apply_changes(default_catalog(), changes)
    except SchemaChangeError as exc:
        text = str(exc)
        if not text.startswith("schema_changes"):
            text = f"schema_changes: {text}"
        raise ProfileError(f"{where}{text}") from exc
    return changes


def _file_outages(raw: Any, where: str) -> tuple[FileOutage, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProfileError(
            f"{where}file_outages must be a list of {{after, seconds, kind}}, got {raw!r}"
        )
    known = {f.name for f in fields(FileOutage)}
    outages = []
    for index, item in enumerate(raw):
        at = f"{where}file_outages[{index}]"
        if not isinstance(item, Mapping):
            raise ProfileError(f"{at} must be a mapping with seconds, after and kind")
        unknown = set(item) - known
        if unknown:
            raise ProfileError(
                f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: "
                + ", ".join(sorted(known))
            )
        if "seconds" not in item:
            raise ProfileError(f"{at}: seconds (how long the outage lasts) is required")
        seconds = _number(item["seconds"], f"{at}.seconds")
        if seconds <= 0:
            raise ProfileError(f"{at}.seconds must be > 0, got {item['seconds']!r}")
        kind = item.get("kind", "error")
        if kind not in OUTAGE_KINDS:
            raise ProfileError(f"{at}.kind must be one of {', '.join(OUTAGE_KINDS)}, got {kind!r}")
        after = _number(item.get("after", 0), f"{at}.after")
        outages.append(FileOutage(seconds=seconds, after=after, kind=str(kind)))
    return tuple(outages)
