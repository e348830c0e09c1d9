"""Text and JSON renderings of plans, problems, jobs and status (the catalog: views_catalog).

Printing only: every number shown here was computed by the library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.store.money import ModelCost, Money, any_cost, money
from orchestrator.store.work import WorkQueue
from orchestrator.store.workers import WorkerRegistry, WorkerView

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from orchestrator.manifest import Expansion
    from orchestrator.planning import PlanSummary
    from orchestrator.problems import Problem
    from orchestrator.store import BatchView, JobView, Store

PREVIEW_JOBS = 20


def table(
    rows: Sequence[Sequence[Any]], header: Sequence[str], right: set[int] | None = None
) -> str:
    """A plain aligned text table (no colour, safe for logs and pipes)."""
    right = right or set()
    cells = [[str(h) for h in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def print_problems(
    problems: Sequence[Problem], warnings: Sequence[Problem], out: TextIO, *, as_json: bool
) -> None:
    """Every problem, one per line, then a count; warnings are marked as such."""
    if as_json:
        json.dump(
            {
                "ok": not problems,
                "problems": [p.as_dict() for p in problems],
                "warnings": [w.as_dict() for w in warnings],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    for warning in warnings:
        out.write(f"warning: {warning}\n")
    for problem in problems:
        out.write(f"error: {problem}\n")
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        out.write(f"{len(problems)} {noun} found; nothing was stored or submitted.\n")


def print_plan(
    expansion: Expansion,
    summary: PlanSummary,
    states: Mapping[str, str],
    root: Path,
    out: TextIO,
    *,
    as_json: bool,
    list_all: bool,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """The plan: per-model counts, the store diff, cost, and the jobs themselves.

    ``extra`` keys are added to the JSON output (the catalog sources)."""
    if as_json:
        data = summary.as_dict()
        data.update(extra or {})
        data["output_root"] = str(root)
        data["warnings"] = [w.as_dict() for w in expansion.warnings]
        data["jobs"] = [
            {
                "id": job.id,
                "key": job.key,
                "model": job.model_id,
                "status": _plan_status(states.get(job.key)),
                "output_path": job.output_path,
                "estimated_cost_usd": job.estimated_cost_usd,
            }
            for job in expansion.jobs
        ]
        json.dump(data, out, indent=2)
        out.write("\n")
        return
    for warning in expansion.warnings:
        out.write(f"warning: {warning}\n")
    out.write(
        f"batch {summary.batch!r}: {summary.total} job(s): {summary.new} new, "
        f"{summary.stored} already stored, {summary.done} done\n\n"
    )
    rows = [
        [
            m.model_id,
            m.jobs,
            m.new,
            m.stored,
            m.done,
            usd(m.estimate_new_usd if m.priced else None),
        ]
        for m in summary.models
    ]
    out.write(table(rows, ["model", "jobs", "new", "stored", "done", "est. new"], {1, 2, 3, 4, 5}))
    out.write("\n\n")
    shown = expansion.jobs if list_all else expansion.jobs[:PREVIEW_JOBS]
    job_rows = [
        [
            job.id,
            job.model_slug,
            _plan_status(states.get(job.key)),
            usd(job.estimated_cost_usd),
            job.output_path,
        ]
        for job in shown
    ]
    out.write(table(job_rows, ["job", "model", "status", "est.", "output"], {3}))
    out.write("\n")
    if len(shown) < len(expansion.jobs):
        out.write(f"... and {len(expansion.jobs) - len(shown)} more (--list shows all)\n")
    out.write("\n")
    if summary.unpriced:
        priced = [m for m in summary.models if m.priced]
        known = ""
        if priced:
            subtotal = sum(m.estimate_new_usd for m in priced)
            known = f" ({usd(subtotal)} for the new jobs of the priced models)"
        out.write(
            f"estimated cost: unknown{known} - no price for "
            + ", ".join(summary.unpriced)
            + ".\n  RunComfy's catalog gives no price for these models (or was not asked: "
            "see the catalog lines below); pass --prices FILE (YAML: model id -> USD per "
            "second of video) to estimate.\n"
        )
    else:
        out.write(
            f"estimated cost of the {summary.new} new job(s): {usd(summary.estimate_new_usd)}\n"
        )
    if summary.stored_elsewhere:
        out.write(
            f"note: the store holds {summary.stored_elsewhere} job(s) of this batch that the "
            "manifest no longer creates (they are kept, not deleted)\n"
        )
    out.write(f"videos go to {root}\n")


def _plan_status(state: str | None) -> str:
    if state is None:
        return "new"
    return "done" if state == "succeeded" else f"stored ({state})"


def print_jobs(views: Sequence[JobView], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        json.dump([v.as_dict() for v in views], out, indent=2)
        out.write("\n")
        return
    rows = [
        [
            v.batch,
            v.id,
            v.model,
            v.state.value,
            v.attempts,
            v.request_id or "-",
            v.output_path,
            v.error or "",
        ]
        for v in views
    ]
    out.write(
        table(rows, ["batch", "job", "model", "state", "tries", "request", "output", "error"], {4})
    )
    out.write(f"\n{len(views)} job(s)\n")


def print_status(
    store: Store,
    batch: str | None,
    out: TextIO,
    *,
    as_json: bool,
    cap: float | None = None,
    fetch_command: str | None = None,
) -> None:
    counts = store.counts(batch)
    total = sum(counts.values())
    spend = store.spend(batch)
    batches = _batches(store, batch)
    costs = store.cost_by_model(batch)
    if as_json:
        json.dump(
            {
                "batch": batch,
                "total": total,
                "counts": counts,
                "spend_usd": round(spend, 6),
                "batches": [
                    {"name": b.name, "jobs": b.job_count, "output_root": b.output_root}
                    for b in batches
                ],
                "by_model": store.counts_by_model(batch),
                "money": money(store, batch).as_dict(cap),
                "cost_by_model": [c.as_dict() for c in costs],
                "workers": [w.as_dict() for w in live_workers(store)],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    if batch is not None:
        print_run_summary(store, batch, None, out, cap=cap, fetch_command=fetch_command)
    else:
        out.write(f"{len(batches)} batch(es): {total} job(s), spent {usd(spend)}\n")
        nonzero = [[state, number] for state, number in counts.items() if number]
        if nonzero:
            out.write(table(nonzero, ["state", "jobs"], {1}) + "\n")
    if any_cost(costs):
        print_costs(costs, out)
    print_workers(store, out)


def print_costs(costs: Sequence[ModelCost], out: TextIO) -> None:
    """Per model: jobs billed, their estimate, what RunComfy billed, and the difference."""
    rows = [
        [
            c.model_id,
            f"{c.billed} of {c.jobs}",
            usd(c.billed_estimate_usd) if c.compared else "-",
            usd(c.actual_usd) if c.billed else "-",
            c.difference_text(),
        ]
        for c in costs
    ]
    out.write("\nestimate vs actual:\n")
    header = ["model", "billed", "estimated", "actual", "difference"]
    for line in table(rows, header, {1, 2, 3, 4}).splitlines():
        out.write(f"  {line}\n")


def live_workers(store: Store) -> list[WorkerView]:
    return WorkerRegistry(WorkQueue(store)).live()


def print_workers(store: Store, out: TextIO) -> None:
    """The workers sharing this store and what each holds (nothing when none is running)."""
    workers = live_workers(store)
    if not workers:
        return
    rows = [
        [
            w.id,
            w.batch or "(all)",
            f"{w.heartbeat_age:.0f}s ago"
            + (" (late)" if w.heartbeat_age > w.lease_seconds else ""),
            ", ".join(f"{n} {state}" for state, n in sorted(w.holds.items())) or "nothing",
        ]
        for w in workers
    ]
    out.write(f"\n{len(workers)} live worker(s):\n")
    out.write(table(rows, ["worker", "batch", "heartbeat", "holds"], set()) + "\n")


def print_run_summary(
    store: Store,
    batch: str | None,
    report: Any | None,
    out: TextIO,
    *,
    cap: float | None = None,
    fetch_command: str | None = None,
) -> None:
    """The morning summary: what happened, where the money went, how long it took, where the
    videos and the report are, and the exact commands to run next.

    ``fetch_command`` is the command that fetches paid videos still to fetch (a re-run).
    """
    counts = store.counts(batch)
    total = sum(counts.values())
    scope = f"batch {batch!r}" if batch else "all batches"
    stopped_by = report.stopped_by if report is not None else "done"
    stop = {
        "interrupted": " (interrupted)",
        "auth": " (stopped: authentication failed)",
        "lease_lost": " (stopped: presumed dead, its jobs were taken over)",
        "storage": " (stopped: the store could not be written)",
    }
    out.write(f"\n{scope}: {total} job(s){stop.get(stopped_by, '')}\n")
    nonzero = [[state, number] for state, number in counts.items() if number]
    if nonzero:
        out.write(table(nonzero, ["state", "jobs"], {1}) + "\n")
    first, last = store.span(batch)
    wall = f", wall time {_duration((last - first).total_seconds())}" if first and last else ""
    out.write(f"spent: {usd(store.spend(batch))}{wall}\n")
    print_money(money(store, batch), out, cap=cap, fetch_command=fetch_command)
    for job in store.list_jobs(batch=batch, state="failed", limit=10):
        out.write(f"  failed: {job.id}: {job.error}\n")
    for job in store.list_jobs(batch=batch, state="fetch_paused", limit=10):
        out.write(f"  paid, not fetched: {job.id}: {job.error}\n")
    for job in store.list_jobs(batch=batch, state="needs_reconcile", limit=10):
        out.write(f"  needs a decision: {job.id}: {job.error}\n")
    for batch_view in _batches(store, batch):
        out.write(f"videos: {batch_view.output_root}\n")
        page = Path(batch_view.output_root) / batch_view.name / "report.html"
        if page.exists():
            out.write(f"report: {page}\n")
    if report is not None:
        for note in report.notes:
            out.write(f"note: {note}\n")
        for wanted, saved in report.renamed[:10]:
            out.write(
                f"note: {wanted} holds a file this store did not write: kept it, saved the "
                f"video as {saved}\n"
            )
        if len(report.renamed) > 10:
            out.write(f"note: ... and {len(report.renamed) - 10} more videos saved that way\n")
        if report.auth_error:
            out.write(f"error: {report.auth_error}\n")
        if report.storage_error:
            out.write(f"error: {report.storage_error}\n")
    if counts.get("needs_reconcile"):
        out.write("next: orchestrator reconcile   (submits whose outcome is unknown)\n")
    if counts.get("failed") and batch:
        out.write(f"next: orchestrator retry --batch {batch} --failed\n")
    if stopped_by == "interrupted":
        out.write("next: run the same command again to resume (nothing is submitted twice)\n")


def print_money(money: Money, out: TextIO, *, cap: float | None, fetch_command: str | None) -> None:
    """Paid and delivered, paid and still to fetch (with the command), paid and lost (with
    why), committed in flight, and the cap."""
    rows = [
        ["paid and delivered", money.delivered.jobs, usd(money.delivered.usd), ""],
        [
            "paid, still to fetch",
            money.to_fetch.jobs,
            usd(money.to_fetch.usd),
            f"free to fetch: {fetch_command}" if money.to_fetch.jobs and fetch_command else "",
        ],
        [
            "paid and lost",
            money.lost.jobs,
            usd(money.lost.usd),
            "see why below" if money.lost.jobs else "",
        ],
        ["committed in flight", money.in_flight.jobs, usd(money.in_flight.usd), ""],
    ]
    out.write("money:\n")
    for line in table(rows, ["", "jobs", "USD", ""], {1, 2}).splitlines()[1:]:
        out.write(f"  {line}\n")
    limit = f"cap {usd(cap)}" if cap is not None else "no spend cap"
    out.write(
        f"  {usd(money.spent_usd)} reported by RunComfy, {usd(money.committed_usd)} spent or "
        f"committed; {limit}\n"
    )
    for name, why in money.lost_reasons:
        out.write(f"  lost: {name}: {why}\n")


def _duration(seconds: float) -> str:
    """``1h 02m``, ``3m 05s`` or ``12.4s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


def _batches(store: Store, batch: str | None) -> list[BatchView]:
    """Every batch, or only ``batch`` (none when the store does not hold it)."""
    if batch is None:
        return store.batches()
    view = store.batch(batch)
    return [] if view is None else [view]
