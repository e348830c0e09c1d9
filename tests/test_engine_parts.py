"""Each part of the engine alone: the ledger, the poll schedule, the store gateway, the
submit gate, the submitter, the poller and the download pool (see orchestrator/engine/core.py).

The store is a real SQLite one (it is fast and in-process); the API is an in-process fake
that answers each call at once, and the downloader reads from an in-memory transport.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from engine_helpers import BATCH, WAIT_LIMIT, by_name, fast_settings, seed_store, wait_for
from test_engine_download import ok, tiny_video

from orchestrator.api import RemoteResult, RemoteStatus, Submitted
from orchestrator.catalog import builtin_catalog
from orchestrator.engine.core import EngineReport, WrongReplies
from orchestrator.engine.decisions import Outcome
from orchestrator.engine.download import Downloader
from orchestrator.engine.downloading import DownloadPool
from orchestrator.engine.gate import SubmitGate
from orchestrator.engine.gateway import Backoff, StoreGateway
from orchestrator.engine.ledger import InFlight
from orchestrator.engine.paidwork import Breaker, BreakerKind
from orchestrator.engine.polling import Poller
from orchestrator.engine.schedule import PollSchedule
from orchestrator.engine.submitting import Submitter
from orchestrator.engine.timing import Timing
from orchestrator.store import JobState as S
from orchestrator.store import Store
from orchestrator.store.work import WorkItem, WorkQueue

if TYPE_CHECKING:
    from pathlib import Path

SETTINGS = fast_settings()


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Parts:
    """The shared small parts over one store, as :class:`~orchestrator.engine.pool.Engine`
    wires them (the submitter's doorbell replaced by a counter)."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.queue = WorkQueue(store)
        self.clock = clock or Clock()
        self.rng = random.Random(3)
        self.report = EngineReport()
        self.ledger = InFlight()
        self.timing = Timing(SETTINGS.poll, ceiling=SETTINGS.max_in_flight, rng=self.rng)
        self.schedule = PollSchedule(self.ledger, self.timing, self.clock)
        self.rooms = 0
        self.stale: list[int] = []
        self.gateway = StoreGateway(
            self.queue,
            Backoff(SETTINGS.base_delay, SETTINGS.max_delay, self.rng),
            on_room=self.room,
            on_stale=self.stale.append,
        )
        self.gate = SubmitGate(self.report, self.gateway, self.queue, on_open=self.room)

    def room(self) -> None:
        self.rooms += 1


def submitted(queue: WorkQueue, request_id: str = "req-1") -> WorkItem:
    """A job claimed by no worker, accepted by RunComfy as ``request_id``."""
    (item,) = queue.claim(BATCH, 1)
    assert queue.transition(item, S.SUBMITTED, "accepted", {"request_id": request_id})
    return replace(item, state=S.SUBMITTED, request_id=request_id, remote_status="in_queue")


# -- the ledger and the schedule -------------------------------------------------------------


def test_the_ledger_is_empty_only_when_nothing_is_watched_or_running(tmp_path: Path) -> None:
    item = WorkQueue(seed_store(tmp_path, 1)).claim(BATCH, 1)[0]
    ledger = InFlight()
    empty = [ledger.empty]
    ledger.watch(item)
    empty.append(ledger.empty)
    assert empty == [True, False]
    assert ledger.watched(item.row_id) is item
    ledger.unwatch(item.row_id)
    ledger.submit_started()
    assert (ledger.submits, ledger.busy, ledger.empty) == (1, 1, False)
    ledger.submit_ended()
    ledger.poll_started()
    with ledger.downloading():
        assert ledger.busy == 2
    ledger.poll_ended()
    assert ledger.empty
    assert ledger.all_watched() == {}


def test_the_schedule_gives_due_looks_in_order_and_skips_unwatched_jobs(tmp_path: Path) -> None:
    queue = WorkQueue(seed_store(tmp_path, 3))
    first, second, gone = queue.claim(BATCH, 3)
    clock = Clock()
    ledger = InFlight()
    timing = Timing(SETTINGS.poll, ceiling=8, rng=random.Random(1))
    schedule = PollSchedule(ledger, timing, clock)
    schedule.watch(second, delay=2.0)
    schedule.watch(first, delay=1.0)
    schedule.watch(gone, delay=0.5)
    schedule.unwatch(gone.row_id)
    assert schedule.due(clock.now) == []
    clock.now += 1.5
    assert schedule.due(clock.now) == [first]
    clock.now += 1.0
    assert schedule.due(clock.now) == [second]
    # Due looks leave the heap, not the ledger: the job stays watched until released.
    assert set(ledger.all_watched()) == {first.row_id, second.row_id}
    schedule.release(first.row_id)
    assert set(ledger.all_watched()) == {second.row_id}


def test_a_new_watch_wakes_the_schedule_wait(tmp_path: Path) -> None:
    item = WorkQueue(seed_store(tmp_path, 1)).claim(BATCH, 1)[0]
    ledger = InFlight()
    schedule = PollSchedule(ledger, Timing(SETTINGS.poll, ceiling=8, rng=random.Random(1)), Clock())

    async def main() -> None:
        with anyio.fail_after(WAIT_LIMIT):  # an idle wait of an hour ends at the watch
            async with anyio.create_task_group() as group:
                group.start_soon(schedule.wait, 0.0, 3600.0)
                await anyio.lowlevel.checkpoint()
                schedule.watch(item, delay=0.0)

    anyio.run(main)


# -- the store gateway and the submit gate ---------------------------------------------------


def test_settle_applies_the_decision_and_drops_a_stale_one(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    parts = Parts(store)
    item = submitted(parts.queue)

    async def main() -> tuple[bool, bool]:
        moved = await parts.gateway.settle(item, Outcome.REMOTE_SUCCEEDED)
        # The same move again, from the item as it was: the store refuses it.
        again = await parts.gateway.settle(item, Outcome.REMOTE_SUCCEEDED)
        return moved, again

    assert anyio.run(main) == (True, False)
    assert by_name(store)["job0"].state == S.DOWNLOADING
    assert parts.rooms == 1  # a remote slot was given back
    assert parts.stale == [item.row_id]


def test_retry_later_makes_the_job_due_after_the_backoff(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    parts = Parts(store)
    (item,) = parts.queue.claim(BATCH, 1)
    before = parts.queue.now()

    async def main() -> None:
        await parts.gateway.retry_later(item, Outcome.NOT_SENT, 1, "HTTP 503", None)

    anyio.run(main)
    job = by_name(store)["job0"]
    assert (job.state, job.error) == (S.RETRY_WAIT, "HTTP 503")
    assert job.next_attempt_at is not None
    assert job.next_attempt_at > before


def test_the_gate_keeps_the_first_breaker_and_a_download_closes_a_disk_one(
    tmp_path: Path,
) -> None:
    parts = Parts(seed_store(tmp_path, 1))
    disk = Breaker(BreakerKind.DISK_FULL, "the disk is full", "free space")
    auth = Breaker(BreakerKind.AUTH, "token refused", "set the token")

    async def main() -> list[tuple[Breaker | None, bool]]:
        seen = [(parts.report.breaker, parts.gate.open)]
        await parts.gate.trip(disk, BATCH)
        await parts.gate.trip(auth, BATCH)  # the first breaker's message is kept
        seen.append((parts.report.breaker, parts.gate.open))
        await parts.gate.download_succeeded(BATCH)
        seen.append((parts.report.breaker, parts.gate.open))
        parts.gate.cap_reached("the spend cap")
        seen.append((parts.report.breaker, parts.gate.open))
        return seen

    assert anyio.run(main) == [(None, True), (disk, False), (None, True), (None, False)]
    assert parts.rooms == 1  # closing the breaker woke the submitter
    assert parts.report.spend_capped


# -- the submitter, the poller and the download pool ----------------------------------------


class FakeApi:
    """Accepts every submit; every job is finished, with a video, at the first look."""

    def __init__(self) -> None:
        self.submits: list[str] = []
        self.looks = 0

    async def submit(self, model_id: str, body: dict[str, Any]) -> Submitted:
        self.submits.append(model_id)
        return Submitted(request_id=f"req-{len(self.submits)}")

    async def status(self, request_id: str) -> RemoteStatus:
        self.looks += 1
        return RemoteStatus(status="completed")

    async def result(self, request_id: str, include_cost: bool = False) -> RemoteResult:
        return RemoteResult(status="completed", video_url="https://files.test/v.mp4", cost=0.1)


def test_the_submitter_writes_the_request_id_and_watches_the_job(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    parts = Parts(store)
    api = FakeApi()
    submitter = Submitter(
        parts.gateway,
        parts.queue,
        api,  # type: ignore[arg-type]
        builtin_catalog(),
        SETTINGS,
        ledger=parts.ledger,
        schedule=parts.schedule,
        timing=parts.timing,
        gate=parts.gate,
        report=parts.report,
        monotonic=time.monotonic,
    )

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: submitter.run(group, worker_id="w-test", stop=anyio.Event()))
            with anyio.fail_after(WAIT_LIMIT):
                while len(parts.ledger.all_watched()) < 2:
                    await parts.schedule.wait(parts.clock.now, 3600.0)
            group.cancel_scope.cancel()

    anyio.run(main)
    jobs = by_name(store)
    assert {job.state for job in jobs.values()} == {S.SUBMITTED}
    assert sorted(job.request_id or "" for job in jobs.values()) == ["req-1", "req-2"]
    assert (parts.report.submitted, parts.ledger.submits, len(api.submits)) == (2, 0, 2)


def test_the_poller_hands_a_finished_job_to_the_downloaders(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    parts = Parts(store)
    item = submitted(parts.queue)
    handed: list[tuple[WorkItem, str | None]] = []
    api = FakeApi()

    async def main() -> None:
        done = anyio.Event()

        def hand_over(job: WorkItem, url: str | None) -> None:
            handed.append((job, url))
            done.set()

        poller = make_poller(hand_over)
        async with anyio.create_task_group() as group:
            group.start_soon(poller.run, group)
            with anyio.fail_after(WAIT_LIMIT):
                await done.wait()
            # The poll task lets go (no await) right after the hand-over: nothing between.
            assert parts.ledger.empty
            group.cancel_scope.cancel()

    def make_poller(hand_over: Any) -> Poller:
        return Poller(
            parts.gateway,
            parts.queue,
            api,  # type: ignore[arg-type]
            SETTINGS,
            ledger=parts.ledger,
            schedule=parts.schedule,
            timing=parts.timing,
            gate=parts.gate,
            report=parts.report,
            wrong_replies=WrongReplies(),
            hand_over=hand_over,
            on_room=parts.room,
            monotonic=parts.clock,
            rng=parts.rng,
        )

    parts.timing.adopted(item.row_id, "key")
    parts.schedule.watch(item, delay=0.0)
    anyio.run(main)
    assert by_name(store)["job0"].state == S.DOWNLOADING
    ((job, url),) = handed
    assert (job.row_id, job.state, url) == (item.row_id, S.DOWNLOADING, "https://files.test/v.mp4")
    assert (parts.report.polls, api.looks) == (1, 1)


def test_the_download_pool_places_a_handed_video_and_settles_it(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    parts = Parts(store)
    item = submitted(parts.queue)
    assert parts.queue.transition(item, S.DOWNLOADING, "remote_succeeded")
    item = replace(item, state=S.DOWNLOADING)

    async def main() -> None:
        transport = httpx.MockTransport(lambda request: ok(tiny_video()))
        async with Downloader(trusted_hosts=["files.test"], transport=transport) as files:
            pool = DownloadPool(
                parts.gateway,
                parts.queue,
                SimpleNamespace(),  # type: ignore[arg-type]  # the URL is known: no /result
                files,
                SETTINGS,
                ledger=parts.ledger,
                gate=parts.gate,
                report=parts.report,
                wrong_replies=WrongReplies(),
                rng=parts.rng,
            )
            with pool.channel():
                async with anyio.create_task_group() as group:
                    pool.start(group, worker_id="w-test")
                    pool.hand(item, "https://files.test/v.mp4")
                    await wait_for(lambda: by_name(store)["job0"].state == S.SUCCEEDED)
                    group.cancel_scope.cancel()

    anyio.run(main)
    job = by_name(store)["job0"]
    assert (tmp_path / "out" / job.output_path).is_file()
    assert (parts.report.downloads, parts.ledger.busy) == (1, 0)
