"""orchestrator: a durable batch orchestrator for RunComfy's image-to-video Model API.

A YAML manifest of prompt + image jobs expands into an SQLite-tracked queue; workers submit
them under concurrency limits, poll, retry and download the videos into organized folders.

The Python API (:mod:`orchestrator.library`) is imported on first use, so ``import
orchestrator`` and the command line's ``--help`` stay quick::

    import orchestrator

    batch = orchestrator.Batch.from_manifest("manifests/runway-gen-4-turbo.yaml")
    with orchestrator.simulate() as sim:
        result = batch.run(db="runs.db", api=sim)

>>> import orchestrator
>>> sorted(set(orchestrator.__all__) - set(dir(orchestrator.library)))
['__version__']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: The one version source: pyproject.toml reads it (hatch's dynamic version).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from orchestrator.library import (
        Api,
        Batch,
        CatalogOptions,
        Connection,
        Db,
        Enqueued,
        InputError,
        Plan,
        Problem,
        RunOptions,
        RunResult,
        Simulation,
        Status,
        Validation,
        drain_async,
        engine_settings,
        enqueue,
        export,
        jobs,
        plan,
        report,
        run,
        run_async,
        status,
        validate,
    )
    from orchestrator.library.simulation import simulate

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
    "__version__",
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


def __getattr__(name: str) -> Any:
    """The public API's names, imported from :mod:`orchestrator.library` on first use."""
    if name in __all__:
        return getattr(importlib.import_module("orchestrator.library"), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
