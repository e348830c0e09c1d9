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
from orchestrator.engine.runner import MissingToken
from orchestrator.store import JobState, Store
from orchestrator.store.work import WorkQueue

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _names(args: argparse.Namespace) -> list[str] | None:
    return [n.strip() for n in (args.ids or "").split(",") if n.strip()] or None


def retry(args: argparse.Namespace, out: TextIO) -> int:
    """``retry --batch B [--failed] [--ids a,b]``: queue failed (or cancelled, when named)
    jobs again; each becomes a new attempt, counted like any other."""
    names = _names(args)
    if not args.failed and not names:
        print("error: say which jobs: --failed, or --ids a,b", file=sys.stderr)
        return EXIT_USAGE
    states = [JobState.FAILED] + ([JobState.CANCELLED] if names else [])
    with Store.open(args.db) as store:
        moved = WorkQueue(store).user_action(
            args.batch,
            names,
            states,
            JobState.PENDING,
            "retry_requested",
            {"error": None, "next_attempt_at": None},
        )
    if args.json:
        json.dump({"batch": args.batch, "requeued": moved}, out)
        out.write("\n")
    else:
        out.write(f"{len(moved)} job(s) of batch {args.batch!r} queued again")
        out.write(": " + ", ".join(moved) + "\n" if moved else "\n")
        if moved:
            out.write("next: orchestrator work --batch " + args.batch + " (or run the manifest)\n")
    return EXIT_OK


def cancel(args: argparse.Namespace, out: TextIO) -> int:
    """``cancel --batch B``: jobs not yet submitted stop here; jobs queued on RunComfy are
    cancelled there (free); jobs already running cannot be and are reported."""
    names = _names(args)
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
            queue.user_action(
                args.batch,
                cancelled,
                [JobState.SUBMITTED],
                JobState.CANCELLED,
                "cancelled",
                {"remote_status": "cancelled"},
            )
    report = {
        "batch": args.batch,
        "cancelled_locally": local,
        "cancelled_remotely": cancelled,
        "already_running": running,
    }
    code = EXIT_OK if not running else EXIT_FAILED
    if args.json:
        json.dump(report, out)
        out.write("\n")
        return code
    out.write(
        f"{len(local)} job(s) cancelled before submission, "
        f"{len(cancelled)} cancelled on RunComfy while queued\n"
    )
    if running:
        out.write(
            f"{len(running)} job(s) already running could not be cancelled (RunComfy "
            "finishes and bills them): " + ", ".join(running) + "\n"
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
