"""What the public functions return: typed, with ``as_dict()`` for JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.problems import InputError, Problem
from orchestrator.store import BatchView, JobState

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.engine.pool import EngineReport
    from orchestrator.livecatalog import ModelSource
    from orchestrator.manifest import Expansion
    from orchestrator.planning import ModelPlan, PlanSummary
    from orchestrator.store.money import ModelCost, Money
    from orchestrator.store.workers import WorkerView


@dataclass(frozen=True)
class Validation:
    """A checked batch: its problems (none when ``ok``), warnings, jobs per model, and
    where each model's schema came from. Nothing was stored or submitted."""

    batch: str | None
    problems: list[Problem]
    warnings: list[Problem]
    models: dict[str, int] = field(default_factory=dict)
    sources: dict[str, ModelSource] = field(default_factory=dict)
    expansion: Expansion | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the batch can be enqueued as it is."""
        return not self.problems

    @property
    def jobs(self) -> int:
        """How many jobs the batch expands to (0 when it has problems)."""
        return sum(self.models.values())

    def raise_for_problems(self) -> None:
        """Raise :class:`~orchestrator.problems.InputError` when there are problems."""
        if self.problems:
            raise InputError(self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "batch": self.batch,
            "jobs": self.jobs,
            "models": dict(self.models),
            "catalog": [source.as_dict() for source in self.sources.values()],
            "warnings": [w.as_dict() for w in self.warnings],
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class Plan:
    """What a batch creates, what the store holds already, and what the new jobs cost."""

    summary: PlanSummary
    states: dict[str, str]
    """The stored state of each job key of the batch."""
    output_root: Path
    sources: dict[str, ModelSource] = field(default_factory=dict)
    expansion: Expansion | None = field(default=None, repr=False)

    @property
    def batch(self) -> str:
        return self.summary.batch

    @property
    def models(self) -> list[ModelPlan]:
        """One line per model: jobs, new, stored, done and their estimates."""
        return self.summary.models

    @property
    def total(self) -> int:
        return self.summary.total

    @property
    def new(self) -> int:
        """Jobs not in the store yet (what enqueueing adds)."""
        return self.summary.new

    @property
    def estimate_new_usd(self) -> float | None:
        """USD the new jobs are expected to cost; None when a model has no price."""
        return self.summary.estimate_new_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "output_root": str(self.output_root),
            "catalog": [source.as_dict() for source in self.sources.values()],
        }


@dataclass(frozen=True)
class Enqueued:
    """A batch recorded in the store: jobs added, jobs already there, renames."""

    batch: str
    added: int
    existing: int
    renamed: list[tuple[str, str]]
    """Job names taken by an earlier version of the job: (asked, stored as)."""
    output_root: Path
    """The batch's output folder: the one it was first enqueued with (it never moves)."""
    requested_root: Path
    """The folder this call asked for (differs from ``output_root`` when the batch keeps
    an earlier one)."""
    sources: dict[str, ModelSource] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "added": self.added,
            "existing": self.existing,
            "renamed": [list(pair) for pair in self.renamed],
            "output_root": str(self.output_root),
            "catalog": [source.as_dict() for source in self.sources.values()],
        }


@dataclass(frozen=True)
class RunResult:
    """A finished run: the engine's report and the batch's counts by state."""

    batch: str
    report: EngineReport
    counts: dict[str, int]
    added: int
    existing: int
    output_root: Path
    prices: dict[str, str] = field(default_factory=dict)
    """Under a spend cap: where each model's price came from."""
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> int:
        return self.counts.get(JobState.SUCCEEDED.value, 0)

    @property
    def ok(self) -> bool:
        """Every job of the batch succeeded, and the run was not stopped early."""
        report = self.report
        stopped = report.stopped_by == "interrupted" or bool(
            report.auth_error or report.lease_lost or report.storage_error
        )
        return not stopped and self.total > 0 and self.succeeded == self.total


@dataclass(frozen=True)
class Status:
    """Counts by state, spend and live workers: of one batch, or of the whole store."""

    batch: str | None
    counts: dict[str, int]
    spend_usd: float
    batches: list[BatchView]
    by_model: dict[str, dict[str, int]]
    money: Money
    cost_by_model: list[ModelCost]
    workers: list[WorkerView]
    cap: float | None = None
    """The batch's spend cap, as it was enqueued."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "total": self.total,
            "counts": dict(self.counts),
            "spend_usd": round(self.spend_usd, 6),
            "batches": [
                {"name": b.name, "jobs": b.job_count, "output_root": b.output_root}
                for b in self.batches
            ],
            "by_model": self.by_model,
            "money": self.money.as_dict(self.cap),
            "cost_by_model": [c.as_dict() for c in self.cost_by_model],
            "workers": [w.as_dict() for w in self.workers],
        }
