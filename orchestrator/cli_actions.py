"""Acting on a batch: ``retry`` failed jobs and ``cancel`` what has not run yet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

import anyio

from orchestrator.api import RunComfyClient, RunComfyError
from orchestrator.cli_run import UsageError, connection_for
from orchestrator.engine.paidwork import RetryPath, retry_path
from orchestrator.engine.runner import MissingToken
from orchestrator.store import JobState, Store
from orchestrator.store.fetches import Candidate, FetchQueue
from orchestrator.store.work import WorkQueue

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _names(args: argparse.Namespace) -> list[str] | None:
    return [n.strip() for n in (args.ids or "").split(",") if n.strip()] or None


def retry(args: argparse.Namespace, out: TextIO) -> int:
    """``retry --batch B [--failed] [--ids a,b] [--reroll]``: queue jobs again, each the way
    its money allows. A job RunComfy rendered (paid, its video not fetched) is fetched
    again for free; only ``--reroll`` pays for a new render of it. A job that never
    rendered (a failed generation, a refused submit) gets a new paid attempt. Each job's
    path and the cost are printed."""
    names = _names(args)
    if not args.failed and not names:
        print("error: say which jobs: --failed, or --ids a,b", file=sys.stderr)
        return EXIT_USAGE
    states = [JobState.FAILED, JobState.FETCH_PAUSED, JobState.FETCH_WAIT]
    if names:
        states.append(JobState.CANCELLED)
    reroll = bool(getattr(args, "reroll", False))
    with Store.open(args.db) as store:
        queue = WorkQueue(store)
        fetches = FetchQueue(queue)
        plan: dict[RetryPath, list[Candidate]] = {path: [] for path in RetryPath}
        for job in fetches.candidates(args.batch, states, names):
            plan[retry_path(job.state, job.last_paid_outcome, reroll=reroll)].append(job)
        fetched = fetches.resume(
            args.batch,
            [j.name for j in plan[RetryPath.FETCH_AGAIN]],
            states=(JobState.FETCH_PAUSED, JobState.FETCH_WAIT, JobState.FAILED),
        )
        fresh = {"error": None, "next_attempt_at": None, "fetch_failures": 0}
        attempts = queue.user_action(
            args.batch,
            [j.name for j in plan[RetryPath.NEW_ATTEMPT]],
            [JobState.FAILED, JobState.CANCELLED],
            JobState.PENDING,
            "retry_requested",
            fresh,
        )
        rerolled = queue.user_action(
            args.batch,
            [j.name for j in plan[RetryPath.REROLL]],
            [JobState.FAILED, JobState.FETCH_PAUSED, JobState.FETCH_WAIT],
            JobState.PENDING,
            "reroll_requested",
            fresh,
        )
    queued = set(attempts) | set(rerolled)
    paid = [j for j in plan[RetryPath.NEW_ATTEMPT] + plan[RetryPath.REROLL] if j.name in queued]
    cost = _total(paid)
    if args.json:
        json.dump(
            {
                "batch": args.batch,
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
        f"{moved} job(s) of batch {args.batch!r} queued again: {len(fetched)} to fetch again "
        f"(free), {len(paid)} new paid attempt(s), estimated {_usd(cost)}\n"
    )
    if moved:
        out.write(
            f"next: orchestrator work --batch {args.batch} --db {args.db} (or run the manifest "
            "again)\n"
        )
    return EXIT_OK


def _usd(value: float | None) -> str:
    return "price unknown" if value is None else f"est. ${value:,.2f}"


def _total(jobs: list[Candidate]) -> float | None:
    if any(j.estimated_cost_usd is None for j in jobs):
        return None
    return round(sum(j.estimated_cost_usd or 0.0 for j in jobs), 6)


def cancel(args: argparse.Namespace, out: TextIO) -> int:
    """``cancel --batch B [--ids a,b] [--discard]``: jobs not yet submitted stop here; jobs
    queued on RunComfy are cancelled there (only the confirmed ones count). Jobs already
    running cannot be cancelled: RunComfy finishes and bills them, so they stay
    ``submitted`` and are fetched when done. ``--discard`` gives them up (and paid videos
    still to fetch), and says what that throws away."""
    names = _names(args)
    discard = bool(getattr(args, "discard", False))
    with Store.open(args.db) as store:
        queue = WorkQueue(store)
        local = queue.user_action(
            args.batch,
            names,
            [JobState.PENDING, JobState.RETRY_WAIT],
            JobState.CANCELLED,
            "cancelled",
        )
        remote = [
            job
            for job in store.list_jobs(batch=args.batch, state=JobState.SUBMITTED.value)
            if (names is None or job.id in names) and job.request_id
        ]
        cancelled: list[str] = []
        running: list[str] = []
        if remote:
            try:
                with connection_for(args) as connection:
                    cancelled, running = anyio.run(
                        _cancel_remote,
                        connection.api_base,
                        connection.token,
                        [(job.id, job.request_id or "") for job in remote],
                    )
            except (MissingToken, UsageError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            # Only the cancels RunComfy confirmed (an empty list moves nothing). A run in
            # progress may see the cancel first and record it itself: either way it counts.
            queue.user_action(
                args.batch,
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
                args.batch,
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
            for job in store.list_jobs(batch=args.batch, state=state.value)
            if names is None or job.id in names
        ]
    report = {
        "batch": args.batch,
        "cancelled_locally": local,
        "cancelled_remotely": cancelled,
        "already_running": running,
        "paid_kept": kept,
        "discarded": discarded,
    }
    code = EXIT_OK if not running else EXIT_FAILED
    if args.json:
        json.dump(report, out)
        out.write("\n")
        return code
    out.write(
        f"{len(local)} job(s) cancelled before submission, "
        f"{len(cancelled)} cancelled on RunComfy while queued (confirmed)\n"
    )
    if running:
        out.write(
            f"{len(running)} job(s) already running on RunComfy cannot be cancelled: RunComfy "
            "finishes and bills them, so they stay submitted and their videos are fetched when "
            f"done (by the run in progress, or: orchestrator work --batch {args.batch} --db "
            f"{args.db}). --discard gives them up: " + ", ".join(running) + "\n"
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
    return code


def export(args: argparse.Namespace, out: TextIO) -> int:
    """``export --batch B --format jsonl|csv|hf [--dest PATH]``: one row per video."""
    from orchestrator.catalog import load_catalog
    from orchestrator.outputs.export import ExportError, export_batch

    try:
        with Store.open(args.db) as store:
            result = export_batch(
                store,
                args.batch,
                args.format,
                Path(args.dest) if args.dest else None,
                load_catalog(getattr(args, "catalog", None)),
            )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump({"path": str(result.path), "rows": result.rows, "skipped": result.skipped}, out)
        out.write("\n")
        return EXIT_OK
    out.write(
        f"exported {result.rows} video(s) of batch {args.batch!r} as {args.format}: {result.path}\n"
    )
    for line in result.skipped:
        out.write(f"  left out: {line}\n")
    return EXIT_OK


def report(args: argparse.Namespace, out: TextIO) -> int:
    """``report --batch B [--dest FILE]``: the static HTML review page of a batch."""
    from orchestrator.outputs.report import ReportError, write_report

    try:
        with Store.open(args.db) as store:
            result = write_report(store, args.batch, Path(args.dest) if args.dest else None)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump(
            {"path": str(result.path), "videos": result.videos, "failures": result.failures}, out
        )
        out.write("\n")
    else:
        out.write(
            f"report: {result.path} ({result.videos} video(s), {result.failures} failure(s))\n"
        )
    return EXIT_OK


async def _cancel_remote(
    api_base: str, token: str, jobs: list[tuple[str, str]]
) -> tuple[list[str], list[str]]:
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
