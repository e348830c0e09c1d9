"""Run times learned from what the engine saw, with the server's stamps only as a witness.

RunComfy's docs never define ``created_at`` and ``finished_at``: a stand-in may send them
naive, in epoch milliseconds, hours off, constant, or not at all. The engine's own looks
bracket every run instead: the job started after the last look that said ``in_queue`` (or
the POST) and before the first look that said it was running or done; it finished after
the last look that said running and before the first look that said done. A server
duration is used only when it falls inside that bracket (:func:`evidence_from`); otherwise
the bracket itself teaches the estimate (:meth:`Estimate.learn`).

Estimates are kept per :func:`timing_key` (model, clip length, resolution): a 10 s clip
must not teach the 5 s one.

>>> seen = Sightings(sent=0.0, accepted=0.1).saw("in_progress", 2.0).saw("in_progress", 9.0)
>>> seen.saw("completed", 10.0).run_between()
(7.0, 10.0)
>>> Estimate.first(20.0).learn(Evidence(19.0, 21.0)).typical
20.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Numbers above this are epoch milliseconds (1e11 seconds is the year 5138).
EPOCH_MS_ABOVE = 1e11
#: A bracket narrower than this share of its midpoint is a measurement, not a hint.
TIGHT = 0.5
#: How fast the estimate follows new runs once it has a few (EWMA weight).
WEIGHT = 0.2
#: The spread assumed for a key seen once, and the bounds of any spread, as shares of
#: the typical run time (a spread of 0 would aim every first look exactly at a guess).
FIRST_SPREAD, MIN_SPREAD, MAX_SPREAD = 0.25, 0.05, 0.5
#: The share of runs done at their first look above which an estimate is too high.
TOO_EARLY = 0.8
RUNNING = frozenset({"in_progress", "running"})
QUEUED = frozenset({"in_queue", "queued", "pending"})


def timing_key(model_id: str, payload: Mapping[str, Any], clip_seconds: float | None) -> str:
    """What a run time depends on: the model, the clip's length and its resolution.

    >>> timing_key("m", {"resolution": "1080p"}, 10.0)
    'm|10s|1080p'
    >>> timing_key("m", {"ratio": "1280:720"}, None)
    'm|-|1280:720'
    """
    size = payload.get("resolution") or payload.get("ratio") or "-"
    length = "-" if clip_seconds is None else f"{clip_seconds:g}s"
    return f"{model_id}|{length}|{str(size)[:40]}"


def parse_stamp(value: object) -> float | None:
    """Seconds since the epoch for a server timestamp in any common form, or None.

    ISO 8601 with or without a zone (a naive stamp is read as UTC: only differences
    between two stamps of one server are used), epoch seconds or epoch milliseconds, as a
    number or as text.

    >>> parse_stamp("2026-12-01T10:00:00+00:00") == parse_stamp("2026-12-01T10:00:00")
    True
    >>> parse_stamp(1764583200000) == parse_stamp("1764583200")
    True
    >>> parse_stamp("yesterday") is None and parse_stamp(True) is None
    True
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            number = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    else:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number / 1000.0 if number > EPOCH_MS_ABOVE else number


