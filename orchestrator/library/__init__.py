"""The public Python API (re-exported by :mod:`orchestrator`): batches from manifests,
dicts or rows; checking, planning, enqueueing and running them; the simulator; reading a
store. The command line is a thin layer over these functions.

Every function raises :class:`~orchestrator.problems.InputError` for input it cannot use;
its ``problems`` name the file, line, job and field of each mistake.
"""

from __future__ import annotations

from orchestrator.engine.runner import Connection
from orchestrator.library.api import enqueue, plan, run, run_async, validate
from orchestrator.library.batch import Api, Batch, Db
from orchestrator.library.checking import CatalogOptions
from orchestrator.library.reading import export, jobs, report, status
from orchestrator.library.results import Enqueued, Plan, RunResult, Status, Validation
from orchestrator.library.running import drain_async
from orchestrator.library.settings import RunOptions, engine_settings
from orchestrator.library.simulation import Simulation, simulate
from orchestrator.problems import InputError, Problem

__all__ = [
    "Api",
    "Batch",
    "CatalogOptions",
    "Connection",
    "Db",
    "Enqueued",
    "InputError",
    "Plan",
    "Problem",
    "RunOptions",
    "RunResult",
    "Simulation",
    "Status",
    "Validation",
    "drain_async",
    "engine_settings",
    "enqueue",
    "export",
    "jobs",
    "plan",
    "report",
    "run",
    "run_async",
    "simulate",
    "status",
    "validate",
]
