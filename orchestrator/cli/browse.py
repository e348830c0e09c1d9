"""The commands that only read the store: ``status`` and ``jobs``. Neither creates a store:
without one, each says so (exit 2) and names the stores in the folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.base import command
from orchestrator.cli.exits import EXIT_OK
from orchestrator.cli.hints import hinted, work_command
from orchestrator.cli.options import (
    batch_option,
    catalog_option,
    choices,
    db_option,
    json_option,
    option,
)
from orchestrator.cli.stores import check_batch, existing_store, resolve_model

if TYPE_CHECKING:
    from orchestrator.cli.base import Session


def _states() -> list[str]:
    from orchestrator.store import JobState

    return [state.value for state in JobState]


@command("status")
@db_option
@json_option
@batch_option(required=False)
@click.pass_obj
def status(session: Session, /, db: str, as_json: bool, batch: str | None) -> int:
    """Counts by state and spend, per batch."""
    from orchestrator.library.reading import batch_cap
    from orchestrator.views import print_status

    with existing_store(db) as store:
        check_batch(store, batch, db)
        cap = batch_cap(store, batch)
        fetch = work_command(batch, db) if batch is not None else None
        with hinted(session.out, db) as out:
            print_status(store, batch, out, as_json=as_json, cap=cap, fetch_command=fetch)
    return EXIT_OK


@command("jobs")
@db_option
@json_option
@batch_option(required=False)
@option(
    "--state",
    envvar="ORCHESTRATOR_STATE",
    type=choices(_states),
    help="only jobs in this state",
)
@option(
    "--model",
    envvar="ORCHESTRATOR_MODEL",
    help="only jobs of this model: its id, its folder name (e.g. runway-gen-4-turbo) or "
    "its display name",
)
@option(
    "--limit",
    envvar="ORCHESTRATOR_LIMIT",
    type=click.IntRange(min=1),
    help="at most this many jobs",
)
@catalog_option
@click.pass_obj
def jobs(
    session: Session,
    /,
    db: str,
    as_json: bool,
    batch: str | None,
    state: str | None,
    model: str | None,
    limit: int | None,
    catalog: str | None,
) -> int:
    """List jobs from the store."""
    from orchestrator.library.reading import jobs as list_jobs
    from orchestrator.views import print_jobs

    with existing_store(db) as store:
        check_batch(store, batch, db)
        model_id = resolve_model(store, batch, model, catalog) if model else None
        views = list_jobs(store, batch, state=state, model=model_id, limit=limit)
    print_jobs(views, session.out, as_json=as_json)
    return EXIT_OK


COMMANDS = [status, jobs]
