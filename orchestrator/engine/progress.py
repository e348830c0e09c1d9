"""Live progress for ``run`` and ``work``: what a person watching the night wants to see.

On a terminal it is a rich panel redrawn in place (states per model, throughput, ETA,
spend, recent failures); anywhere else (CI, nohup, a log file) one plain line every
``interval`` seconds. Everything shown is read from the store, so it is true even for work
done by other processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator.store import Store

SHOWN_STATES = (
    "pending",
    "submitted",
    "downloading",
    "retry_wait",
    "succeeded",
    "failed",
    "needs_reconcile",
    "cancelled",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One look at a batch (or all batches) in the store."""

    counts: dict[str, int]
    by_model: dict[str, dict[str, int]]
    spend: float
    failures: list[tuple[str, str]]
    at: float
    estimated_total: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))


def take_snapshot(store: Store, batch: str | None, now: float) -> Snapshot:
    failed = store.list_jobs(batch=batch, state="failed", limit=200)
    return Snapshot(
        counts=store.counts(batch),
        by_model=store.counts_by_model(batch),
        spend=store.spend(batch),
        failures=[(job.id, job.error or "") for job in failed[-3:]],
        at=now,
        estimated_total=store.estimated_total(batch),
    )


def rate_and_eta(first: Snapshot, last: Snapshot) -> tuple[float | None, float | None]:
    """Jobs finished per minute since ``first``, and seconds until the rest are done.

    >>> a = Snapshot({"pending": 10}, {}, 0.0, [], at=0.0)
    >>> b = Snapshot({"pending": 4, "succeeded": 6}, {}, 0.0, [], at=60.0)
    >>> rate_and_eta(a, b)
    (6.0, 40.0)
    """
    elapsed = last.at - first.at
    done = last.finished - first.finished
    if elapsed <= 0 or done <= 0:
        return None, None
    per_second = done / elapsed
    remaining = last.total - last.finished - last.counts.get("needs_reconcile", 0)
    return per_second * 60, max(0, remaining) / per_second


def plain_line(snapshot: Snapshot, rate: float | None, eta: float | None) -> str:
    """``12/40 done: 10 succeeded, 2 failed | 8 running ... | 3.0/min, ETA 9m | $1.20``."""
    c = snapshot.counts
    parts = [f"{snapshot.finished}/{snapshot.total} done"]
    states = ", ".join(f"{c[s]} {s}" for s in SHOWN_STATES if c.get(s))
    if states:
        parts.append(states)
    if rate is not None:
        parts.append(f"{rate:.1f}/min" + (f", ETA {_short(eta)}" if eta is not None else ""))
    spent = f"${snapshot.spend:,.2f} spent"
    if snapshot.estimated_total is not None:
        spent += f" of ~${snapshot.estimated_total:,.2f}"
    parts.append(spent)
    return " | ".join(parts)


def _short(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def rich_panel(snapshot: Snapshot, rate: float | None, eta: float | None) -> Any:
    """The terminal view: a table of states per model and a footer line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("model")
    shown = [s for s in SHOWN_STATES if snapshot.counts.get(s)]
    for state in shown:
        table.add_column(state, justify="right")
    for model, counts in snapshot.by_model.items():
        table.add_row(model, *(str(counts.get(s, 0)) for s in shown))
    footer = Text(plain_line(snapshot, rate, eta), style="bold")
    lines: list[Any] = [table, footer]
    for job, error in snapshot.failures:
        lines.append(Text(f"failed {job}: {error[:100]}", style="red"))
    return Group(*lines)


class ProgressReporter:
    """Redraws (terminal) or prints (elsewhere) the progress of a batch until cancelled."""

    def __init__(
        self,
        store: Store,
        batch: str | None,
        stream: TextIO,
        *,
        interval: float = 30.0,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.batch = batch
        self.stream = stream
        self.interval = interval
        self.live = stream.isatty() if live is None else live
        self.clock = clock

    async def run(self) -> None:
        first = await anyio.to_thread.run_sync(take_snapshot, self.store, self.batch, self.clock())
        if self.live:
            await self._live(first)
            return
        while True:
            await anyio.sleep(self.interval)
            last = await anyio.to_thread.run_sync(
                take_snapshot, self.store, self.batch, self.clock()
            )
            self.stream.write("progress: " + plain_line(last, *rate_and_eta(first, last)) + "\n")
            self.stream.flush()

    async def _live(self, first: Snapshot) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream)
        with Live(rich_panel(first, None, None), console=console, refresh_per_second=2) as view:
            while True:
                await anyio.sleep(min(self.interval, 1.0))
                last = await anyio.to_thread.run_sync(
                    take_snapshot, self.store, self.batch, self.clock()
                )
                view.update(rich_panel(last, *rate_and_eta(first, last)))
