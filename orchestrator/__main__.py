"""``python -m orchestrator`` runs the command line."""

from __future__ import annotations

from orchestrator.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    raise SystemExit(main())
