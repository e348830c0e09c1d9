"""The command line: parse, call the library, print. Nothing else lives here.

Every option can also come from an environment variable, named in ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy.exc import DBAPIError

from orchestrator import __version__
from orchestrator.catalog import Catalog, CatalogError, PriceTable
from orchestrator.catalog.pricing import load_price_file
from orchestrator.cli_options import OptionError, add_catalog_options, add_engine_options
from orchestrator.logs import configure_logging
from orchestrator.manifest import Expansion, load_manifest
from orchestrator.media import ImageInfo
from orchestrator.outputs.preflight import check_outputs, estimate_batch_bytes
from orchestrator.planning import (
    enqueue,
    output_root,
    stored_output_root,
    stored_settings,
    summarize,
)
from orchestrator.problems import InputError
from orchestrator.redact import RedactingStream
from orchestrator.store import JobState, Store
from orchestrator.store.database import DatabaseError, store_exists
from orchestrator.views import (
    print_jobs,
    print_plan,
    print_problems,
    print_status,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_DB = "orchestrator.db"


class _EnvDefault(argparse.Action):
    """An option whose default comes from an environment variable, shown in ``--help``."""

    def __init__(self, env: str, required: bool = False, default: Any = None, **kwargs: Any):
        self.env = env
        if env in os.environ:
            default = os.environ[env]
            if kwargs.get("nargs") == 0:
                default = os.environ[env].lower() not in ("", "0", "false", "no")
        help_text = kwargs.pop("help", "") or ""
        kwargs["help"] = f"{help_text} [env: {env}]"
        super().__init__(default=default, required=required and default is None, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def _flag(parser: argparse.ArgumentParser, name: str, env: str, help_text: str) -> None:
    parser.add_argument(name, action=_EnvDefault, env=env, nargs=0, default=False, help=help_text)


def _common(parser: argparse.ArgumentParser, *, manifest: bool) -> None:
    parser.add_argument(
        "--db",
        action=_EnvDefault,
        env="ORCHESTRATOR_DB",
        default=DEFAULT_DB,
        help="store: an SQLite path or an SQLAlchemy URL (default: %(default)s)",
    )
    _flag(parser, "--json", "ORCHESTRATOR_JSON", "print JSON instead of text")
    if manifest:
        parser.add_argument("manifest", help="the batch manifest (YAML)")
        parser.add_argument(
            "--catalog",
            action=_EnvDefault,
            env="ORCHESTRATOR_CATALOG",
            help="a folder of extra model schema files (*.json) added to the built-in catalog",
        )
        parser.add_argument(
            "--prices",
            action=_EnvDefault,
            env="ORCHESTRATOR_PRICES",
            help="a price table (YAML: model id -> USD per second) that overrides the "
            "catalog's prices, for negotiated rates",
        )
        parser.add_argument(
            "--out",
            action=_EnvDefault,
            env="ORCHESTRATOR_OUT",
            help="output folder (default: the manifest's output.dir)",
        )
        _flag(
            parser,
            "--probe-urls",
            "ORCHESTRATOR_PROBE_URLS",
            "download https image URLs once to check them against the model's rules",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Batch image-to-video jobs on RunComfy: manifests in, verified videos out.",
    )
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        help="check a manifest and its images against the catalog (nothing stored or submitted)",
    )
    _common(validate, manifest=True)
    add_catalog_options(validate, _EnvDefault, _flag, api_base=True, manifest=True)
    plan = commands.add_parser(
        "plan", help="show the jobs a manifest creates, the diff with the store and the cost"
    )
    _common(plan, manifest=True)
    add_catalog_options(plan, _EnvDefault, _flag, api_base=True, manifest=True)
    _flag(plan, "--list", "ORCHESTRATOR_LIST", "list every job (default: the first 20)")
    enqueue_cmd = commands.add_parser(
        "enqueue", help="validate a manifest and add its new jobs to the store (submits nothing)"
    )
    _common(enqueue_cmd, manifest=True)
    add_catalog_options(enqueue_cmd, _EnvDefault, _flag, api_base=True, manifest=True)

    models = commands.add_parser(
        "models", help="list the model catalog, where each model came from, and its price"
    )
    _common(models, manifest=False)
    models.add_argument(
        "--catalog",
        action=_EnvDefault,
        env="ORCHESTRATOR_CATALOG",
        help="a folder of extra model schema files (*.json)",
    )
    add_catalog_options(models, _EnvDefault, _flag, api_base=True, manifest=False)
    _flag(
        models,
        "--refresh",
        "ORCHESTRATOR_REFRESH",
        "fetch every known model's schema and price from the API now, into the store's cache",
    )
    _flag(
        models,
        "--remote",
        "ORCHESTRATOR_REMOTE",
        "list the image-to-video models the API offers (id, name, price)",
    )
    models.add_argument(
        "--search",
        action=_EnvDefault,
        env="ORCHESTRATOR_SEARCH",
        help="with --remote: only models whose id or name contains this text",
    )

    status = commands.add_parser("status", help="counts by state and spend, per batch")
    _common(status, manifest=False)
    status.add_argument("--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", help="one batch")

    jobs = commands.add_parser("jobs", help="list jobs from the store")
    _common(jobs, manifest=False)
    jobs.add_argument("--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", help="one batch")
    jobs.add_argument(
        "--state", choices=[s.value for s in JobState], help="only jobs in this state"
    )
    jobs.add_argument("--model", help="only jobs of this model id")
    jobs.add_argument("--limit", type=int, default=None, help="at most this many jobs")

    run = commands.add_parser(
        "run", help="enqueue a manifest and work until every job of the batch is finished"
    )
    _common(run, manifest=True)
    add_engine_options(run, _EnvDefault, _flag)
    add_catalog_options(run, _EnvDefault, _flag, api_base=False, manifest=True)
    work = commands.add_parser("work", help="drain whatever is queued (every batch, or --batch)")
    _common(work, manifest=False)
    work.add_argument("--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", help="one batch")
    work.add_argument(
        "--catalog",
        action=_EnvDefault,
        env="ORCHESTRATOR_CATALOG",
        help="a folder of extra model schema files (*.json)",
    )
    add_engine_options(work, _EnvDefault, _flag)
    reconcile = commands.add_parser(
        "reconcile", help="list submits whose outcome is unknown; --resubmit queues them again"
    )
    _common(reconcile, manifest=False)
    reconcile.add_argument(
        "--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", help="one batch"
    )
    reconcile.add_argument("--ids", help="only these job ids (comma-separated)")
    _flag(
        reconcile,
        "--resubmit",
        "ORCHESTRATOR_RESUBMIT",
        "queue them again as new paid attempts (check RunComfy first)",
    )

    retry = commands.add_parser("retry", help="queue failed jobs of a batch again")
    _common(retry, manifest=False)
    retry.add_argument(
        "--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", required=True, help="the batch"
    )
    _flag(
        retry,
        "--failed",
        "ORCHESTRATOR_RETRY_FAILED",
        "every failed job of the batch, and every paid video still to fetch",
    )
    retry.add_argument(
        "--ids", help="these job ids (comma-separated; failed, cancelled or still to fetch)"
    )
    _flag(
        retry,
        "--reroll",
        "ORCHESTRATOR_REROLL",
        "pay again for a new render of jobs RunComfy already rendered (default: fetch them "
        "again, free); the cost is printed",
    )
    cancel = commands.add_parser(
        "cancel", help="stop jobs not yet submitted and cancel those still queued on RunComfy"
    )
    _common(cancel, manifest=False)
    cancel.add_argument(
        "--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", required=True, help="the batch"
    )
    cancel.add_argument("--ids", help="only these job ids (comma-separated)")
    _flag(
        cancel,
        "--discard",
        "ORCHESTRATOR_DISCARD",
        "also give up jobs already running and paid videos still to fetch (RunComfy bills "
        "them anyway; their videos are not fetched)",
    )
    add_engine_options(cancel, _EnvDefault, _flag)

    export = commands.add_parser("export", help="write a batch's videos as a dataset")
    _common(export, manifest=False)
    export.add_argument(
        "--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", required=True, help="the batch"
    )
    export.add_argument(
        "--format",
        choices=["jsonl", "csv", "hf"],
        default="jsonl",
        help="jsonl, csv, or hf (a Hugging Face videofolder; default: jsonl)",
    )
    export.add_argument("--dest", help="where to write (default: beside the batch's videos)")
    export.add_argument(
        "--catalog",
        action=_EnvDefault,
        env="ORCHESTRATOR_CATALOG",
        help="a folder of extra model schema files (*.json)",
    )

    report = commands.add_parser("report", help="write the batch's static HTML review page")
    _common(report, manifest=False)
    report.add_argument(
        "--batch", action=_EnvDefault, env="ORCHESTRATOR_BATCH", required=True, help="the batch"
    )
    report.add_argument("--dest", help="the HTML file (default: <videos>/<batch>/report.html)")

    simulate = commands.add_parser(
        "simulate", help="serve a local RunComfy Model API on loopback (for demos and tests)"
    )
    simulate.add_argument(
        "--host",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_HOST",
        default="127.0.0.1",
        help="loopback address the API answers on (default: %(default)s)",
    )
    simulate.add_argument(
        "--file-host",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_FILE_HOST",
        default="localhost",
        help="host name videos are served from; must reach the same address (default: %(default)s)",
    )
    simulate.add_argument(
        "--port",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_PORT",
        default="8188",
        help="API port (0 picks a free one; default: %(default)s)",
    )
    simulate.add_argument(
        "--files-port",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_FILES_PORT",
        help="port of the file host, a listener of its own (0 picks a free one; default: "
        "the API port + 1, or a free one when --port is 0)",
    )
    simulate.add_argument(
        "--profile",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_PROFILE",
        default="calm",
        help=(
            "calm, flaky, hostile, outages, runs-vary, stamps-absent, stamps-constant, "
            "stamps-skewed, stamps-naive, stamps-epoch-ms or a profile YAML file "
            "(default: %(default)s)"
        ),
    )
    simulate.add_argument(
        "--seed",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_SEED",
        help="seed for durations and faults (default: the profile's)",
    )
    simulate.add_argument(
        "--time-scale",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_TIME_SCALE",
        help="real seconds per simulated second, e.g. 0.01 (default: the profile's)",
    )
    simulate.add_argument(
        "--slots",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_SLOTS",
        help="concurrent jobs per account (default: the profile's)",
    )
    simulate.add_argument(
        "--token",
        action=_EnvDefault,
        env="ORCHESTRATOR_SIM_TOKEN",
        help="the only bearer token accepted (default: any non-empty token)",
    )
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; returns the exit status.

    Everything it prints, on stdout and stderr, passes the redaction policy
    (:mod:`orchestrator.redact`): a server that echoed the token cannot make us print it.
    """
    stream = cast(TextIO, RedactingStream(out or sys.stdout))
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    handler: Callable[[argparse.Namespace, TextIO], int] = COMMANDS[args.command]
    with redirect_stderr(cast(TextIO, RedactingStream(sys.stderr))):
        try:
            return handler(args, stream)
        except InputError as exc:
            print_problems(exc.problems, [], stream, as_json=bool(getattr(args, "json", False)))
            return EXIT_USAGE
        except (CatalogError, OptionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (DBAPIError, DatabaseError) as exc:
            # A full disk, a read-only or locked file, a server gone: said, not a traceback.
            # Every write is its own transaction, so what was committed before is intact.
            detail = getattr(exc, "orig", None) or exc
            print(
                f"error: the store {getattr(args, 'db', '')!r} could not be used: {detail}",
                file=sys.stderr,
            )
            return EXIT_FAILED


def _expand(args: argparse.Namespace, catalog: Catalog) -> Expansion:
    """Read and check the manifest against ``catalog`` (see :mod:`.cli_catalog`), and check
    the output side, before anything is stored or paid for."""
    prices = PriceTable()
    if args.prices:
        prices = PriceTable(load_price_file(Path(args.prices)))
    probe: Callable[[str], ImageInfo] | None = None
    if args.probe_urls:
        from orchestrator.media.remote import probe_url

        probe = probe_url
    expansion = load_manifest(
        args.manifest,
        catalog=catalog,
        prices=prices,
        probe_url=probe,
        allow_unknown_model=bool(args.allow_unknown_model),
    )
    # The output side, before anything is stored or paid for: names and paths that fit the
    # file system, a writable folder, and a warning when the free space looks short.
    preflight = check_outputs(
        output_root(expansion, args.out),
        expansion.jobs,
        estimated_bytes=estimate_batch_bytes(expansion.jobs, catalog),
        source=expansion.settings.manifest_path,
    )
    if preflight.problems:
        raise InputError(preflight.problems)
    expansion.warnings.extend(preflight.warnings)
    return expansion


def _catalog(args: argparse.Namespace, store: Store | None) -> Any:
    """The live catalog for a manifest command (imported here: it needs httpx)."""
    from orchestrator.cli_catalog import live_catalog

    return live_catalog(args, store)


def _sources(live: Any, expansion: Expansion) -> list[dict[str, Any]]:
    from orchestrator.cli_catalog import sources_json

    return sources_json(live, list(expansion.by_model()))


def _show_sources(live: Any, expansion: Expansion, out: TextIO) -> None:
    from orchestrator.cli_catalog import show_sources

    show_sources(live, list(expansion.by_model()), out)


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    # Reads the store's cache when there is one, and never writes (nothing is stored).
    with _maybe_store(args.db) as store:
        live = _catalog(args, store)
        expansion = _expand(args, live)
    by_model = expansion.by_model()
    if args.json:
        json.dump(
            {
                "ok": True,
                "batch": expansion.settings.batch,
                "jobs": len(expansion.jobs),
                "models": {m: len(j) for m, j in by_model.items()},
                "catalog": _sources(live, expansion),
                "warnings": [w.as_dict() for w in expansion.warnings],
                "problems": [],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return EXIT_OK
    print_problems([], expansion.warnings, out, as_json=False)
    models = ", ".join(f"{len(j)} x {m}" for m, j in by_model.items())
    out.write(
        f"ok: {args.manifest}: batch {expansion.settings.batch!r}, "
        f"{len(expansion.jobs)} job(s): {models}\n"
    )
    _show_sources(live, expansion, out)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    states: dict[str, str] = {}
    with _maybe_store(args.db) as store:
        live = _catalog(args, store)
        with _remembered(live, store, args.api_base):
            expansion = _expand(args, live)
        if store is not None:
            states = {k: v.value for k, v in store.states_by_key(expansion.settings.batch).items()}
    summary = summarize(expansion, states)
    root = output_root(expansion, args.out)
    print_plan(
        expansion,
        summary,
        states,
        root,
        out,
        as_json=args.json,
        list_all=args.list,
        extra={"catalog": _sources(live, expansion)} if args.json else None,
    )
    if not args.json:
        _show_sources(live, expansion, out)
    return EXIT_OK


def cmd_enqueue(args: argparse.Namespace, out: TextIO) -> int:
    with _maybe_store(args.db) as existing:
        live = _catalog(args, existing)
        with _remembered(live, existing, args.api_base):
            expansion = _expand(args, live)
    root = output_root(expansion, args.out)
    with Store.open(args.db) as store:
        from orchestrator.cli_catalog import remember

        remember(live, store, args.api_base)
        kept_root = stored_output_root(store, expansion.settings.batch)
        result = enqueue(store, expansion, root)
    if kept_root is not None and kept_root != str(root):
        print(
            f"note: batch {expansion.settings.batch!r} keeps the output folder it was first "
            f"enqueued with: {kept_root} (not {root})",
            file=sys.stderr,
        )
    if args.json:
        json.dump(
            {
                "batch": expansion.settings.batch,
                "added": result.added,
                "existing": result.existing,
                "renamed": [list(pair) for pair in result.renamed],
                "catalog": _sources(live, expansion),
            },
            out,
        )
        out.write("\n")
        return EXIT_OK
    out.write(
        f"batch {expansion.settings.batch!r}: {result.added} job(s) added, "
        f"{result.existing} already stored\n"
    )
    for old, new in result.renamed:
        out.write(f"  note: {old!r} is taken by an earlier version of the job; stored as {new!r}\n")
    _show_sources(live, expansion, out)
    return EXIT_OK


@contextmanager
def _remembered(live: Any, store: Store | None, api_base: str) -> Iterator[None]:
    """Cache what was fetched once the block ends, even when the manifest was refused: the
    entries are the API's, whatever the manifest says."""
    try:
        yield
    finally:
        if store is not None:
            from orchestrator.cli_catalog import remember

            remember(live, store, api_base)


@contextmanager
def _maybe_store(db: str) -> Iterator[Store | None]:
    """The store when it exists already (read for its cache), else None: a command that
    only reads never creates an empty store."""
    if not store_exists(db):
        yield None
        return
    with Store.open(db) as store:
        yield store


def _open_existing(args: argparse.Namespace, out: TextIO) -> Store | None:
    if not store_exists(args.db):
        message = f"no store at {args.db}: run 'orchestrator enqueue' or 'run' first"
        if args.json:
            out.write(json.dumps({"error": message}) + "\n")
        else:
            print(message, file=sys.stderr)
        return None
    return Store.open(args.db)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    store = _open_existing(args, out)
    if store is None:
        return EXIT_FAILED
    with store:
        cap = None
        if args.batch is not None:
            settings = stored_settings(store, args.batch)
            cap = settings.limits.max_spend if settings is not None else None
        fetch = f"orchestrator work --batch {args.batch or 'BATCH'} --db {args.db}"
        print_status(store, args.batch, out, as_json=args.json, cap=cap, fetch_command=fetch)
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, out: TextIO) -> int:
    store = _open_existing(args, out)
    if store is None:
        return EXIT_FAILED
    with store:
        views = store.list_jobs(
            batch=args.batch, state=args.state, model=args.model, limit=args.limit
        )
    print_jobs(views, out, as_json=args.json)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, out: TextIO) -> int:
    import shlex

    from orchestrator.simulator import ProfileError, SimulatorServer, load_profile

    try:
        port = _number(args.port, int, "--port")
        if port is None or not 0 <= port <= 65535:
            raise ValueError(f"--port must be a port number from 0 to 65535, got {args.port!r}")
        files_port = _number(args.files_port, int, "--files-port")
        if files_port is None:  # the next port, or any free one when the API's is too
            files_port = port + 1 if port else 0
        if not 0 <= files_port <= 65535:
            raise ValueError(
                f"--files-port must be a port number from 0 to 65535, got {files_port!r}"
            )
        if port and files_port == port:
            raise ValueError("--files-port must differ from --port: the file host listens apart")
        profile = load_profile(args.profile).with_overrides(
            seed=_number(args.seed, int, "--seed"),
            time_scale=_number(args.time_scale, float, "--time-scale"),
            slots=_number(args.slots, int, "--slots"),
        )
        if profile.time_scale <= 0 or profile.slots < 1:
            raise ValueError("--time-scale must be > 0 and --slots at least 1")
    except (ProfileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        server = SimulatorServer(
            profile,
            port=port,
            files_port=files_port,
            token=args.token,
            host=args.host,
            file_host=args.file_host,
            log_level="info",
        )
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host} port {port} (API) and {files_port} (files): "
            f"{exc.strerror or exc}; choose others with --port and --files-port",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Any non-empty token is accepted unless --token names one. Plain-http downloads are
    # allowed only from a trusted loopback host (engine/download.py host_allowed), so the
    # command trusts the file host by name.
    token = "<the token given with --token>" if args.token else "sim-token"
    run = (
        f"RUNCOMFY_API_TOKEN={token} orchestrator run MANIFEST "
        f"--api-base {shlex.quote(server.api_base)} --trust-host {shlex.quote(args.file_host)}"
    )
    if profile.time_scale < 1:  # minutes pass in seconds: poll as ``run --simulate`` does
        run += f" --poll-min 0.05 --poll-max {max(0.5, 120 * profile.time_scale):g}"
    outages = ", ".join(
        f"{o.kind} {o.seconds:g} s after {o.after:g} s" for o in profile.file_outages
    )
    out.write(
        f"RunComfy simulator: profile {profile.name!r}, {profile.slots} slots, "
        f"time scale {profile.time_scale:g}, seed {profile.seed}\n"
        f"  API:    {server.api_base}   (export RUNCOMFY_API_BASE={server.api_base})\n"
        f"  files:  {server.files_base}   (a listener of its own)\n"
        f"  token:  {'the one given with --token' if args.token else 'any non-empty token'}\n"
        f"  ledger: {server.api_base}/_sim/ledger\n"
        + (f"  file outages (simulated seconds): {outages}\n" if outages else "")
        + f"  run:    {run}\n"
    )
    out.flush()
    server.serve_forever()
    return EXIT_OK


def _number(value: str | None, kind: type[int] | type[float], option: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{option} needs a number, got {value!r}") from None


def _lazy(module: str, name: str) -> Any:
    """A handler from a module imported only when its command runs (the engine, httpx and
    PyAV take most of a second to import; ``status`` and ``--help`` need none of them)."""
    import importlib

    return getattr(importlib.import_module(f"orchestrator.{module}"), name)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "enqueue": cmd_enqueue,
    "models": lambda args, out: _lazy("cli_catalog", "cmd_models")(args, out),
    "status": cmd_status,
    "jobs": cmd_jobs,
    "simulate": cmd_simulate,
    "run": lambda args, out: _lazy("cli_run", "run_batch")(
        args, out, lambda catalog: _expand(args, catalog)
    ),
    "work": lambda args, out: _lazy("cli_run", "work")(args, out),
    "reconcile": lambda args, out: _lazy("cli_run", "reconcile")(args, out),
    "retry": lambda args, out: _lazy("cli_actions", "retry")(args, out),
    "cancel": lambda args, out: _lazy("cli_actions", "cancel")(args, out),
    "export": lambda args, out: _lazy("cli_actions", "export")(args, out),
    "report": lambda args, out: _lazy("cli_actions", "report")(args, out),
}
