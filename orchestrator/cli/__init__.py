"""The command line, on Click: one module per group of commands, options declared once
(:mod:`.options`), exit statuses in one place (:mod:`.exits`).

``main`` is the console script's entry point; it returns the exit status.
"""

from __future__ import annotations

from orchestrator.cli.app import cli, main

__all__ = ["cli", "main"]
