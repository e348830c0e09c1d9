"""Defaults shared by the command line, the API client, the engine and the live catalog.

A module of constants only (it imports nothing), so that any layer can read them without
importing the command line.
"""

from __future__ import annotations

from typing import Final

DEFAULT_API_BASE: Final = "https://model-api.runcomfy.net"
"""RunComfy's Model API; ``--api-base`` / ``RUNCOMFY_API_BASE`` override it."""
TOKEN_VARIABLES: Final = ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN")
"""Where the API token is read from, first found wins."""
DEFAULT_CATALOG_TTL: Final = 86_400.0
"""Seconds a cached catalog entry is used before the API is asked again (a day)."""
DEFAULT_FETCH_PATIENCE: Final = 1200.0
"""Seconds a paid video whose download fails is fetched again before it pauses."""
DEFAULT_SIM_TIME_SCALE: Final = 0.02
"""Real seconds per simulated second of ``run --simulate``."""
