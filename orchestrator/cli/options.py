"""Every option of the command line, each declared once and reused by the commands that
take it, so that the same option means the same thing everywhere.

Each option also reads an environment variable, named in ``--help``. Nothing here imports
more than Click: building the commands (``--help``) stays quick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from orchestrator.defaults import DEFAULT_API_BASE, DEFAULT_CATALOG_TTL, DEFAULT_SIM_TIME_SCALE

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DB = "orchestrator.db"


def option(*names: str, envvar: str, **kwargs: Any) -> Callable[[F], F]:
    """A Click option that reads ``envvar`` too and says so in ``--help``."""
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


def flag(names: str, envvar: str, help_text: str, *, dest: str | None = None) -> Callable[[F], F]:
    """A ``--x/--no-x`` flag, off unless given (or its variable is true: 1, yes, true)."""
    declared = (dest, names) if dest else (names,)
    return option(*declared, envvar=envvar, default=False, show_default=False, help=help_text)


def together(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several options applied as one, in the order listed (as ``--help`` shows them)."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


# -- every command -----------------------------------------------------------------------------

db_option = option(
    "--db",
    envvar="ORCHESTRATOR_DB",
    default=DEFAULT_DB,
    show_default=True,
    metavar="PATH|URL",
    help="the store: an SQLite path or an SQLAlchemy URL",
)
json_option = option(
    "as_json",
    "--json/--no-json",
    envvar="ORCHESTRATOR_JSON",
    default=False,
    help="print JSON instead of text",
)


def batch_option(*, required: bool) -> Callable[[F], F]:
    """``--batch``: the one declaration; required by the commands that act on a batch."""
    return option(
        "--batch",
        envvar="ORCHESTRATOR_BATCH",
        required=required,
        metavar="NAME",
        help="the batch" if required else "only this batch (default: every batch)",
    )


ids_option = option(
    "--ids",
    envvar="ORCHESTRATOR_IDS",
    metavar="A,B",
    help="only these job ids (comma-separated)",
)
catalog_option = option(
    "--catalog",
    envvar="ORCHESTRATOR_CATALOG",
    type=click.Path(),
    help="a folder of extra model schema files (*.json) added to the built-in catalog",
)

# -- the commands that read a manifest ---------------------------------------------------------

manifest_argument = click.argument("manifest", type=click.Path())
out_option = option(
    "--out",
    envvar="ORCHESTRATOR_OUT",
    type=click.Path(),
    help="output folder (default: the manifest's output.dir)",
)
prices_option = option(
    "--prices",
    envvar="ORCHESTRATOR_PRICES",
    type=click.Path(),
    help="a price table (YAML: model id -> USD per second) that overrides the catalog's "
    "prices, for negotiated rates",
)
probe_urls_option = flag(
    "--probe-urls/--no-probe-urls",
    "ORCHESTRATOR_PROBE_URLS",
    "download https image URLs once to check them against the model's rules",
)
allow_unknown_model_option = flag(
    "--allow-unknown-model/--refuse-unknown-model",
    "ORCHESTRATOR_ALLOW_UNKNOWN_MODEL",
    "send a model id that neither RunComfy, the cache nor the shipped files know, its "
    "inputs as written (default: refuse it before anything is sent)",
)

# -- the commands that talk to RunComfy ----------------------------------------------------------

api_base_option = option(
    "--api-base",
    envvar="RUNCOMFY_API_BASE",
    default=DEFAULT_API_BASE,
    show_default=True,
    help="RunComfy Model API base URL; the token comes from RUNCOMFY_API_TOKEN or RUNCOMFY_TOKEN",
)
offline_option = flag(
    "--offline/--online",
    "ORCHESTRATOR_OFFLINE",
    "never ask the API for schemas and prices: use the store's cache, then the shipped files",
)
catalog_ttl_option = option(
    "--catalog-ttl",
    envvar="ORCHESTRATOR_CATALOG_TTL",
    type=click.FloatRange(min=0),
    default=DEFAULT_CATALOG_TTL,
    show_default=True,
    help="seconds a cached catalog entry is used before the API is asked again (a day; 0 "
    "asks every time)",
)
live_catalog_options = together(catalog_option, offline_option, catalog_ttl_option)
"""What every command that reads the catalog takes (``--api-base`` comes apart)."""
manifest_options = together(
    manifest_argument,
    db_option,
    json_option,
    out_option,
    prices_option,
    probe_urls_option,
    live_catalog_options,
    allow_unknown_model_option,
)
"""What ``validate``, ``plan``, ``enqueue`` and ``run`` take."""

# -- the commands that run the engine ----------------------------------------------------------

positive = click.FloatRange(min=0, min_open=True)
engine_options = together(
    api_base_option,
    flag(
        "--simulate/--no-simulate",
        "ORCHESTRATOR_SIMULATE",
        "run against the built-in simulator on loopback (no token, no cost)",
    ),
    option(
        "--sim-profile",
        envvar="ORCHESTRATOR_SIM_PROFILE",
        default="calm",
        show_default=True,
        help="simulator profile for --simulate (a name or a profile YAML file)",
    ),
    option(
        "--sim-time-scale",
        envvar="ORCHESTRATOR_SIM_TIME_SCALE",
        type=positive,
        default=DEFAULT_SIM_TIME_SCALE,
        show_default=True,
        help="real seconds per simulated second for --simulate",
    ),
    option(
        "--max-in-flight",
        envvar="ORCHESTRATOR_MAX_IN_FLIGHT",
        type=click.IntRange(min=1),
        help="jobs submitted and not finished, at most (default: the manifest's)",
    ),
    option(
        "--max-spend",
        envvar="ORCHESTRATOR_MAX_SPEND",
        type=click.FloatRange(min=0),
        help="stop submitting before this many USD are spent or committed",
    ),
    option(
        "--trust-host",
        envvar="ORCHESTRATOR_TRUST_HOST",
        help="extra download hosts to trust, comma-separated",
    ),
    option(
        "--poll-min",
        envvar="ORCHESTRATOR_POLL_MIN",
        type=click.FloatRange(min=0.001),
        help="shortest wait between two status polls of a job, in seconds (default: 2)",
    ),
    option(
        "--poll-max",
        envvar="ORCHESTRATOR_POLL_MAX",
        type=click.FloatRange(min=0.001),
        help="longest wait between two status polls of a job, in seconds (default: 60)",
    ),
    option(
        "--fetch-patience",
        envvar="ORCHESTRATOR_FETCH_PATIENCE",
        type=click.FloatRange(min=0.01),
        help="how long a paid video whose download fails is fetched again (a fresh result, "
        "then the download, with a growing wait) before it pauses for a re-run, in seconds "
        "(default: 1200; simulated seconds with --simulate)",
    ),
    option(
        "--lease-seconds",
        envvar="ORCHESTRATOR_LEASE_SECONDS",
        type=click.FloatRange(min=1),
        help="how long this worker's jobs stay its own without a heartbeat before another "
        "worker sharing the --db takes them over (default: 60)",
    ),
    flag("--quiet/--progress", "ORCHESTRATOR_QUIET", "no progress display, only the summary"),
    flag(
        "--cancel-on-exit/--keep-on-exit",
        "ORCHESTRATOR_CANCEL_ON_EXIT",
        "when interrupted, cancel remote jobs that are still queued",
    ),
)
"""What ``run`` and ``work`` take."""


def names_of(ids: str | None) -> list[str] | None:
    """The job ids of ``--ids a, b`` (None when none is named).

    >>> names_of("a, ,b"), names_of(None)
    (['a', 'b'], None)
    """
    return [n.strip() for n in (ids or "").split(",") if n.strip()] or None


def hosts_of(trust_host: str | None) -> list[str]:
    """The hosts of ``--trust-host a,b``."""
    return [h.strip() for h in (trust_host or "").split(",") if h.strip()]


def choices(values: Callable[[], Sequence[str]]) -> click.Choice[str]:
    """A choice whose values are read when first needed (``jobs --state``: the states live
    in the store package, which ``--help`` of the whole tool should not import)."""
    return _LazyChoice(values)


class _LazyChoice(click.Choice[str]):
    def __init__(self, values: Callable[[], Sequence[str]]) -> None:
        self._values = values
        self._loaded: Sequence[str] | None = None
        self.case_sensitive = True

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        if self._loaded is None:
            self._loaded = tuple(self._values())
        return self._loaded

    @choices.setter
    def choices(self, values: Sequence[str]) -> None:
        self._loaded = tuple(values)
