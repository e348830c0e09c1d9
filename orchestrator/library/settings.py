"""What a run may do, typed: the options a caller sets and the engine settings they give.

:func:`engine_settings` is the one mapping from a batch's manifest settings and a caller's
:class:`RunOptions` to :class:`~orchestrator.engine.settings.EngineSettings` (the command
line's ``run`` and ``work`` options are the same :class:`RunOptions`). A run against the
simulator (``time_scale`` given) polls and backs off on the simulator's shorter seconds.

>>> settings = engine_settings("b", None, RunOptions(max_in_flight=3), time_scale=None)
>>> settings.batch, settings.max_in_flight, settings.poll.minimum
('b', 3, 0.5)
>>> engine_settings(None, None, RunOptions(max_in_flight=0), time_scale=None)
Traceback (most recent call last):
...
orchestrator.problems.InputError: <options>: field 'max_in_flight': must be at least 1, got 0
>>> engine_settings(None, None, RunOptions(max_spend="5"), time_scale=None)
Traceback (most recent call last):
...
orchestrator.problems.InputError: <options>: field 'max_spend': needs a number, got '5'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from orchestrator.defaults import DEFAULT_FETCH_PATIENCE
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.paidwork import FetchPolicy
from orchestrator.engine.settings import EngineSettings
from orchestrator.problems import InputError, Problem, show_value

if TYPE_CHECKING:
    from orchestrator.manifest import BatchSettings, Expansion

#: Where an option's problem says it was given.
OPTIONS = "<options>"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """A caller's overrides of a batch's limits and of the engine's defaults.

    ``None`` keeps the manifest's value (or the default). ``max_spend`` is stored with the
    batch, so every worker draining it holds the same cap.
    """

    max_in_flight: int | None = None
    """Jobs submitted and not finished, at most (default: the manifest's, else 8)."""
    max_spend: float | None = None
    """Stop submitting before this many USD are spent or committed."""
    poll_min: float | None = None
    """Shortest wait between two status polls of a job, in seconds."""
    poll_max: float | None = None
    """Longest wait between two status polls of a job, in seconds."""
    fetch_patience: float | None = None
    """How long a paid video whose download fails is fetched again before it pauses (1200 s;
    simulated seconds against the simulator)."""
    lease_seconds: float | None = None
    """How long this worker's jobs stay its own without a heartbeat (60 s)."""
    cancel_on_exit: bool = False
    """When the run is stopped, cancel remote jobs that are still queued."""


def _checked(
    value: float | None, name: str, minimum: float, *, integer: bool = False
) -> float | None:
    """``value`` when it is a number of at least ``minimum`` (a whole one if ``integer``),
    else an :class:`InputError` naming the option."""
    if value is None:
        return None
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind):
        wanted = "a whole number" if integer else "a number"
        raise InputError(
            [Problem(f"needs {wanted}, got {show_value(value)}", OPTIONS, None, field=name)]
        )
    if value < minimum:
        raise InputError(
            [Problem(f"must be at least {minimum:g}, got {show_value(value)}", OPTIONS, field=name)]
        )
    return value


def poll_policy(options: RunOptions, time_scale: float | None) -> PollPolicy:
    """Poll bounds: the defaults suit real run times (a minute or more); the simulator
    runs minutes in seconds (``time_scale``) and is polled on the same schedule, scaled;
    ``poll_min`` / ``poll_max`` override either."""
    policy = PollPolicy()
    if time_scale is not None:
        policy = policy.scaled(time_scale)
    low = _checked(options.poll_min, "poll_min", 0.001) or policy.minimum
    high = _checked(options.poll_max, "poll_max", 0.001) or max(policy.maximum, low)
    return replace(policy, minimum=low, maximum=max(low, high))


def engine_settings(
    batch: str | None,
    manifest: BatchSettings | None,
    options: RunOptions,
    *,
    time_scale: float | None,
) -> EngineSettings:
    """The engine's settings for a run of ``batch`` (every batch when None).

    ``manifest``: the batch's own settings (its limits and retries), when known;
    ``time_scale``: real seconds per simulated second when the API is the simulator.
    Raises :class:`~orchestrator.problems.InputError` for an option out of range.
    """
    limits = manifest.limits if manifest else None
    retry = manifest.retry if manifest else None
    in_flight = _checked(options.max_in_flight, "max_in_flight", 1, integer=True)
    max_spend = _checked(options.max_spend, "max_spend", 0)
    if max_spend is None and limits is not None:
        max_spend = limits.max_spend
    lease = _checked(options.lease_seconds, "lease_seconds", 1)
    patience = _checked(options.fetch_patience, "fetch_patience", 0.01) or DEFAULT_FETCH_PATIENCE
    fast = time_scale is not None  # simulated minutes last seconds: poll accordingly
    return EngineSettings(
        batch=batch,
        max_in_flight=int(in_flight or (limits.max_in_flight if limits else 8)),
        max_in_flight_per_model=limits.max_in_flight_per_model if limits else None,
        submits_per_second=limits.submits_per_second if limits else None,
        max_downloads=limits.max_downloads if limits else 4,
        max_spend=max_spend,
        base_delay=0.05 if fast else (retry.base_delay if retry else 2.0),
        max_delay=2.0 if fast else (retry.max_delay if retry else 300.0),
        poll=poll_policy(options, time_scale),
        # Fetches of paid videos outlast an outage (20 minutes by default) before they
        # pause: simulated minutes against the simulator.
        fetch=FetchPolicy.lasting(patience * (time_scale or 1.0)),
        idle_check=0.1 if fast else 0.5,
        cancel_on_exit=options.cancel_on_exit,
        lease_seconds=lease or 60.0,
    )


def with_spend_cap(expansion: Expansion, max_spend: float | None) -> Expansion:
    """``expansion`` with ``max_spend`` as its batch's cap: the cap is stored with the
    batch, so every worker draining it holds it too."""
    if max_spend == expansion.settings.limits.max_spend:
        return expansion
    limits = replace(expansion.settings.limits, max_spend=max_spend)
    return replace(expansion, settings=replace(expansion.settings, limits=limits))
