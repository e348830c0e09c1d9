"""Every exit status of the command line, in one place.

====  ============================================================================
0     done: every job of the batch succeeded, or the command did what it was asked
1     the command ran, but not everything succeeded (a failed job, a job still running
      on RunComfy, a store that could not be written)
2     usage: a bad option or manifest, no store, an unknown batch or model, no token
130   interrupted (Ctrl-C): run the same command again to resume
141   the reader of the output went away (``orchestrator status | head``)
====  ============================================================================
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
"""The same number as ``orchestrator.engine.runner.EXIT_INTERRUPTED`` (128 + SIGINT)."""
EXIT_BROKEN_PIPE: Final = 141
"""128 + SIGPIPE, what a shell reports for a program whose reader closed the pipe."""


class CommandError(Exception):
    """A command that cannot go on: its message is printed on stderr (or as ``{"error":
    ...}`` with ``--json``) and the command exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
