"""What every command is built on: the :class:`Session` it is handed, and the
:class:`Command` class that turns a known failure into a line and an exit status."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import click

from orchestrator.cli.exits import EXIT_FAILED, EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from collections.abc import Callable


class ReaderGone(Exception):
    """The reader of the output went away (``| head``); not an OSError, so that Click
    leaves it to :func:`orchestrator.cli.main`."""


@dataclass
class Session:
    """What every command is handed: where its output goes (redacted)."""

    out: TextIO


class Command(click.Command):
    """A command that sets up logging when it runs (not on ``--help``: structlog would
    import rich, which takes longer than all of ``--help``), and says a known failure in
    a line with its exit status, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from orchestrator.logs import configure_logging

        configure_logging()
        out = ctx.find_object(Session)
        stream = out.out if out is not None else sys.stdout
        as_json = bool(ctx.params.get("as_json"))
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # Click would exit 1 for it; main() ends quietly instead
            raise ReaderGone from None
        except CommandError as exc:
            if as_json:
                stream.write(json.dumps({"error": exc.message}) + "\n")
            else:
                print(f"error: {exc.message}", file=sys.stderr)
            return exc.code
        except Exception as exc:
            code = _known_failure(exc, stream, as_json, str(ctx.params.get("db", "")))
            if code is None:
                raise
            return code


def command(name: str, short: str | None = None) -> Callable[[Callable[..., Any]], Command]:
    """``@command("status")``: a :class:`Command` named ``name``; its docstring is its help,
    ``short`` its line in the list of commands (default: the docstring's first sentence)."""
    return click.command(name, cls=Command, short_help=short)


def _known_failure(exc: Exception, out: TextIO, as_json: bool, db: str) -> int | None:
    """The exit status of an error the library raises for a known reason, said in a line
    (None for a bug, whose traceback is then shown)."""
    from orchestrator.catalog import CatalogError
    from orchestrator.problems import InputError

    if isinstance(exc, InputError):
        from orchestrator.views import print_problems

        print_problems(exc.problems, [], out, as_json=as_json)
        return EXIT_USAGE
    if isinstance(exc, CatalogError):
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if _is_database_error(exc):
        # A full disk, a read-only or locked file, a server gone: said, not a traceback.
        # Every write is its own transaction, so what was committed before is intact.
        detail = getattr(exc, "orig", None) or exc
        print(f"error: the store {db!r} could not be used: {detail}", file=sys.stderr)
        return EXIT_FAILED
    return None


def _is_database_error(exc: Exception) -> bool:
    # Neither module is imported by ``--help``: an error of theirs means they are loaded.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    database = sys.modules.get("orchestrator.store.database")
    return bool(
        (sa_exc is not None and isinstance(exc, sa_exc.DBAPIError))
        or (database is not None and isinstance(exc, database.DatabaseError))
    )
