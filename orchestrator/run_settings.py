"""From a manifest's settings plus the options of a run to :class:`EngineSettings`.

The one place that decides what a run is allowed to do: the command line (``run``,
``work``) and the Python API both call :func:`engine_settings_for` with typed values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.defaults import DEFAULT_FETCH_PATIENCE, DEFAULT_SIM_TIME_SCALE
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.paidwork import FetchPolicy
from orchestrator.engine.settings import EngineSettings

if TYPE_CHECKING:
    from orchestrator.manifest import BatchSettings


def poll_policy_for(
    *,
    simulate: bool = False,
    sim_time_scale: float = DEFAULT_SIM_TIME_SCALE,
    poll_min: float | None = None,
    poll_max: float | None = None,
) -> PollPolicy:
    """Poll bounds: the defaults suit real run times (a minute or more); a simulated run
    lasts minutes in seconds and polls accordingly; ``poll_min``/``poll_max`` override.

    >>> policy = poll_policy_for(poll_min=90)
    >>> policy.minimum, policy.maximum >= 90
    (90, True)
    """
    policy = PollPolicy()
    if simulate:  # the simulator's seconds are shorter: the same schedule, scaled
        policy = policy.scaled(sim_time_scale)
    low = poll_min or policy.minimum
    high = poll_max or max(policy.maximum, low)
    return replace(policy, minimum=low, maximum=max(low, high))


def engine_settings_for(
    manifest: BatchSettings | None,
    *,
    batch: str | None,
    simulate: bool = False,
    sim_time_scale: float = DEFAULT_SIM_TIME_SCALE,
    max_in_flight: int | None = None,
    max_spend: float | None = None,
    poll_min: float | None = None,
    poll_max: float | None = None,
    fetch_patience: float | None = None,
    lease_seconds: float | None = None,
    cancel_on_exit: bool = False,
) -> EngineSettings:
    """The engine's settings for one run: the manifest's limits and retries (when given),
    overridden by the options that are not None.

    ``batch`` None drains every batch (``work``). ``simulate`` scales the waits to the
    simulator's clock (``sim_time_scale`` real seconds per simulated second).

    >>> engine_settings_for(None, batch=None).max_in_flight
    8
    >>> engine_settings_for(None, batch="b", max_spend=2.5).max_spend
    2.5
    """
    limits = manifest.limits if manifest else None
    retry = manifest.retry if manifest else None
    if max_spend is None and limits is not None:
        max_spend = limits.max_spend
    scale = sim_time_scale if simulate else 1.0  # simulated minutes last seconds
    patience = fetch_patience or DEFAULT_FETCH_PATIENCE
    return EngineSettings(
        batch=batch,
        max_in_flight=max_in_flight or (limits.max_in_flight if limits else 8),
        max_in_flight_per_model=limits.max_in_flight_per_model if limits else None,
        submits_per_second=limits.submits_per_second if limits else None,
        max_downloads=limits.max_downloads if limits else 4,
        max_spend=max_spend,
        base_delay=0.05 if simulate else (retry.base_delay if retry else 2.0),
        max_delay=2.0 if simulate else (retry.max_delay if retry else 300.0),
        poll=poll_policy_for(
            simulate=simulate, sim_time_scale=sim_time_scale, poll_min=poll_min, poll_max=poll_max
        ),
        # Fetches of paid videos outlast an outage (20 minutes by default) before they
        # pause: simulated minutes when simulated.
        fetch=FetchPolicy.lasting(patience * scale),
        idle_check=0.1 if simulate else 0.5,
        cancel_on_exit=cancel_on_exit,
        lease_seconds=lease_seconds or 60.0,
    )
