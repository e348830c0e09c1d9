"""Acting on a batch: ``retry`` failed jobs, ``cancel`` what has not run yet, and
``reconcile`` submits whose outcome is unknown."""

from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING, TextIO

import click

from orchestrator.cli.base import command
from orchestrator.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from orchestrator.cli.hints import work_command
from orchestrator.cli.options import (
    api_base_option,
    batch_option,
    db_option,
    flag,
    ids_option,
    json_option,
    names_of,
    option,
)
from orchestrator.cli.stores import check_batch, existing_store

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from orchestrator.cli.base import Session
    from orchestrator.store.fetches import Candidate


@command("retry", "Queue failed jobs again (free fetch or paid).")
@db_option
@json_option
@batch_option(required=True)
@flag(
    "--failed/--named-only",
    "ORCHESTRATOR_RETRY_FAILED",
    "every failed job of the batch, and every paid video still to fetch",
)
@option(
    "--ids",
    envvar="ORCHESTRATOR_IDS",
    help="these job ids (comma-separated; failed, cancelled or still to fetch)",
)
@flag(
    "--reroll/--no-reroll",
    "ORCHESTRATOR_REROLL",
    "pay again for a new render of jobs RunComfy already rendered (default: fetch them "
    "again, free); the cost is printed",
)
@click.pass_obj
def retry(
    session: Session,
    /,
    db: str,
    as_json: bool,
    batch: str,
    failed: bool,
    ids: str | None,
    reroll: bool,
) -> int:
    """Queue failed jobs of a batch again, each the way its money allows.

    A job RunComfy rendered (paid, its video not fetched) is fetched again for free; only
    --reroll pays for a new render of it. A job that never rendered (a failed generation,
    a refused submit) gets a new paid attempt. Each job's path and the cost are printed.
    """
    from orchestrator.engine.paidwork import RetryPath, retry_path
    from orchestrator.store import JobState
    from orchestrator.store.fetches import FetchQueue
    from orchestrator.store.work import WorkQueue

    out = session.out
    names = names_of(ids)
    if not failed and not names:
        print("error: say which jobs: --failed, or --ids a,b", file=sys.stderr)
        return EXIT_USAGE
    states = [JobState.FAILED, JobState.FETCH_PAUSED, JobState.FETCH_WAIT]
    if names:
        states.append(JobState.CANCELLED)
    with existing_store(db) as store:
        check_batch(store, batch, db)
        queue = WorkQueue(store)
        fetches = FetchQueue(queue)
        plan: dict[RetryPath, list[Candidate]] = {path: [] for path in RetryPath}
        for job in fetches.candidates(batch, states, names):
            plan[retry_path(job.state, job.last_paid_outcome, reroll=reroll)].append(job)
        fetched = fetches.resume(
            batch,
            [j.name for j in plan[RetryPath.FETCH_AGAIN]],
            states=(JobState.FETCH_PAUSED, JobState.FETCH_WAIT, JobState.FAILED),
        )
        fresh = {"error": None, "next_attempt_at": None, "fetch_failures": 0}
        attempts = queue.user_action(
            batch,
            [j.name for j in plan[RetryPath.NEW_ATTEMPT]],
            [JobState.FAILED, JobState.CANCELLED],
            JobState.PENDING,
            "retry_requested",
            fresh,
        )
        rerolled = queue.user_action(
            batch,
            [j.name for j in plan[RetryPath.REROLL]],
            [JobState.FAILED, JobState.FETCH_PAUSED, JobState.FETCH_WAIT],
            JobState.PENDING,
            "reroll_requested",
            fresh,
        )
    queued = set(attempts) | set(rerolled)
    paid = [j for j in plan[RetryPath.NEW_ATTEMPT] + plan[RetryPath.REROLL] if j.name in queued]
    cost = _total(paid)
    if as_json:
        json.dump(
            {
                "batch": batch,
                "requeued": fetched + attempts + rerolled,
                "fetch_again": fetched,
                "new_attempts": attempts,
                "rerolls": rerolled,
                "needs_reroll": [j.name for j in plan[RetryPath.NEEDS_REROLL]],
                "estimated_cost_usd": cost,
            },
            out,
        )
        out.write("\n")
        return EXIT_OK
    by_name = {j.name: j for jobs in plan.values() for j in jobs}
    for name in fetched:
        out.write(f"  {name}: fetch again (already paid: request {by_name[name].request_id})\n")
    for name in attempts:
        out.write(f"  {name}: new paid attempt ({_usd(by_name[name].estimated_cost_usd)})\n")
    for name in rerolled:
        out.write(
            f"  {name}: re-roll: pays for a new render of a rendered video "
            f"({_usd(by_name[name].estimated_cost_usd)})\n"
        )
    for job in plan[RetryPath.NEEDS_REROLL]:
        out.write(
            f"  {job.name}: not queued: RunComfy no longer has its result; --reroll pays for "
            f"a new render ({_usd(job.estimated_cost_usd)})\n"
        )
    moved = len(fetched) + len(paid)
    out.write(
        f"{moved} job(s) of batch {batch!r} queued again: {len(fetched)} to fetch again "
        f"(free), {len(paid)} new paid attempt(s), estimated {_usd(cost)}\n"
    )
    if moved:
        out.write(f"next: {work_command(batch, db)}   # or run the manifest again\n")
    return EXIT_OK


