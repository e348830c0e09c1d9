"""The ``orchestrator`` command: the group of commands, and :func:`main`, which runs one.

Everything printed, on stdout and stderr, passes the redaction policy
(:mod:`orchestrator.redact`): a server that echoed the token cannot make us print it.
"""

from __future__ import annotations

import os
import sys
from contextlib import redirect_stderr
from typing import TextIO, cast

import click

from orchestrator import __version__
from orchestrator.cli.base import Command, ReaderGone, Session
from orchestrator.cli.exits import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_OK
from orchestrator.redact import RedactingStream


class Group(click.Group):
    command_class = Command


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "--version", prog_name="orchestrator", message="%(prog)s %(version)s"
)
def cli() -> None:
    """Batch image-to-video jobs on RunComfy: manifests in, verified videos out.

    Every option can also come from the environment variable its help names.
    """


def _register() -> None:
    # Each module adds its commands to ``cli``; none imports more than Click at the top.
    from orchestrator.cli import actions, browse, catalog, manifests, outputs, running, simulate

    for module in (manifests, catalog, browse, running, actions, outputs, simulate):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command (``argv``, default ``sys.argv[1:]``); returns the exit status.

    ``out`` receives what the command prints (default: stdout); errors go to stderr.
    """
    stream = cast("TextIO", RedactingStream(out or sys.stdout))
    errors = cast("TextIO", RedactingStream(sys.stderr))
    with redirect_stderr(errors):
        try:
            code = _run(argv, stream, errors)
            stream.flush()
        except (BrokenPipeError, ReaderGone):
            return _quiet_broken_pipe(out)
    return code


def _run(argv: list[str] | None, out: TextIO, errors: TextIO) -> int:
    try:
        result = cli.main(
            args=argv, prog_name="orchestrator", standalone_mode=False, obj=Session(out)
        )
    except click.ClickException as exc:  # a usage error: Click says which (exit 2)
        exc.show(file=errors)
        return exc.exit_code
    except click.Abort:  # Ctrl-C outside a run (a run handles it and says how to resume)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else EXIT_OK


def _quiet_broken_pipe(out: TextIO | None) -> int:
    """The reader went away (``| head``): stop without a traceback. Python flushes stdout
    once more at exit; pointing it at /dev/null keeps that flush quiet too."""
    if out is None or out is sys.stdout:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # no real stdout (a test's stream)
            pass
    return EXIT_BROKEN_PIPE