@dataclass(frozen=True, slots=True)
class Sightings:
    """What the engine saw of one job, on its own monotonic clock (seconds).

    ``sent`` is when the POST went out (``-inf`` for a job adopted after a restart, whose
    submit this process never saw).
    """

    sent: float
    accepted: float
    queued_until: float | None = None
    running_from: float | None = None
    running_until: float | None = None
    done_at: float | None = None

    @classmethod
    def adopted(cls) -> Sightings:
        return cls(sent=-math.inf, accepted=-math.inf)

    def saw(self, status: str, at: float, *, asked: float | None = None) -> Sightings:
        """The same job after a look said ``status``: its reply came back at ``at``, its
        request went out at ``asked`` (default ``at``). The server saw the job somewhere in
        between, so each bound takes the end that is sure: still queued or still running
        proves only the moment asked, started or finished only the moment answered (a
        reply read late, on a slow link or a busy machine, never stretches a bound).

        >>> seen = Sightings(0.0, 0.1).saw("in_progress", 1.0, asked=0.5)
        >>> seen = seen.saw("in_progress", 8.0, asked=6.0)  # a reply read 2 s late
        >>> seen.saw("completed", 10.0, asked=9.5).run_between()
        (5.0, 10.0)
        """
        since = at if asked is None else min(asked, at)
        if status in QUEUED:
            return replace(self, queued_until=since)
        if status in RUNNING:
            first = self.running_from if self.running_from is not None else at
            return replace(self, running_from=first, running_until=since)
        return self if self.done_at is not None else replace(self, done_at=at)

    @property
    def running_since(self) -> float:
        """The earliest moment the job can have started (what a schedule counts from)."""
        if self.queued_until is not None:
            return self.queued_until
        if math.isfinite(self.sent):
            return self.sent
        return self.running_from if self.running_from is not None else self.accepted

    def started_between(self) -> tuple[float, float]:
        low = self.queued_until if self.queued_until is not None else self.sent
        high = self.running_from if self.running_from is not None else self.done_at
        return low, math.inf if high is None else high

    def finished_between(self) -> tuple[float, float]:
        candidates = (self.running_until, self.queued_until)
        low = max([c for c in candidates if c is not None], default=self.sent)
        return low, math.inf if self.done_at is None else self.done_at

    def run_between(self) -> tuple[float, float]:
        """Bounds on the run time (start to finish) that these looks prove."""
        start_low, start_high = self.started_between()
        finish_low, finish_high = self.finished_between()
        return max(0.0, finish_low - start_high), finish_high - start_low


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one finished job says about its run time: bounds, and a value when a server
    stamp inside the bounds gave one. ``verdict`` says how the stamps fared."""

    low: float
    high: float
    exact: float | None = None
    verdict: str = "absent"  # agree | absent | contradict

    @property
    def tight(self) -> bool:
        middle = (self.low + self.high) / 2
        return math.isfinite(self.high) and self.high - self.low <= TIGHT * middle


def evidence_from(
    seen: Sightings,
    created_at: object,
    started_at: object,
    finished_at: object,
    *,
    slack: float,
) -> Evidence:
    """Check the server's stamps against the engine's own bracket of the run.

    A server duration counts only inside the bracket, give or take ``slack`` seconds (the
    request round trips). ``created_at`` may mark the submit or the start: as the start it
    must fit the run's bracket; as the submit, the submit-to-finish bracket, and then it
    only narrows the finish.

    >>> seen = Sightings(0.0, 0.1).saw("in_progress", 1.0).saw("completed", 40.0)
    >>> evidence_from(seen, 1000.0, None, 1030.0, slack=0.1).exact
    30.0
    >>> evidence_from(seen, 1000.0, None, 1100.0, slack=0.1).verdict
    'contradict'
    """
    low, high = seen.run_between()
    finished = parse_stamp(finished_at)
    begun = parse_stamp(started_at)
    created = parse_stamp(created_at)
    if finished is None or (begun is None and created is None):
        return Evidence(low, high)
    if begun is not None:
        duration = finished - begun
        if low - slack <= duration <= high + slack:
            return Evidence(low, high, min(high, max(low, duration)), "agree")
        return Evidence(low, high, verdict="contradict")
    assert created is not None
    duration = finished - created
    as_start = low - slack <= duration <= high + slack
    # created_at as the submit: the finish is then the POST plus the duration.
    finish_low, finish_high = seen.finished_between()
    earliest, latest = seen.sent + duration, seen.accepted + duration
    as_submit = earliest <= finish_high + slack and latest >= finish_low - slack
    if as_start and not (as_submit and seen.queued_until is not None):
        return Evidence(low, high, min(high, max(low, duration)), "agree")
    if as_submit:
        # A job seen queued took longer than its run from submit to finish: read the
        # stamps as submit-to-finish, which pins the finish but not the start.
        start_low, start_high = seen.started_between()
        narrow_low = max(0.0, max(finish_low, earliest) - start_high)
        narrow_high = min(finish_high, latest) - start_low
        return Evidence(narrow_low, max(narrow_low, narrow_high), verdict="agree")
    return Evidence(low, high, verdict="contradict")


@dataclass(frozen=True, slots=True)
class Estimate:
    """A key's typical run time and its spread (seconds), from ``samples`` runs.

    ``early`` is the share of recent runs already done at the look aimed at the typical
    finish (about half when the estimate is right; near one when it is too high).

    >>> Estimate.first(40.0).high
    50.0
    """

    typical: float
    spread: float
    samples: int = 1
    early: float = 0.5

    @classmethod
    def first(cls, seconds: float) -> Estimate:
        return cls(seconds, FIRST_SPREAD * seconds, 1)

    @property
    def high(self) -> float:
        """The late end of the key's runs: most have finished by then."""
        return self.typical + self.spread

    @property
    def too_high(self) -> bool:
        """Nearly every run is done before its first look: the estimate is too high."""
        return self.early > TOO_EARLY

    def learn(self, evidence: Evidence) -> Estimate:
        """The estimate after one more finished run (unchanged when the run says nothing
        new: a wide bracket around the estimate is consistent with it)."""
        done_early = _done_by_first_look(evidence, self)
        early = self.early + WEIGHT * (float(done_early) - self.early)
        sample = _sample(evidence, self)
        if sample is None:
            return replace(self, early=early)
        weight = max(WEIGHT, 1.0 / (self.samples + 1))
        if done_early and self.too_high:
            weight = max(weight, 0.5)  # unlearn a wrong estimate fast
        typical = self.typical + weight * (sample - self.typical)
        spread = self.spread
        if evidence.exact is not None or evidence.tight:
            # Only measured runs say how much runs vary; a wide bracket that proves the
            # estimate wrong moves it, but its midpoint is no measure of the spread.
            spread += weight * (abs(sample - self.typical) - spread)
        spread = min(MAX_SPREAD * typical, max(MIN_SPREAD * typical, spread))
        return Estimate(typical, spread, self.samples + 1, early)


def first_estimate(evidence: Evidence) -> Estimate | None:
    """The estimate of a key from its first finished run (None when it says nothing)."""
    sample = _sample(evidence, None)
    return None if sample is None else Estimate.first(sample)


def _done_by_first_look(evidence: Evidence, estimate: Estimate) -> bool:
    return evidence.exact is None and evidence.high <= estimate.typical and not evidence.tight


def _sample(evidence: Evidence, estimate: Estimate | None) -> float | None:
    if evidence.exact is not None:
        return evidence.exact
    low, high = evidence.low, evidence.high
    if not math.isfinite(high):
        return None
    middle = (low + high) / 2
    if evidence.tight or estimate is None:
        return middle
    # A wide bracket still proves the estimate wrong when it lies wholly on one side.
    if high <= estimate.typical:
        # Done by a look at the typical finish: about half the runs are, when the estimate
        # is right. Nudge it down by a spread (the midpoint would drag a good estimate far
        # below most runs), unless nearly every run is: then it is too high, so halve it.
        return middle if estimate.too_high else max(middle, high - estimate.spread)
    if low >= estimate.typical:
        return middle
    return None