def _usd(value: float | None) -> str:
    return "price unknown" if value is None else f"est. ${value:,.2f}"


def _total(jobs: list[Candidate]) -> float | None:
    if any(j.estimated_cost_usd is None for j in jobs):
        return None
    return round(sum(j.estimated_cost_usd or 0.0 for j in jobs), 6)


@command("cancel", "Stop what has not run yet; cancel what is queued.")
@db_option
@json_option
@batch_option(required=True)
@ids_option
@flag(
    "--discard/--keep-paid",
    "ORCHESTRATOR_DISCARD",
    "also give up jobs already running and paid videos still to fetch (RunComfy bills them "
    "anyway; their videos are not fetched)",
)
@api_base_option
@click.pass_obj
def cancel(
    session: Session,
    /,
    db: str,
    as_json: bool,
    batch: str,
    ids: str | None,
    discard: bool,
    api_base: str,
) -> int:
    """Stop jobs not yet submitted and cancel those still queued on RunComfy.

    Jobs already running cannot be cancelled: RunComfy finishes and bills them, so they
    stay submitted and are fetched when done. --discard gives them up (and paid videos
    still to fetch), and says what that throws away.
    """
    import anyio

    from orchestrator.engine.runner import MissingToken, token_from_environment
    from orchestrator.store import JobState
    from orchestrator.store.work import WorkQueue

    out = session.out
    names = names_of(ids)
    with existing_store(db) as store:
        check_batch(store, batch, db)
        queue = WorkQueue(store)
        local = queue.user_action(
            batch, names, [JobState.PENDING, JobState.RETRY_WAIT], JobState.CANCELLED, "cancelled"
        )
        remote = [
            job
            for job in store.list_jobs(batch=batch, state=JobState.SUBMITTED.value)
            if (names is None or job.id in names) and job.request_id
        ]
        cancelled: list[str] = []
        running: list[str] = []
        if remote:
            try:
                token = token_from_environment()
            except MissingToken as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            cancelled, running = anyio.run(
                _cancel_remote, api_base, token, [(j.id, j.request_id or "") for j in remote]
            )
            # Only the cancels RunComfy confirmed (an empty list moves nothing). A run in
            # progress may see the cancel first and record it itself: either way it counts.
            queue.user_action(
                batch,
                cancelled,
                [JobState.SUBMITTED],
                JobState.CANCELLED,
                "cancelled",
                {"remote_status": "cancelled"},
                {"outcome": "cancelled"},  # cancelled while queued: never billed
            )
        discarded: list[str] = []
        if discard:
            discarded = queue.user_action(
                batch,
                names,
                [JobState.SUBMITTED, JobState.FETCH_WAIT, JobState.FETCH_PAUSED],
                JobState.CANCELLED,
                "discarded",
                {"error": "discarded by the user: RunComfy renders and bills it anyway"},
                {"outcome": "discarded"},
            )
            running = [name for name in running if name not in discarded]
        kept = [
            job.id
            for state in (JobState.FETCH_WAIT, JobState.FETCH_PAUSED, JobState.DOWNLOADING)
            for job in store.list_jobs(batch=batch, state=state.value)
            if names is None or job.id in names
        ]
    report = {
        "batch": batch,
        "cancelled_locally": local,
        "cancelled_remotely": cancelled,
        "already_running": running,
        "paid_kept": kept,
        "discarded": discarded,
    }
    code = EXIT_OK if not running else EXIT_FAILED
    if as_json:
        json.dump(report, out)
        out.write("\n")
        return code
    _say_cancelled(out, report, work_command(batch, db))
    return code


