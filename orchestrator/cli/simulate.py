"""``simulate``: serve a local RunComfy Model API on loopback, for demos and tests."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

import click

from orchestrator.cli.base import command
from orchestrator.cli.exits import EXIT_OK, EXIT_USAGE
from orchestrator.cli.options import option

if TYPE_CHECKING:
    from orchestrator.cli.base import Session

_port = click.IntRange(0, 65535)
PROFILES = (
    "calm, flaky, hostile, outages, runs-vary, stamps-absent, stamps-constant, stamps-skewed, "
    "stamps-naive, stamps-epoch-ms or a profile YAML file"
)


@command("simulate", "Serve a local RunComfy API on loopback.")
@option(
    "--host",
    envvar="ORCHESTRATOR_SIM_HOST",
    default="127.0.0.1",
    show_default=True,
    help="loopback address the API answers on",
)
@option(
    "--file-host",
    envvar="ORCHESTRATOR_SIM_FILE_HOST",
    default="localhost",
    show_default=True,
    help="host name videos are served from; must reach the same address",
)
@option(
    "--port",
    envvar="ORCHESTRATOR_SIM_PORT",
    type=_port,
    default=8188,
    show_default=True,
    help="API port (0 picks a free one)",
)
@option(
    "--files-port",
    envvar="ORCHESTRATOR_SIM_FILES_PORT",
    type=_port,
    help="port of the file host, a listener of its own (0 picks a free one; default: the "
    "API port + 1, or a free one when --port is 0)",
)
@option(
    "--profile",
    envvar="ORCHESTRATOR_SIM_PROFILE",
    default="calm",
    show_default=True,
    help=PROFILES,
)
@option(
    "--seed",
    envvar="ORCHESTRATOR_SIM_SEED",
    type=int,
    help="seed for durations and faults (default: the profile's)",
)
@option(
    "--time-scale",
    envvar="ORCHESTRATOR_SIM_TIME_SCALE",
    type=click.FloatRange(min=0, min_open=True),
    help="real seconds per simulated second, e.g. 0.01 (default: the profile's)",
)
@option(
    "--slots",
    envvar="ORCHESTRATOR_SIM_SLOTS",
    type=click.IntRange(min=1),
    help="concurrent jobs per account (default: the profile's)",
)
@option(
    "--token",
    envvar="ORCHESTRATOR_SIM_TOKEN",
    help="the only bearer token accepted (default: any non-empty token)",
)
@click.pass_obj
def simulate(
    session: Session,
    /,
    host: str,
    file_host: str,
    port: int,
    files_port: int | None,
    profile: str,
    seed: int | None,
    time_scale: float | None,
    slots: int | None,
    token: str | None,
) -> int:
    """Serve a local RunComfy Model API on loopback (for demos and tests)."""
    from orchestrator.simulator import ProfileError, SimulatorServer, load_profile

    if files_port is None:  # the next port, or any free one when the API's is too
        files_port = port + 1 if port else 0
    if files_port > 65535:
        raise click.BadParameter(
            "the API port + 1 is past 65535: choose one", param_hint="--files-port"
        )
    if port and files_port == port:
        raise click.BadParameter(
            "must differ from --port: the file host listens apart", param_hint="--files-port"
        )
    try:
        settings = load_profile(profile).with_overrides(
            seed=seed, time_scale=time_scale, slots=slots
        )
    except (ProfileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        server = SimulatorServer(
            settings,
            port=port,
            files_port=files_port,
            token=token,
            host=host,
            file_host=file_host,
            log_level="info",
        )
    except OSError as exc:
        print(
            f"error: cannot listen on {host} port {port} (API) and {files_port} (files): "
            f"{exc.strerror or exc}; choose others with --port and --files-port",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Any non-empty token is accepted unless --token names one. Plain-http downloads are
    # allowed only from a trusted loopback host (engine/download.py host_allowed), so the
    # command trusts the file host by name.
    shown = "<the token given with --token>" if token else "sim-token"
    run = (
        f"RUNCOMFY_API_TOKEN={shown} orchestrator run MANIFEST "
        f"--api-base {shlex.quote(server.api_base)} --trust-host {shlex.quote(file_host)}"
    )
    if settings.time_scale < 1:  # minutes pass in seconds: poll as ``run --simulate`` does
        run += f" --poll-min 0.05 --poll-max {max(0.5, 120 * settings.time_scale):g}"
    outages = ", ".join(
        f"{o.kind} {o.seconds:g} s after {o.after:g} s" for o in settings.file_outages
    )
    out = session.out
    out.write(
        f"RunComfy simulator: profile {settings.name!r}, {settings.slots} slots, "
        f"time scale {settings.time_scale:g}, seed {settings.seed}\n"
        f"  API:    {server.api_base}   (export RUNCOMFY_API_BASE={server.api_base})\n"
        f"  files:  {server.files_base}   (a listener of its own)\n"
        f"  token:  {'the one given with --token' if token else 'any non-empty token'}\n"
        f"  ledger: {server.api_base}/_sim/ledger\n"
        + (f"  file outages (simulated seconds): {outages}\n" if outages else "")
        + f"  run:    {run}\n"
    )
    out.flush()
    server.serve_forever()
    return EXIT_OK


COMMANDS = [simulate]
