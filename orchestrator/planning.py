"""Plan and enqueue a batch: what a manifest will create, what is already stored, what it costs.

:func:`summarize` is pure: it compares an expansion with the states the store holds for the
batch's keys. :func:`enqueue` turns job specs into store rows (payloads keep image paths
and hashes, never image bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.manifest import BatchSettings, Expansion, JobSpec
from orchestrator.store import EnqueueResult, JobState, NewJob, Store

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass
class ModelPlan:
    """One model's share of a batch."""

    model_id: str
    slug: str
    jobs: int = 0
    new: int = 0
    stored: int = 0
    done: int = 0
    estimate_new_usd: float = 0.0
    estimate_total_usd: float = 0.0
    priced: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "slug": self.slug,
            "jobs": self.jobs,
            "new": self.new,
            "stored": self.stored,
            "done": self.done,
            "estimate_new_usd": round(self.estimate_new_usd, 4) if self.priced else None,
            "estimate_total_usd": round(self.estimate_total_usd, 4) if self.priced else None,
        }


@dataclass
class PlanSummary:
    """The whole batch: counts per model, the store diff and the cost estimate."""

    batch: str
    models: list[ModelPlan] = field(default_factory=list)
    stored_elsewhere: int = 0

    @property
    def total(self) -> int:
        return sum(m.jobs for m in self.models)

    @property
    def new(self) -> int:
        return sum(m.new for m in self.models)

    @property
    def stored(self) -> int:
        return sum(m.stored for m in self.models)

    @property
    def done(self) -> int:
        return sum(m.done for m in self.models)

    @property
    def unpriced(self) -> list[str]:
        return [m.model_id for m in self.models if not m.priced]

    @property
    def estimate_new_usd(self) -> float | None:
        """USD the new jobs are expected to cost; ``None`` when any model has no price."""
        if self.unpriced:
            return None
        return round(sum(m.estimate_new_usd for m in self.models), 4)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "total": self.total,
            "new": self.new,
            "stored": self.stored,
            "done": self.done,
            "stored_not_in_manifest": self.stored_elsewhere,
            "estimate_new_usd": self.estimate_new_usd,
            "unpriced_models": self.unpriced,
            "models": [m.as_dict() for m in self.models],
        }


def summarize(expansion: Expansion, states_by_key: Mapping[str, str]) -> PlanSummary:
    """Compare the expanded jobs with what the store holds for the batch.

    ``new`` jobs are not in the store; ``done`` ones succeeded already; ``stored`` ones are
    in the store in any other state (they will be resumed, not submitted again).
    """
    summary = PlanSummary(batch=expansion.settings.batch)
    by_model: dict[str, ModelPlan] = {}
    seen = 0
    for job in expansion.jobs:
        plan = by_model.get(job.model_id)
        if plan is None:
            plan = by_model[job.model_id] = ModelPlan(job.model_id, job.model_slug)
            summary.models.append(plan)
        plan.jobs += 1
        state = states_by_key.get(job.key)
        cost = job.estimated_cost_usd
        if cost is None:
            plan.priced = False
        else:
            plan.estimate_total_usd += cost
        if state is None:
            plan.new += 1
            plan.estimate_new_usd += cost or 0.0
        else:
            seen += 1
            if state == JobState.SUCCEEDED:
                plan.done += 1
            else:
                plan.stored += 1
    summary.stored_elsewhere = len(states_by_key) - seen
    return summary


def new_job(job: JobSpec, max_attempts: int) -> NewJob:
    """The store row of one job spec."""
    return NewJob(
        key=job.key,
        name=job.id,
        model_id=job.model_id,
        payload=job.stored_payload(),
        output_path=job.output_path,
        max_attempts=max_attempts,
        estimated_cost_usd=job.estimated_cost_usd,
    )


def output_root(expansion: Expansion, override: str | None) -> Path:
    """The output folder: ``--out`` if given, else ``output.dir`` relative to the manifest."""
    if override:
        return Path(override).resolve()
    base = Path(expansion.settings.manifest_path).resolve().parent
    return (base / expansion.settings.output.dir).resolve()


def stored_output_root(store: Store, batch: str) -> str | None:
    """The output folder a batch was first enqueued with (it never moves; see the store)."""
    for view in store.batches():
        if view.name == batch:
            return view.output_root
    return None


def stored_settings(store: Store, batch: str) -> BatchSettings | None:
    """The settings a batch was enqueued with (its manifest's limits and retries)."""
    for view in store.batches():
        if view.name == batch:
            return BatchSettings.from_dict(batch, view.manifest_path, view.settings)
    return None


def enqueue(store: Store, expansion: Expansion, out_root: Path) -> EnqueueResult:
    """Record the batch and add its jobs; jobs already stored (same key) are left as they are.

    A batch keeps the output folder it was first enqueued with: stored output paths are
    relative to it, so moving it would orphan videos already downloaded.
    """
    settings = expansion.settings
    store.ensure_batch(
        settings.batch,
        manifest_path=str(Path(settings.manifest_path).resolve()),
        output_root=str(out_root),
        settings=settings.as_dict(),
    )
    attempts = settings.retry.max_attempts
    return store.enqueue(settings.batch, (new_job(job, attempts) for job in expansion.jobs))
