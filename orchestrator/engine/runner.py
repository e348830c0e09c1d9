"""Running the engine for a command: the API client, the downloader, signals, the simulator.

:func:`drain` is what ``run`` and ``work`` call once the batch is in the store. The first
SIGINT, SIGTERM or SIGHUP stops new submissions and lets in-progress writes finish; a second
one exits at once (every write is its own transaction, so the store stays consistent either
way). After a SIGHUP the terminal is gone: output goes to /dev/null, the log file stays.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from orchestrator.api import RunComfyClient
from orchestrator.defaults import TOKEN_VARIABLES
from orchestrator.engine.download import DEFAULT_MAX_BYTES, Downloader
from orchestrator.engine.pool import Engine, EngineReport
from orchestrator.logs import register_secret
from orchestrator.redact import ShortSecret, check_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.catalog import Catalog
    from orchestrator.engine.progress import ProgressReporter
    from orchestrator.engine.settings import EngineSettings
    from orchestrator.store.work import WorkQueue

EXIT_INTERRUPTED = 130


class MissingToken(RuntimeError):
    """No API token in the environment (and no simulator to talk to)."""


def token_from_environment() -> str:
    """The API token; :class:`MissingToken` when unset or too short to keep out of output
    (a one-letter token would be masked as every such letter of every line)."""
    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return check_token(value, name)
            except ShortSecret as exc:
                raise MissingToken(str(exc)) from None
    raise MissingToken(
        "no API token: set RUNCOMFY_API_TOKEN (or RUNCOMFY_TOKEN), or use --simulate "
        "to run against the built-in simulator"
    )


@dataclass
class Connection:
    """Where the API is, how to authenticate, and which hosts may serve videos."""

    api_base: str
    token: str
    trusted_hosts: list[str] = field(default_factory=list)


@contextmanager
def simulated_api(
    profile: str, time_scale: float | None, slots: int | None
) -> Iterator[Connection]:
    """Start the local simulator on loopback for the duration of a run (``--simulate``)."""
    from orchestrator.simulator import SimulatorServer, load_profile

    token = "sim-" + secrets.token_hex(8)
    settings = load_profile(profile).with_overrides(time_scale=time_scale, slots=slots)
    with SimulatorServer(settings, token=token) as server:
        yield Connection(
            api_base=server.api_base,
            token=token,
            trusted_hosts=[urlsplit(server.files_base).hostname or "localhost"],
        )


async def drain_async(
    queue: WorkQueue,
    catalog: Catalog,
    connection: Connection,
    settings: EngineSettings,
    *,
    stop: anyio.Event | None = None,
    watch_signals: bool = False,
    max_download_bytes: int | None = None,
    progress: ProgressReporter | None = None,
) -> EngineReport:
    """Run the engine until the work is done or ``stop`` is set, on the current loop.

    ``watch_signals`` (the main thread only) stops it on SIGINT, SIGTERM or SIGHUP as the
    command line does: the first one stops new submissions and lets in-progress writes
    finish, a second one exits the process at once. Cancelling the awaiting task stops it
    too; every write is its own transaction, so the store stays consistent either way.
    """
    register_secret(connection.token)
    stop = stop or anyio.Event()
    api_host = urlsplit(connection.api_base).hostname or ""
    trusted = [api_host, *connection.trusted_hosts]
    cap = DEFAULT_MAX_BYTES if max_download_bytes is None else max_download_bytes
    async with (
        RunComfyClient(connection.api_base, token=connection.token) as api,
        Downloader(
            trusted_hosts=trusted, max_bytes=cap, max_connections=settings.max_downloads
        ) as downloader,
        anyio.create_task_group() as group,
    ):
        if watch_signals:
            group.start_soon(stop_on_signals, stop, group.cancel_scope)
        if progress is not None:
            group.start_soon(progress.run)
        report = await Engine(queue, api, downloader, catalog, settings).run(stop)
        group.cancel_scope.cancel()
    return report


def drain(
    queue: WorkQueue,
    catalog: Catalog,
    connection: Connection,
    settings: EngineSettings,
    *,
    max_download_bytes: int | None = None,
    progress: ProgressReporter | None = None,
) -> EngineReport:
    """:func:`drain_async` on a loop of its own, stopped by a signal (with live progress)."""
    run = functools.partial(
        drain_async,
        queue,
        catalog,
        connection,
        settings,
        watch_signals=True,
        max_download_bytes=max_download_bytes,
        progress=progress,
    )
    return anyio.run(run)


#: The signals that stop a run gracefully: Ctrl-C, ``kill``, and a closed terminal or ssh
#: session (SIGHUP, where the platform has it).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


async def stop_on_signals(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    """Set ``stop`` on the first of :data:`STOP_SIGNALS`, exit the process on a second one
    (after a SIGHUP, with the terminal detached first); the main thread only."""
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for received in signals:
            if stop.is_set():
                os._exit(EXIT_INTERRUPTED)  # second signal: leave now; the store is consistent
            if received == getattr(signal, "SIGHUP", None):
                detach_terminal()
            stop.set()


def detach_terminal() -> None:
    """Point stdout and stderr at /dev/null: after a hang-up the terminal is gone, and a
    write to it (a progress line, a log line, the summary) would fail with EIO and end the
    run halfway. The batch log file and the report still get everything."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (1, 2):
            os.dup2(devnull, stream)
    finally:
        os.close(devnull)