def _say_cancelled(out: TextIO, report: Mapping[str, Sequence[str]], fetch: str) -> None:
    def names(key: str) -> Sequence[str]:
        return report[key]

    running, kept, discarded = names("already_running"), names("paid_kept"), names("discarded")
    out.write(
        f"{len(names('cancelled_locally'))} job(s) cancelled before submission, "
        f"{len(names('cancelled_remotely'))} cancelled on RunComfy while queued (confirmed)\n"
    )
    if running:
        out.write(
            f"{len(running)} job(s) already running on RunComfy cannot be cancelled: RunComfy "
            "finishes and bills them, so they stay submitted and their videos are fetched when "
            f"done (by the run in progress, or: {fetch}). --discard gives them up: "
            + ", ".join(running)
            + "\n"
        )
    if kept:
        out.write(
            f"{len(kept)} paid video(s) still to fetch are kept (--discard gives them up): "
            + ", ".join(kept)
            + "\n"
        )
    if discarded:
        out.write(
            f"{len(discarded)} paid job(s) discarded: RunComfy renders and bills them anyway, "
            "and their videos will not be fetched: " + ", ".join(discarded) + "\n"
        )


async def _cancel_remote(
    api_base: str, token: str, jobs: list[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    from orchestrator.api import RunComfyClient, RunComfyError

    cancelled: list[str] = []
    running: list[str] = []
    async with RunComfyClient(api_base, token=token) as api:
        for name, request_id in jobs:
            try:
                reply = await api.cancel(request_id)
            except RunComfyError:
                running.append(name)
                continue
            (cancelled if reply.cancelled else running).append(name)
    return cancelled, running


@command("reconcile", "Submits whose outcome is unknown.")
@db_option
@json_option
@batch_option(required=False)
@ids_option
@flag(
    "--resubmit/--list",
    "ORCHESTRATOR_RESUBMIT",
    "queue them again as new paid attempts (check RunComfy first)",
)
@click.pass_obj
def reconcile(
    session: Session, /, db: str, as_json: bool, batch: str | None, ids: str | None, resubmit: bool
) -> int:
    """List submits whose outcome is unknown; --resubmit queues them again.

    Resubmit only after checking RunComfy's dashboard: each is a new paid attempt.
    """
    from orchestrator.store import JobState
    from orchestrator.store.work import WorkQueue
    from orchestrator.views import table

    out = session.out
    with existing_store(db) as store:
        check_batch(store, batch, db)
        waiting = store.list_jobs(batch=batch, state=JobState.NEEDS_RECONCILE.value)
        late = store.late_request_ids(batch)
        names = names_of(ids)
        if names:
            waiting = [j for j in waiting if j.id in names]
        moved: list[str] = []
        if resubmit:
            queue = WorkQueue(store)
            for name in sorted({j.batch for j in waiting}):
                moved += queue.user_action(
                    name,
                    [j.id for j in waiting if j.batch == name],
                    [JobState.NEEDS_RECONCILE],
                    JobState.PENDING,
                    "resubmit",
                    {"error": None},
                )
    if as_json:
        json.dump(
            {
                "needs_reconcile": [
                    {**j.as_dict(), "late_request_ids": late.get((j.batch, j.id), [])}
                    for j in waiting
                ],
                "resubmitted": moved,
            },
            out,
            indent=2,
            default=str,
        )
        out.write("\n")
        return EXIT_OK
    if not waiting:
        out.write("no job needs reconciling\n")
        return EXIT_OK
    rows = [[j.batch, j.id, j.model, j.attempts, j.error or ""] for j in waiting]
    out.write(table(rows, ["batch", "job", "model", "tries", "why"], {3}) + "\n")
    for (name, job), request_ids in sorted(late.items()):
        # A worker paused past its lease got these after its job was parked: RunComfy
        # accepted the submit, so it is paid for and can be looked up, not resubmitted.
        out.write(
            f"{name}/{job}: RunComfy accepted it as request {', '.join(request_ids)} "
            "(answer reached a worker that had lost its lease)\n"
        )
    scope = f" --batch {shlex.quote(batch)}" if batch else ""
    if resubmit:
        out.write(
            f"{len(moved)} job(s) queued again as new paid attempts; "
            f"next: orchestrator work{scope} --db {shlex.quote(db)}   # or run the manifest\n"
        )
    else:
        out.write(
            "These submits may have reached RunComfy (and may be billed). Check your "
            "RunComfy generations, then (add --ids a,b for only some):\n"
            f"next: orchestrator reconcile{scope} --resubmit --db {shlex.quote(db)}\n"
        )
    return EXIT_OK


COMMANDS = [retry, cancel, reconcile]
