"""Command-line options shared by the commands that talk to RunComfy.

Kept apart from the commands themselves so that building the parser (``--help``, and
every quick command such as ``status``) does not import the engine, httpx or PyAV.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

#: RunComfy's Model API; ``--api-base`` / ``RUNCOMFY_API_BASE`` override it.
DEFAULT_API_BASE = "https://model-api.runcomfy.net"
#: Where the API token is read from, first found wins.
TOKEN_VARIABLES = ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN")
#: Seconds a cached catalog entry is used before the API is asked again (a day).
DEFAULT_CATALOG_TTL = 86_400.0


def add_engine_options(
    parser: argparse.ArgumentParser,
    env_action: type[argparse.Action],
    flag: Callable[[argparse.ArgumentParser, str, str, str], None],
) -> None:
    """Options shared by ``run`` and ``work``; each also reads an environment variable."""
    parser.add_argument(
        "--api-base",
        action=env_action,
        env="RUNCOMFY_API_BASE",
        default=DEFAULT_API_BASE,
        help="RunComfy Model API base URL (default: %(default)s); the token comes from "
        "RUNCOMFY_API_TOKEN or RUNCOMFY_TOKEN",
    )
    flag(
        parser,
        "--simulate",
        "ORCHESTRATOR_SIMULATE",
        "run against the built-in simulator on loopback (no token, no cost)",
    )
    parser.add_argument(
        "--sim-profile",
        action=env_action,
        env="ORCHESTRATOR_SIM_PROFILE",
        default="calm",
        help="simulator profile for --simulate (default: calm)",
    )
    parser.add_argument(
        "--sim-time-scale",
        action=env_action,
        env="ORCHESTRATOR_SIM_TIME_SCALE",
        default="0.02",
        help="real seconds per simulated second for --simulate (default: 0.02)",
    )
    parser.add_argument(
        "--max-in-flight",
        action=env_action,
        env="ORCHESTRATOR_MAX_IN_FLIGHT",
        help="jobs submitted and not finished, at most (default: the manifest's)",
    )
    parser.add_argument(
        "--max-spend",
        action=env_action,
        env="ORCHESTRATOR_MAX_SPEND",
        help="stop submitting before this many USD are spent or committed",
    )
    parser.add_argument(
        "--trust-host",
        action=env_action,
        env="ORCHESTRATOR_TRUST_HOST",
        help="extra download hosts to trust, comma-separated",
    )
    parser.add_argument(
        "--poll-min",
        action=env_action,
        env="ORCHESTRATOR_POLL_MIN",
        help="shortest wait between two status polls of a job, in seconds (default: 2)",
    )
    parser.add_argument(
        "--poll-max",
        action=env_action,
        env="ORCHESTRATOR_POLL_MAX",
        help="longest wait between two status polls of a job, in seconds (default: 60)",
    )
    parser.add_argument(
        "--fetch-patience",
        action=env_action,
        env="ORCHESTRATOR_FETCH_PATIENCE",
        help="how long a paid video whose download fails is fetched again (a fresh result, "
        "then the download, with a growing wait) before it pauses for a re-run, in seconds "
        "(default: 1200; simulated seconds with --simulate)",
    )
    parser.add_argument(
        "--lease-seconds",
        action=env_action,
        env="ORCHESTRATOR_LEASE_SECONDS",
        help="how long this worker's jobs stay its own without a heartbeat before another "
        "worker sharing the --db takes them over (default: 60)",
    )
    flag(parser, "--quiet", "ORCHESTRATOR_QUIET", "no progress display, only the summary")
    flag(
        parser,
        "--cancel-on-exit",
        "ORCHESTRATOR_CANCEL_ON_EXIT",
        "when interrupted, cancel remote jobs that are still queued",
    )


def add_catalog_options(
    parser: argparse.ArgumentParser,
    env_action: type[argparse.Action],
    flag: Callable[[argparse.ArgumentParser, str, str, str], None],
    *,
    api_base: bool,
    manifest: bool,
) -> None:
    """Options of every command that reads the catalog; each also reads a variable."""
    if api_base:  # ``run`` declares it with the engine options
        parser.add_argument(
            "--api-base",
            action=env_action,
            env="RUNCOMFY_API_BASE",
            default=DEFAULT_API_BASE,
            help="RunComfy Model API base URL, asked for each model's schema and price "
            "when RUNCOMFY_API_TOKEN (or RUNCOMFY_TOKEN) is set (default: %(default)s)",
        )
    flag(
        parser,
        "--offline",
        "ORCHESTRATOR_OFFLINE",
        "never ask the API for schemas and prices: use the store's cache, then the shipped files",
    )
    parser.add_argument(
        "--catalog-ttl",
        action=env_action,
        env="ORCHESTRATOR_CATALOG_TTL",
        default=str(int(DEFAULT_CATALOG_TTL)),
        help="seconds a cached catalog entry is used before the API is asked again "
        "(default: %(default)s, a day; 0 asks every time)",
    )
    if manifest:
        flag(
            parser,
            "--allow-unknown-model",
            "ORCHESTRATOR_ALLOW_UNKNOWN_MODEL",
            "send a model id that neither RunComfy, the cache nor the shipped files know, "
            "its inputs as written (default: refuse it before anything is sent)",
        )


class OptionError(ValueError):
    """An option value that cannot be used (exit status 2)."""


def catalog_ttl(args: argparse.Namespace) -> float:
    """``--catalog-ttl`` in seconds (a day when unset)."""
    value = getattr(args, "catalog_ttl", None)
    if value is None or value == "":
        return DEFAULT_CATALOG_TTL
    try:
        ttl = float(value)
    except ValueError:
        raise OptionError(f"--catalog-ttl needs a number of seconds, got {value!r}") from None
    if not ttl >= 0:
        raise OptionError(f"--catalog-ttl must be 0 or more seconds, got {value!r}")
    return ttl
