"""The public Python API (re-exported by :mod:`orchestrator`): batches from manifests,
dicts or rows; checking, planning, enqueueing and running them; the simulator; reading a
store. The command line is a thin layer over these functions.

Every function raises :class:`~orchestrator.problems.InputError` for input it cannot use;
its ``problems`` name the file, line, job and field of each mistake.
"""

from __future__ import annotations

from orchestrator.engine.runner import Connection as Connection
from orchestrator.engine.runner import drain_async as drain_async
from orchestrator.library.api import enqueue as enqueue
from orchestrator.library.api import plan as plan
from orchestrator.library.api import validate as validate
from orchestrator.library.batch import Api as Api
from orchestrator.library.batch import Batch as Batch
from orchestrator.library.batch import Db as Db
from orchestrator.library.checking import CatalogOptions as CatalogOptions
from orchestrator.library.reading import export as export
from orchestrator.library.reading import jobs as jobs
from orchestrator.library.reading import report as report
from orchestrator.library.reading import status as status
from orchestrator.library.results import Enqueued as Enqueued
from orchestrator.library.results import Plan as Plan
from orchestrator.library.results import RunResult as RunResult
from orchestrator.library.results import Status as Status
from orchestrator.library.results import Validation as Validation
from orchestrator.library.running import run as run
from orchestrator.library.running import run_async as run_async
from orchestrator.library.settings import RunOptions as RunOptions
from orchestrator.library.settings import engine_settings as engine_settings
from orchestrator.library.simulation import Simulation as Simulation
from orchestrator.library.simulation import simulate as simulate
from orchestrator.problems import InputError as InputError
from orchestrator.problems import Problem as Problem
