"""A faithful local RunComfy Model API: the demo's, the tests' and the benchmarks' server.

It speaks the wire format of ``docs/runcomfy-api.md`` on loopback sockets, runs a real queue
with a fixed number of slots, renders real H.264 videos, misbehaves on purpose as a profile
says (``calm``, ``flaky``, ``hostile``, ``outages``, the ``stamps-*`` and ``runs-vary``
timing variants, or a YAML file; the file host, on a listener of its own, can go down for
a while), serves a catalog of the five shipped models and a few invented ones (see
:mod:`.served`), and keeps a ledger of everything clients did. Start one with
:class:`SimulatorServer` (threads) or ``orchestrator simulate``.
"""

from __future__ import annotations

from orchestrator.simulator.app import build_app as build_app
from orchestrator.simulator.clock import ManualClock as ManualClock
from orchestrator.simulator.clock import ScaledClock as ScaledClock
from orchestrator.simulator.ledger import Ledger as Ledger
from orchestrator.simulator.outages import OutageWindow as OutageWindow
from orchestrator.simulator.profile import BUILTIN_PROFILES as BUILTIN_PROFILES
from orchestrator.simulator.profile import Duration as Duration
from orchestrator.simulator.profile import Faults as Faults
from orchestrator.simulator.profile import FileOutage as FileOutage
from orchestrator.simulator.profile import Profile as Profile
from orchestrator.simulator.profile import ProfileError as ProfileError
from orchestrator.simulator.profile import load_profile as load_profile
from orchestrator.simulator.profile import parse_profile as parse_profile
from orchestrator.simulator.served import SchemaChangeError as SchemaChangeError
from orchestrator.simulator.server import SimulatorServer as SimulatorServer
from orchestrator.simulator.state import ApiError as ApiError
from orchestrator.simulator.state import Simulator as Simulator
from orchestrator.simulator.timing import RunTimeScale as RunTimeScale
