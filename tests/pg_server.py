"""A throwaway PostgreSQL server on loopback, for the tests that need a real one.

It is started once per test session from the machine's PostgreSQL binaries (``make test``
installs Debian's ``postgresql`` package when they are missing), with a fresh cluster in a
temporary folder, and removed at the end. ``initdb`` refuses to run as root, so as root the
cluster belongs to the ``postgres`` user and the binaries run through ``runuser``.

Durability settings are off (``fsync=off``): these tests check behaviour, not power cuts.
Set ``ORCHESTRATOR_TEST_POSTGRES`` to a server URL (``postgresql+psycopg://u@host:port``)
to use an existing server instead.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

ENV_URL = "ORCHESTRATOR_TEST_POSTGRES"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries, or the server would not start."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, newest version first."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    for found in (shutil.which("initdb"), shutil.which("pg_ctl")):
        if found:
            candidates.append(str(Path(found).parent))
    for candidate in candidates:
        folder = Path(candidate)
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """One cluster in a temporary folder; :meth:`new_database` gives each test its own."""

    def __init__(self) -> None:
        self.base_url = os.environ.get(ENV_URL, "").rstrip("/")
        self._folder: Path | None = None
        self._bindir: Path | None = None
        self._names = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.base_url:
            return
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found")
        self._bindir = bindir
        folder = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        self._folder = folder
        data = folder / "data"
        port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = " ".join(
            (
                "-c listen_addresses=127.0.0.1",
                f"-c port={port}",
                f"-c unix_socket_directories={folder}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
            )
        )
        self._run("pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w")
        self.base_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"

    def stop(self) -> None:
        if self._folder is None or self._bindir is None:
            return
        with contextlib.suppress(PostgresUnavailable):
            self._run("pg_ctl", "-D", str(self._folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self._folder, ignore_errors=True)
        self._folder = None

    def _run(self, program: str, *args: str) -> None:
        assert self._bindir is not None
        command = [str(self._bindir / program), *args]
        if program == "pg_ctl" and "stop" not in args:
            command.append("start")
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = ""
            if self._folder is not None and (self._folder / "server.log").exists():
                log = (self._folder / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
            )

    # -- databases ------------------------------------------------------------------------

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return f"{self.base_url}/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg

        dsn = self.base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(statement.encode())
