"""Hostile replies: what a confused or malicious server answers instead of the truth.

Each is a fault of the profile (see :mod:`.profile`), decided by seed like every other:

- ``status_wrong_request_id`` / ``result_wrong_request_id``: the reply of another job of
  the account (its request id, state and output), per request;
- ``result_bad_url`` (a job outcome, see :mod:`.state`): ``output.video`` is a URL no
  client can download (:data:`.faults.BAD_URLS`);
- ``status_retry_after_huge`` / ``submit_retry_after_huge``: a job's first ``/status``, or
  a payload's first submit, answers 429 with ``Retry-After: retry_after_huge_seconds``.

Every fault that meets a job is counted in the ledger and on the job (``faults`` in its
timeline), so a test knows which jobs met which.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.simulator.queue import SimJob
    from orchestrator.simulator.state import Simulator

#: Faults that refuse only the first call of an identity, by route.
FIRST_CALL_FAULTS = {"status": "status_retry_after_huge", "submit": "submit_retry_after_huge"}


def refuses_first_call(sim: Simulator, route: str, identity: str) -> bool:
    """Whether this call (the first of ``identity`` on ``route``: a job's first /status, a
    payload's first submit) answers 429 with the huge Retry-After; later calls never do."""
    name = FIRST_CALL_FAULTS.get(route)
    chance = getattr(sim.profile.faults, name) if name else 0.0
    roll = sim.faults.first_draw(f"first:{route}", identity) if chance else None
    if name is None or roll is None or roll >= chance:
        return False
    note_fault(sim, sim.jobs.get(identity), name)
    return True


def impostor(sim: Simulator, owner: str, job: SimJob, fault: str) -> SimJob | None:
    """The job whose reply answers a request for ``job`` (``fault``'s chance, per request),
    or None for the truth: the account's latest other finished job (its video is the most
    damaging to accept), else its latest other job, else a stranger with ``job``'s state
    and output under a request id of its own."""
    chance = getattr(sim.profile.faults, fault)
    if not chance or sim.faults.draw(fault, job.request_id) >= chance:
        return None
    note_fault(sim, job, fault)
    now = sim.clock.now()
    others = [j for j in list(sim.jobs.values()) if j.owner == owner and j is not job]
    finished = [j for j in others if j.status_at(now) == "completed"]
    if finished or others:
        return (finished or others)[-1]
    stranger = str(uuid.uuid5(uuid.NAMESPACE_URL, job.request_id))
    return replace(job, request_id=stranger, extra={})


def note_fault(sim: Simulator, job: SimJob | None, name: str) -> None:
    """Count a fault in the ledger, and on the job it met."""
    sim.ledger.fault(name)
    if job is not None:
        faults = job.extra.setdefault("faults", {})
        assert isinstance(faults, dict)
        faults[name] = faults.get(name, 0) + 1


def add_fault_counts(sim: Simulator, timelines: Mapping[str, dict[str, Any]]) -> None:
    """Add ``faults`` (name -> count) to the ledger timeline of each job that met one."""
    for request_id, timeline in timelines.items():
        job = sim.jobs.get(request_id)
        faults = job.extra.get("faults") if job is not None else None
        if isinstance(faults, dict) and faults:
            timeline["faults"] = dict(faults)
