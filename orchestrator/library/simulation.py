"""The built-in RunComfy simulator on loopback, for a script, a notebook or a test.

>>> with simulate(time_scale=0.001) as sim:
...     sim.api_base.startswith("http://127.0.0.1:"), sim.token.startswith("sim-")
(True, True)
"""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from orchestrator.engine.runner import Connection
from orchestrator.problems import InputError, Problem, show_value
from orchestrator.simulator import ProfileError, SimulatorServer, load_profile

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Real seconds per simulated second unless told (a five-second clip renders in ~0.1 s).
DEFAULT_TIME_SCALE = 0.02


@dataclass(frozen=True)
class Simulation:
    """A running simulator: where it answers, the token it accepts, and how fast it runs.

    Pass it as ``api=`` to :meth:`~orchestrator.Batch.run` (or to the manifest commands):
    the run trusts its file host and polls on its shorter seconds.
    """

    api_base: str
    """The API's base URL (``http://127.0.0.1:PORT``)."""
    token: str
    """The only bearer token it accepts."""
    files_base: str
    """Where videos are served from (a listener of its own)."""
    time_scale: float
    """Real seconds per simulated second."""
    server: SimulatorServer = field(repr=False, compare=False)
    """The servers themselves (ledger, outages: see :class:`SimulatorServer`)."""

    @property
    def connection(self) -> Connection:
        """The API connection a run uses, with the file host trusted (it serves plain
        http on loopback, which only a trusted host may)."""
        host = urlsplit(self.files_base).hostname or "localhost"
        return Connection(api_base=self.api_base, token=self.token, trusted_hosts=[host])


@contextmanager
def simulate(
    profile: str | Path = "calm",
    *,
    time_scale: float = DEFAULT_TIME_SCALE,
    slots: int | None = None,
    seed: int | None = None,
    token: str | None = None,
) -> Iterator[Simulation]:
    """Serve the simulator on loopback until the block ends.

    ``profile``: ``calm``, ``flaky``, ``hostile``, ``outages``, a timing variant or a
    profile YAML file; ``slots``: concurrent jobs of the simulated account; ``token``: the
    one token accepted (a fresh random one by default). Raises
    :class:`~orchestrator.problems.InputError` for an unknown profile or a bad value.
    """
    if not time_scale > 0 or (slots is not None and slots < 1):
        raise InputError(
            [
                Problem(
                    f"time_scale must be > 0 and slots at least 1, got {show_value(time_scale)}"
                    f" and {show_value(slots)}",
                    file="<simulate>",
                    field="time_scale" if not time_scale > 0 else "slots",
                )
            ]
        )
    try:
        settings = load_profile(str(profile)).with_overrides(
            time_scale=time_scale, slots=slots, seed=seed
        )
    except ProfileError as exc:
        raise InputError([Problem(str(exc), file="<simulate>", field="profile")]) from exc
    secret = token or "sim-" + secrets.token_hex(8)
    with SimulatorServer(settings, token=secret) as server:
        yield Simulation(
            api_base=server.api_base,
            token=secret,
            files_base=server.files_base,
            time_scale=settings.time_scale,
            server=server,
        )
