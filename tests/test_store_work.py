"""The queue contract: claims, guarded transitions, recovery, retries, limits.

Every test runs on each backend (memory, an SQLite file, PostgreSQL: ``db_url``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from engine_helpers import attempt_rows, new_job
from model_ids import LITE, PRO

from orchestrator.manifest import load_manifest
from orchestrator.planning import enqueue
from orchestrator.store import JobState, Store
from orchestrator.store.prices import PriceBook
from orchestrator.store.work import WorkItem, WorkQueue
from orchestrator.store.workers import WorkerRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

S = JobState
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A store clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock, db_url: str) -> Iterator[Store]:
    with Store.open(db_url, clock=clock) as opened:
        for batch in ("a", "b"):
            opened.ensure_batch(
                batch, manifest_path="m.yaml", output_root=str(tmp_path / batch), settings={}
            )
        yield opened


@pytest.fixture
def queue(store: Store) -> WorkQueue:
    return WorkQueue(store)


def add(store: Store, batch: str, *names: str, model: str = PRO, **kwargs: Any) -> None:
    store.enqueue(batch, [new_job(f"{batch}-{n}", model=model, **kwargs) for n in names])


def state_of(store: Store, name: str) -> JobState:
    (job,) = [j for j in store.list_jobs() if j.id == name]
    return job.state


def job(store: Store, name: str) -> Any:
    (found,) = [j for j in store.list_jobs() if j.id == name]
    return found


def transitions(store: Store, row_id: int) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    return [
        (e.from_state, e.to_state, e.detail or {})
        for e in store.events(job_id=row_id)
        if e.kind == "transition"
    ]


def claim_one(queue: WorkQueue, batch: str | None = "a") -> WorkItem:
    (item,) = queue.claim(batch, 1)
    return item


def submit(queue: WorkQueue, item: WorkItem, request_id: str = "req-1") -> WorkItem:
    assert queue.transition(
        item,
        S.SUBMITTED,
        "accepted",
        {"request_id": request_id, "remote_status": "in_queue"},
        {"request_id": request_id},
        {"request_id": request_id},
    )
    return WorkItem(**{**_fields(item), "state": S.SUBMITTED, "request_id": request_id})


def _fields(item: WorkItem) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__dataclass_fields__}


# -- claim ------------------------------------------------------------------------------------


def test_claim_writes_the_intent_counts_the_attempt_and_records_it(
    store: Store, queue: WorkQueue, clock: Clock, tmp_path: Path
) -> None:
    add(store, "a", "x", "y", "z", max_attempts=3, cost=0.4)
    clock.advance(5)
    claimed = queue.claim("a", 2)
    assert [i.name for i in claimed] == ["a-x", "a-y"]
    first = claimed[0]
    assert first.state == S.SUBMITTING
    assert first.attempts == 1
    assert first.max_attempts == 3
    assert first.attempt_kind == "submit"
    assert first.payload == new_job("a-x").payload
    assert first.output_root == str(tmp_path / "a")
    assert first.output_path == "a-x.mp4"
    assert first.model_id == PRO
    assert first.estimated_cost_usd == 0.4
    assert first.request_id is None
    assert first.batch == "a"
    assert state_of(store, "a-x") == S.SUBMITTING
    assert state_of(store, "a-z") == S.PENDING
    assert job(store, "a-x").attempts == 1
    (attempt,) = attempt_rows(store, first.row_id)
    assert (attempt.number, attempt.kind, attempt.outcome) == (1, "submit", None)
    assert attempt.started_at == clock.now
    assert transitions(store, first.row_id) == [
        ("pending", "submitting", {"outcome": "claimed", "attempt": 1, "kind": "submit"})
    ]
    # The rest, then nothing.
    assert [i.name for i in queue.claim("a", 10)] == ["a-z"]
    assert queue.claim("a", 10) == []


def test_claim_with_no_room_changes_nothing(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x")
    assert queue.claim("a", 0) == []
    assert queue.claim("a", -3) == []
    assert state_of(store, "a-x") == S.PENDING
    assert attempt_rows(store, job(store, "a-x").row_id) == []


def test_claim_respects_the_room_of_each_model(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "p1", "p2", "p3", model=PRO)
    add(store, "a", "l1", "l2", model=LITE)
    claimed = queue.claim("a", 10, {PRO: 1})
    assert [i.name for i in claimed] == ["a-p1", "a-l1", "a-l2"]
    # default_room caps models the mapping does not name.
    add(store, "b", "p1", "p2", "p3", model=PRO)
    add(store, "b", "l1", "l2", "l3", model=LITE)
    claimed = queue.claim("b", 10, {LITE: 0}, 2)
    assert [i.name for i in claimed] == ["b-p1", "b-p2"]
    assert [i.name for i in queue.claim("b", 10, None, 1)] == ["b-p3", "b-l1"]


def test_a_model_at_its_cap_does_not_crowd_out_the_others(store: Store, queue: WorkQueue) -> None:
    # Eight jobs of a full model come first; the claim still finds the other model's job.
    add(store, "a", *(f"p{i}" for i in range(8)), model=PRO)
    add(store, "a", "l1", model=LITE)
    assert [i.name for i in queue.claim("a", 1, {PRO: 0})] == ["a-l1"]


def test_claim_takes_only_the_batch_asked_for(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x")
    add(store, "b", "x")
    assert [i.name for i in queue.claim("b", 5)] == ["b-x"]
    assert [i.name for i in queue.claim(None, 5)] == ["a-x"]


def test_claim_goes_through_planning_enqueue(
    queue: WorkQueue, store: Store, write_manifest: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(
        f"""
        batch: planned
        model: {PRO}
        jobs:
          - id: beach
            prompt: waves
            image: https://images.example/beach.jpg
        retry: {{max_attempts: 2}}
        """
    )
    result = enqueue(store, load_manifest(manifest), tmp_path / "videos")
    assert result.added == 1
    (item,) = queue.claim("planned", 5)
    assert item.max_attempts == 2
    assert item.output_root == str(tmp_path / "videos")
    assert item.payload["first_frame_image_url"] == "https://images.example/beach.jpg"


# -- transitions ------------------------------------------------------------------------------


def test_transition_moves_the_job_updates_the_attempt_and_logs_an_event(
    store: Store, queue: WorkQueue
) -> None:
    add(store, "a", "x")
    item = claim_one(queue)
    submit(queue, item, "req-abc")
    view = job(store, "a-x")
    assert (view.state, view.request_id, view.remote_status) == (S.SUBMITTED, "req-abc", "in_queue")
    (attempt,) = attempt_rows(store, item.row_id)
    assert attempt.request_id == "req-abc"
    assert transitions(store, item.row_id)[-1] == (
        "submitting",
        "submitted",
        {"outcome": "accepted", "request_id": "req-abc"},
    )


def test_a_stale_item_does_not_move_and_writes_no_event(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x")
    item = claim_one(queue)
    submit(queue, item)
    events = len(store.events())
    # `item` still says submitting: someone else moved the job since.
    moved = queue.transition(
        item, S.NEEDS_RECONCILE, "ambiguous", {"error": "late"}, None, {"outcome": "ambiguous"}
    )
    assert moved is False
    assert len(store.events()) == events
    view = job(store, "a-x")
    assert view.state == S.SUBMITTED
    assert view.error is None
    (attempt,) = attempt_rows(store, item.row_id)
    assert attempt.outcome is None


def test_note_updates_facts_only_in_the_state_seen(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x")
    item = claim_one(queue)
    current = submit(queue, item)
    events = len(store.events())
    assert queue.note(current, {"remote_status": "in_progress", "queue_position": None})
    assert job(store, "a-x").remote_status == "in_progress"
    assert not queue.note(item, {"remote_status": "bogus"})  # stale: submitting
    assert job(store, "a-x").remote_status == "in_progress"
    assert len(store.events()) == events  # facts are not transitions


def test_every_transition_writes_one_event(store: Store, queue: WorkQueue, clock: Clock) -> None:
    add(store, "a", "x", max_attempts=2)
    item = claim_one(queue)
    current = submit(queue, item)
    later = clock.now + timedelta(seconds=10)
    assert queue.transition(
        current,
        S.RETRY_WAIT,
        "remote_failed",
        {"next_attempt_at": later},
        None,
        {"outcome": "failed"},
    )
    clock.advance(11)
    assert queue.release_due("a") == 1
    again = claim_one(queue)
    assert queue.transition(again, S.FAILED, "rejected", {"error": "bad"}, None, None)
    path = [(f, t, d["outcome"]) for f, t, d in transitions(store, item.row_id)]
    assert path == [
        ("pending", "submitting", "claimed"),
        ("submitting", "submitted", "accepted"),
        ("submitted", "retry_wait", "remote_failed"),
        ("retry_wait", "pending", "retry_due"),
        ("pending", "submitting", "claimed"),
        ("submitting", "failed", "rejected"),
    ]
    kinds = [e.kind for e in store.events(job_id=item.row_id)]
    assert kinds == ["enqueued"] + ["transition"] * 6
    assert all(e.at is not None for e in store.events(job_id=item.row_id))


# -- recovery and retries ---------------------------------------------------------------------


def test_recover_parks_jobs_caught_submitting(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x", "y", "z")
    add(store, "b", "w")
    stuck = claim_one(queue)
    submit(queue, claim_one(queue))
    claim_one(queue, "b")
    assert WorkerRegistry(queue).recover("a") == 1
    view = job(store, "a-x")
    assert view.state == S.NEEDS_RECONCILE
    assert "interrupted while submitting" in (view.error or "")
    (attempt,) = attempt_rows(store, stuck.row_id)
    assert attempt.outcome == "crash_recovered"
    assert transitions(store, stuck.row_id)[-1] == (
        "submitting",
        "needs_reconcile",
        {"outcome": "crash_recovered", "reason": "found in submitting after a restart"},
    )
    assert state_of(store, "a-y") == S.SUBMITTED  # a committed request id is kept
    assert state_of(store, "b-w") == S.SUBMITTING  # another batch is not touched
    assert WorkerRegistry(queue).recover(None) == 1
    assert state_of(store, "b-w") == S.NEEDS_RECONCILE
    assert WorkerRegistry(queue).recover(None) == 0


def test_release_due_honours_next_attempt_at(store: Store, queue: WorkQueue, clock: Clock) -> None:
    add(store, "a", "soon", "late")
    add(store, "b", "other")
    claimed = {i.name: i for i in queue.claim("a", 2)}
    for name, wait in (("a-soon", 30), ("a-late", 90)):
        assert queue.transition(
            claimed[name],
            S.RETRY_WAIT,
            "not_sent",
            {"next_attempt_at": clock.now + timedelta(seconds=wait)},
            None,
            {"outcome": "not_sent"},
        )
    other = claim_one(queue, "b")
    queue.transition(other, S.RETRY_WAIT, "not_sent", {"next_attempt_at": clock.now}, None, None)
    assert queue.next_retry_at("a") == START + timedelta(seconds=30)
    assert queue.release_due("a") == 0
    clock.advance(30)
    assert queue.release_due("a") == 1
    assert state_of(store, "a-soon") == S.PENDING
    assert job(store, "a-soon").next_attempt_at is None
    assert state_of(store, "a-late") == S.RETRY_WAIT
    assert state_of(store, "b-other") == S.RETRY_WAIT  # due, but in another batch
    assert queue.has_pending("a")
    assert not queue.has_pending("b")
    clock.advance(60)
    assert queue.release_due(None) == 2
    assert queue.next_retry_at(None) is None
    assert queue.has_pending(None)


# -- reads for limits and for the end of a run ------------------------------------------------


def test_in_flight_unfinished_and_active(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "p1", "p2", "p3", "p4", "p5", "p6", model=PRO)
    add(store, "a", "l1", model=LITE)
    add(store, "b", "p1", model=PRO)
    assert queue.in_flight("a") == {}
    assert queue.unfinished("a") == 7
    claimed = {i.name: i for i in queue.claim("a", 10)}
    claim_one(queue, "b")
    assert queue.in_flight("a") == {PRO: 6, LITE: 1}
    assert queue.in_flight(None) == {PRO: 7, LITE: 1}
    submitted = {name: submit(queue, claimed[name], f"r-{name}") for name in ("a-p1", "a-p2")}
    assert queue.transition(submitted["a-p2"], S.DOWNLOADING, "remote_succeeded")
    assert queue.transition(claimed["a-p3"], S.NEEDS_RECONCILE, "ambiguous")
    assert queue.transition(claimed["a-p4"], S.FAILED, "rejected")
    assert queue.transition(claimed["a-p5"], S.PENDING, "held")
    assert queue.in_flight("a") == {PRO: 2, LITE: 1}  # submitting p6, submitted p1; l1
    assert [i.name for i in queue.active("a")] == ["a-p1", "a-p2"]
    assert [i.state for i in queue.active("a")] == [S.SUBMITTED, S.DOWNLOADING]
    assert [i.name for i in queue.active(None)] == ["a-p1", "a-p2"]
    # Terminal and parked jobs are finished as far as a run is concerned.
    assert queue.unfinished("a") == 5
    assert queue.unfinished(None) == 6


def test_committed_spend_counts_costs_and_estimates_in_flight(
    store: Store, queue: WorkQueue
) -> None:
    add(store, "a", "w", "x", "y", "z", cost=0.5)
    add(store, "b", "x", cost=9.0)
    assert queue.committed_spend("a") == 0.0  # pending jobs commit nothing
    items = {i.name: i for i in queue.claim("a", 3)}
    claim_one(queue, "b")
    assert queue.committed_spend("a") == pytest.approx(1.5)
    done = submit(queue, items["a-w"])
    paid = {"outcome": "succeeded", "cost_usd": 0.7}
    assert queue.transition(done, S.DOWNLOADING, "remote_succeeded", None, None, paid)
    failed = {"outcome": "failed", "cost_usd": 0.2}
    assert queue.transition(
        submit(queue, items["a-x"]), S.FAILED, "remote_failed", None, None, failed
    )
    # w: actual 0.7 (not the estimate); x: actual 0.2; y: estimate 0.5; z pending: nothing.
    assert queue.committed_spend("a") == pytest.approx(1.4)
    assert queue.committed_spend("b") == pytest.approx(9.0)
    assert queue.committed_spend("nope") == 0.0


def test_facts_are_json_ready(store: Store, queue: WorkQueue, clock: Clock) -> None:
    add(store, "a", "x")
    item = claim_one(queue)
    facts = queue.facts(item.row_id)
    assert facts["created_at"] == START.isoformat()
    assert facts["cost_usd"] is None
    assert facts["submitted_at"] is None
    assert queue.now() == clock.now


# -- users' actions and attempt kinds ---------------------------------------------------------


def test_user_action_moves_named_jobs_and_says_who(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x", "y", "z")
    for item in queue.claim("a", 3):
        queue.transition(item, S.NEEDS_RECONCILE, "ambiguous")
    moved = queue.user_action(
        "a",
        ["a-x", "a-z", "a-missing"],
        [S.NEEDS_RECONCILE],
        S.PENDING,
        "resubmit",
        {"error": None},
    )
    assert sorted(moved) == ["a-x", "a-z"]
    assert [state_of(store, n) for n in ("a-x", "a-y", "a-z")] == [
        S.PENDING,
        S.NEEDS_RECONCILE,
        S.PENDING,
    ]
    row_id = job(store, "a-x").row_id
    assert transitions(store, row_id)[-1] == (
        "needs_reconcile",
        "pending",
        {"outcome": "resubmit", "by": "user"},
    )
    # All of them when no names are given; states not listed are left alone.
    assert queue.user_action("a", None, [S.FAILED], S.PENDING, "retry_requested") == []
    assert queue.user_action("a", None, [S.NEEDS_RECONCILE], S.CANCELLED, "cancelled") == ["a-y"]


@pytest.mark.parametrize(
    ("last_outcome", "via", "kind"),
    [
        ("failed", S.RETRY_WAIT, "reroll"),
        ("succeeded", S.FAILED, "reroll"),
        ("ambiguous", S.NEEDS_RECONCILE, "resubmit"),
        ("crash_recovered", S.NEEDS_RECONCILE, "resubmit"),
        ("remote_lost", S.NEEDS_RECONCILE, "resubmit"),
        ("not_sent", S.RETRY_WAIT, "submit"),
        ("held", S.PENDING, "submit"),
    ],
)
def test_the_kind_of_the_next_attempt_follows_the_last_one(
    store: Store, queue: WorkQueue, clock: Clock, last_outcome: str, via: JobState, kind: str
) -> None:
    add(store, "a", "x", max_attempts=3)
    first = claim_one(queue)
    assert first.attempt_kind == "submit"
    assert queue.transition(
        first, via, last_outcome, {"next_attempt_at": clock.now}, None, {"outcome": last_outcome}
    )
    # Back to pending the way each state comes back.
    if via == S.RETRY_WAIT:
        assert queue.release_due("a") == 1
    elif via != S.PENDING:
        assert queue.user_action("a", None, [via], S.PENDING, "retry_requested") == ["a-x"]
    second = claim_one(queue)
    assert (second.attempts, second.attempt_kind) == (2, kind)
    numbers = [(a.number, a.kind, a.outcome) for a in attempt_rows(store, first.row_id)]
    assert numbers == [(1, "submit", last_outcome), (2, kind, None)]
    assert transitions(store, first.row_id)[-1][2] == {
        "outcome": "claimed",
        "attempt": 2,
        "kind": kind,
    }


def test_a_refused_submit_does_not_change_the_kind_of_the_next_one(
    store: Store, queue: WorkQueue, clock: Clock
) -> None:
    add(store, "a", "x", max_attempts=3)
    first = claim_one(queue)
    assert queue.transition(
        first,
        S.RETRY_WAIT,
        "remote_failed",
        {"next_attempt_at": clock.now},
        None,
        {"outcome": "failed"},
    )
    queue.release_due("a")
    reroll = claim_one(queue)
    assert reroll.attempt_kind == "reroll"
    assert queue.transition(
        reroll,
        S.RETRY_WAIT,
        "not_sent",
        {"next_attempt_at": clock.now},
        None,
        {"outcome": "not_sent"},
    )
    queue.release_due("a")
    again = claim_one(queue)
    assert (again.attempts, again.attempt_kind) == (3, "reroll")  # still a re-roll
    assert queue.transition(again, S.PENDING, "held", None, None, {"outcome": "held"})
    assert claim_one(queue).attempt_kind == "reroll"


def test_paid_attempts_leave_out_submits_that_never_left(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x", max_attempts=5)
    row_id = job(store, "a-x").row_id
    assert queue.paid_attempts(row_id) == 0
    for outcome in ("not_sent", "held", "failed", "rejected", "ambiguous"):
        item = claim_one(queue)
        assert queue.transition(item, S.PENDING, outcome, None, None, {"outcome": outcome})
    assert queue.paid_attempts(row_id) == 2  # failed and ambiguous may have been billed
    claim_one(queue)  # in flight, outcome not known yet: counted
    assert queue.paid_attempts(row_id) == 3


def test_a_claim_under_a_spend_cap_stops_at_the_first_job_that_does_not_fit(
    store: Store, queue: WorkQueue
) -> None:
    store.enqueue(
        "a",
        [
            new_job("a-1", cost=0.4),
            new_job("a-2", cost=0.4),
            new_job("a-3", cost=0.5),
            new_job("a-4", cost=0.1),
        ],
    )
    assert PriceBook(queue).spend_stalled("a", 1.0) is None
    assert [i.name for i in queue.claim("a", 10, max_spend=1.0)] == ["a-1", "a-2"]
    assert PriceBook(queue).spend_stalled("a", 1.0) == (
        "batch a: the spend cap of $1.00 would be passed ($0.80 spent or committed, "
        "the next job $0.50)"
    )
    assert queue.claim("a", 10, max_spend=1.0) == []  # a-3 does not fit; a-4 waits its turn
    assert [i.name for i in queue.claim("a", 10, max_spend=1.8)] == ["a-3", "a-4"]
    assert PriceBook(queue).spend_stalled("a", 1.8) is None  # nothing is pending any more
    add(store, "b", "free")  # no price
    assert queue.claim("b", 10, max_spend=5.0) == []  # under a cap it is never submitted
    assert "the next job's price is unknown" in (PriceBook(queue).spend_stalled("b", 5.0) or "")
    assert PriceBook(queue).spend_stalled("b") is None  # batch b has no cap of its own
    assert [i.name for i in queue.claim("b", 10)] == ["b-free"]
