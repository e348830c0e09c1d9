"""What a batch leaves behind besides its videos: ``export`` (a dataset) and ``report``
(the static HTML review page).

``--out DIR`` means what it means for ``run``: the output folder that holds the batch's
folder, so ``export --out DIR`` writes ``DIR/BATCH/export.jsonl`` (``DIR/BATCH-hf`` for
hf) and ``report --out DIR`` writes ``DIR/BATCH/report.html``; without it, the batch's
own output folder. ``--dest PATH`` (the older spelling) names the file itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import click

from orchestrator.cli.base import command
from orchestrator.cli.exits import EXIT_OK, EXIT_USAGE, CommandError
from orchestrator.cli.options import (
    batch_option,
    catalog_option,
    db_option,
    json_option,
    option,
)
from orchestrator.cli.stores import said_as_usage

if TYPE_CHECKING:
    from orchestrator.cli.base import Session
    from orchestrator.problems import InputError

Format = Literal["jsonl", "csv", "hf"]

_out_folder = option(
    "--out",
    envvar="ORCHESTRATOR_OUT",
    type=click.Path(),
    help="the output folder holding the batch's folder, as for run (default: the one the "
    "batch was enqueued with)",
)


def _destination(out: str | None, dest: str | None, name: str) -> Path | None:
    """Where to write: ``--dest`` as given, ``name`` inside ``--out``, or None (the
    default); both at once is a usage error.

    >>> str(_destination("out", None, "b/report.html")), _destination(None, None, "x")
    ('out/b/report.html', None)
    """
    if out and dest:
        raise CommandError("give --out DIR or --dest PATH, not both")
    if dest:
        return Path(dest)
    return Path(out) / name if out else None


@command("export", "Write a batch's videos as a dataset.")
@db_option
@json_option
@batch_option(required=True)
@option(
    "--format",
    "fmt",
    envvar="ORCHESTRATOR_FORMAT",
    type=click.Choice(["jsonl", "csv", "hf"]),
    default="jsonl",
    show_default=True,
    help="jsonl, csv, or hf (a Hugging Face videofolder)",
)
@_out_folder
@option(
    "--dest",
    envvar="ORCHESTRATOR_DEST",
    type=click.Path(),
    help="the file to write (the folder with --format hf), instead of one under --out",
)
@catalog_option
@click.pass_obj
def export(
    session: Session,
    /,
    db: str,
    as_json: bool,
    batch: str,
    fmt: str,
    out: str | None,
    dest: str | None,
    catalog: str | None,
) -> int:
    """Write a batch's videos as a dataset: one row per video.

    With --out DIR: DIR/BATCH/export.jsonl (or .csv), or the videofolder DIR/BATCH-hf.
    """
    from orchestrator.library.reading import export as export_batch
    from orchestrator.problems import InputError

    name = f"{batch}-hf" if fmt == "hf" else f"{batch}/export.{fmt}"
    target = _destination(out, dest, name)
    try:
        with said_as_usage(db):
            result = export_batch(db, batch, cast("Format", fmt), dest=target, catalog_dir=catalog)
    except InputError as exc:  # the export's own refusal (a folder in the way, ...)
        return _refused(exc)
    stream = session.out
    if as_json:
        json.dump(
            {"path": str(result.path), "rows": result.rows, "skipped": result.skipped}, stream
        )
        stream.write("\n")
        return EXIT_OK
    stream.write(f"exported {result.rows} video(s) of batch {batch!r} as {fmt}: {result.path}\n")
    for line in result.skipped:
        stream.write(f"  left out: {line}\n")
    return EXIT_OK


@command("report", "Write the batch's HTML review page.")
@db_option
@json_option
@batch_option(required=True)
@_out_folder
@option(
    "--dest",
    envvar="ORCHESTRATOR_DEST",
    type=click.Path(),
    help="the HTML file to write, instead of BATCH/report.html under --out",
)
@click.pass_obj
def report(
    session: Session, /, db: str, as_json: bool, batch: str, out: str | None, dest: str | None
) -> int:
    """Write the batch's static HTML review page (default: <videos>/<batch>/report.html)."""
    from orchestrator.library.reading import report as write_report
    from orchestrator.outputs.report import REPORT_NAME
    from orchestrator.problems import InputError

    target = _destination(out, dest, f"{batch}/{REPORT_NAME}")
    try:
        with said_as_usage(db):
            result = write_report(db, batch, dest=target)
    except InputError as exc:  # the report's own refusal (a folder in the way, ...)
        return _refused(exc)
    stream = session.out
    if as_json:
        json.dump(
            {"path": str(result.path), "videos": result.videos, "failures": result.failures},
            stream,
        )
        stream.write("\n")
    else:
        stream.write(
            f"report: {result.path} ({result.videos} video(s), {result.failures} failure(s))\n"
        )
    return EXIT_OK


def _refused(exc: InputError) -> int:
    """Exit 2, each problem said in an ``error:`` line."""
    for problem in exc.problems:
        print(f"error: {problem.message}", file=sys.stderr)
    return EXIT_USAGE


COMMANDS = [export, report]
