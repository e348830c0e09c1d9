"""The engine: pure decisions, the worker pool, downloads, and the runner for commands.

:mod:`.decisions` answers what a job does next (state, retry delay, poll interval,
concurrency) without I/O; :mod:`.pool` applies the answers against the store and the API;
:mod:`.download` fetches and verifies videos; :mod:`.runner` wires them for ``run``/``work``.
"""

from __future__ import annotations

from orchestrator.engine.decisions import InvalidTransition as InvalidTransition
from orchestrator.engine.decisions import Outcome as Outcome
from orchestrator.engine.decisions import next_state as next_state
from orchestrator.engine.pool import Engine as Engine
from orchestrator.engine.pool import EngineReport as EngineReport
from orchestrator.engine.settings import EngineSettings as EngineSettings
