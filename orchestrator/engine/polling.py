"""Polling: one scheduler for every job in flight, aimed at each job's likely finish.

Success is judged from ``/result`` (a success state and a video URL), never from
``/status`` alone, and only from a reply about this job: one naming another request id is
a transient error, asked again (:class:`~orchestrator.api.errors.WrongRequest`). A result
whose output URL cannot be downloaded goes to a person (``needs_reconcile``), never to a
paid re-roll. A 429 (and its ``Retry-After``, capped) holds only the job it was about.

Run times are learned from the engine's own looks, with the server's stamps used only
where they agree (:mod:`.runtimes`); when to look next is :func:`.decisions.poll_delay`,
through :class:`.timing.Timing`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator import failpoints
from orchestrator.api import (
    AuthError,
    RemoteResult,
    RequestNotFound,
    RunComfyClient,
    RunComfyError,
    TransientError,
    WrongRequest,
)
from orchestrator.api.responses import SUCCESS_STATES, shown_reply
from orchestrator.engine.core import POLL_PATIENCE, EngineReport, WrongReplies, log, moved_to
from orchestrator.engine.decisions import Outcome, retry_delay
from orchestrator.engine.paidwork import (
    SHOWN_URL_CHARS,
    UNUSABLE_OUTPUT,
    BreakerKind,
    breaker_for_account,
    unusable_error,
)
from orchestrator.store.prices import PriceBook, raised_estimate_ratio
from orchestrator.store.states import JobState
from orchestrator.store.work import WorkItem, WorkQueue

if TYPE_CHECKING:
    import random

    from anyio.abc import TaskGroup

    from orchestrator.engine.gate import SubmitGate
    from orchestrator.engine.gateway import StoreGateway
    from orchestrator.engine.ledger import InFlight
    from orchestrator.engine.schedule import PollSchedule
    from orchestrator.engine.settings import EngineSettings
    from orchestrator.engine.timing import Timing

#: Hands a job that finished remotely to the downloaders (with its video URL, if known).
HandOver = Callable[[WorkItem, str | None], None]


class Poller:
    """The poll scheduler and what a finished remote job means.

    It looks at the jobs ``schedule`` says are due, settles what it finds (through
    ``gateway``), and gives a rendered job to ``hand_over``; ``on_room`` is called when the
    account turned out to have room for more submits.
    """

    def __init__(
        self,
        gateway: StoreGateway,
        queue: WorkQueue,
        api: RunComfyClient,
        settings: EngineSettings,
        *,
        ledger: InFlight,
        schedule: PollSchedule,
        timing: Timing,
        gate: SubmitGate,
        report: EngineReport,
        wrong_replies: WrongReplies,
        hand_over: HandOver,
        on_room: Callable[[], None],
        monotonic: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self._gateway = gateway
        self._queue = queue
        self._prices = PriceBook(queue)
        self._api = api
        self._settings = settings
        self._ledger = ledger
        self._schedule = schedule
        self._timing = timing
        self._gate = gate
        self._report = report
        self._wrong_replies = wrong_replies
        self._hand_over = hand_over
        self._on_room = on_room
        self._monotonic = monotonic
        self._rng = rng
        self._transient: dict[int, int] = {}
        """Failed polls in a row, by row id (reset by a good look)."""

    async def run(self, group: TaskGroup) -> None:
        """Start each due poll in ``group``, until cancelled."""
        limiter = anyio.CapacityLimiter(self._settings.max_concurrent_polls)
        while True:
            now = self._monotonic()
            for item in self._schedule.due(now):
                self._ledger.poll_started()
                group.start_soon(self._poll_one, item, limiter)
            await self._schedule.wait(now, self._settings.idle_check)

    async def _poll_one(self, item: WorkItem, limiter: anyio.CapacityLimiter) -> None:
        # Busy until what the poll found is written (and a finished job handed to the
        # downloaders): "nothing busy, nothing in flight" must never be seen in between.
        try:
            await self._poll_and_apply(item, limiter)
        finally:
            self._ledger.poll_ended()

    async def _poll_and_apply(self, item: WorkItem, limiter: anyio.CapacityLimiter) -> None:
        assert item.request_id is not None
        try:
            async with limiter:
                self._report.polls += 1
                asked = self._monotonic()
                status = await self._api.status(item.request_id)
                failpoints.reached("after_status")
                if not status.terminal:
                    # A good look ends a run of failed ones: POLL_PATIENCE counts failures
                    # in a row (a server that mixes replies up now and then is still polled).
                    self._transient.pop(item.row_id, None)
                    looked = (asked, self._monotonic())
                    await self._still_running(item, status.status, status.queue_position, looked)
                    return
                self._timing.done(item.row_id, at=self._monotonic())
                result = await self._api.result(item.request_id, include_cost=True)
        except RequestNotFound as exc:
            self._schedule.unwatch(item.row_id)
            await self._gateway.settle(
                item,
                Outcome.REMOTE_LOST,
                error=str(exc),
                attempt={"outcome": "remote_lost", "error": str(exc)},
            )
            return
        except AuthError as exc:
            self._report.auth_error = str(exc)
            await self._gate.trip(breaker_for_account(BreakerKind.AUTH, str(exc)), item.batch)
            return
        except RunComfyError as exc:
            # A 429 here is about polling, and this job's next look waits for it; it does
            # not slow submits (a throttle with this job still in flight could leave no
            # room to submit anything until it was polled again).
            if isinstance(exc, WrongRequest):
                self._wrong_replies.note(item, exc)
            failures = self._transient.get(item.row_id, 0) + 1
            self._transient[item.row_id] = failures
            if not isinstance(exc, TransientError) or failures > POLL_PATIENCE:
                # A reply that will not change (a 4xx on our own request id) or one that
                # keeps failing: the job may still finish remotely, so a person decides.
                self._schedule.unwatch(item.row_id)
                await self._gateway.settle(
                    item,
                    Outcome.REMOTE_LOST,
                    error=f"gave up polling after {failures} failed tries: {exc}",
                    attempt={"outcome": "remote_lost", "error": str(exc)},
                )
                return
            delay = retry_delay(
                failures,
                base=self._settings.base_delay,
                cap=min(60.0, self._settings.max_delay),
                retry_after=getattr(exc, "retry_after", None),
                retry_after_cap=self._settings.max_delay,
                rng=self._rng,
            )
            self._schedule.watch(item, delay)
            return
        self._transient.pop(item.row_id, None)
        await self._finished_remotely(item, result)

    async def _revise_price(self, item: WorkItem, cost: float | None) -> None:
        """RunComfy billed more than estimated: raise the estimates of the model's jobs not
        yet billed, so the spend cap stays a bound for the rest of the batch."""
        # Stored estimates only ever rise, so a bill within this snapshot's estimate needs
        # no write (the store checks again against the estimate as stored now).
        if raised_estimate_ratio(item.estimated_cost_usd, cost) is None:
            return
        assert cost is not None
        raised = await self._gateway.call(
            self._prices.raise_estimates, item.batch, item.model_id, item.row_id, cost
        )
        if raised:
            log.warning(
                "billed more than estimated; estimates raised",
                batch=item.batch,
                job=item.name,
                attempt=item.attempts,
                request_id=item.request_id,
                estimate=item.estimated_cost_usd,
                cost=cost,
                jobs=raised,
            )

    async def _still_running(
        self, item: WorkItem, status: str, position: int | None, looked: tuple[float, float]
    ) -> None:
        """A look (asked, answered: monotonic seconds) found the job queued or running."""
        if status != item.remote_status:
            fields: dict[str, Any] = {"remote_status": status, "queue_position": position}
            if status == "in_progress":
                fields["started_at"] = self._queue.now()
            if not await self._gateway.call(self._queue.note, item, fields):
                # Moved on or taken over (a reply read after a long pause, say): not ours.
                self._schedule.unwatch(item.row_id)
                log.warning(
                    "stale status dropped",
                    batch=item.batch,
                    job=item.name,
                    attempt=item.attempts,
                    request_id=item.request_id,
                    remote_status=status,
                    lease=item.lease_token,
                )
                return
            item = moved_to(item, item.state, remote_status=status)
        room_before = self._timing.room(self._ledger.submits)
        asked, answered = looked
        delay = self._timing.looked(
            item.row_id, status, at=answered, position=position, asked=asked
        )
        if self._timing.room(self._ledger.submits) > room_before:
            self._on_room()  # the account has room for more: submit them now
        self._schedule.watch(item, delay)

    async def _finished_remotely(self, item: WorkItem, result: RemoteResult) -> None:
        if not result.terminal:  # /status ran ahead of /result: look again soon
            self._schedule.watch(item, self._settings.poll.minimum)
            return  # (keeping what was seen of the job, to learn its run time)
        evidence = self._timing.finished(
            item.row_id,
            at=self._monotonic(),
            succeeded=result.succeeded,
            stamps=(result.created_at, result.started_at, result.finished_at),
            slack=self._settings.poll.minimum / 2,
        )
        if evidence is not None and self._timing.stamps[evidence.verdict] == 1:
            self._note_stamps(item, evidence.verdict)
        self._schedule.release(item.row_id)
        # The cost goes on the attempt; the store sums attempts into the job's cost.
        facts = {
            "remote_status": result.status,
            "finished_at": self._queue.now(),
            "queue_position": None,
        }
        await self._revise_price(item, result.cost)
        if result.unusable and not result.succeeded:
            await self._unusable_result(item, result, facts)
        elif result.status in SUCCESS_STATES:
            if not result.succeeded:
                # Rendered (and billed) but the result shows no output URL: the only way
                # forward is to fetch the result again (the fetch backoff, then a pause a
                # re-run resumes), never an automatic paid re-roll.
                log.warning(
                    "completed without an output URL; asking for the result again",
                    batch=item.batch,
                    job=item.name,
                    attempt=item.attempts,
                    request_id=item.request_id,
                )
            moved = await self._gateway.settle(
                item,
                Outcome.REMOTE_SUCCEEDED,
                fields=facts,
                attempt={"outcome": "succeeded", "cost_usd": result.cost},
            )
            if moved:  # no URL (None): the fetch asks /result again
                self._hand_over(moved_to(item, JobState.DOWNLOADING), result.video_url)
        elif result.status in ("cancelled", "canceled"):
            await self._gateway.settle(
                item,
                Outcome.REMOTE_CANCELLED,
                fields=facts,
                attempt={"outcome": "cancelled", "cost_usd": result.cost},
            )
        else:
            reason = result.error or f"remote status {result.status}"
            # max_attempts bounds paid generations: a refused (429) or held submit was
            # counted as an attempt but never billed, so it does not use up a re-roll.
            paid = await self._gateway.call(self._queue.paid_attempts, item.row_id)
            await self._gateway.retry_later(
                replace(item, attempts=paid),
                Outcome.REMOTE_FAILED,
                paid,
                reason,
                None,
                fields=facts,
                attempt={"outcome": "failed", "error": reason, "cost_usd": result.cost},
            )

    async def _unusable_result(
        self, item: WorkItem, result: RemoteResult, facts: dict[str, Any]
    ) -> None:
        """Rendered and billed, but the output URL cannot be downloaded: a person decides
        (``needs_reconcile``, the URL in the error); paying again is never automatic."""
        assert result.unusable_url is not None
        assert item.request_id is not None
        error = unusable_error(item.request_id, item.name, result.unusable_url)
        log.warning(
            "result holds an output URL that cannot be downloaded; needs a person",
            batch=item.batch,
            job=item.name,
            attempt=item.attempts,
            request_id=item.request_id,
            url=shown_reply(result.unusable_url, SHOWN_URL_CHARS),
        )
        attempt = {"outcome": UNUSABLE_OUTPUT, "error": error, "cost_usd": result.cost}
        await self._gateway.settle(
            item, Outcome.RESULT_UNUSABLE, fields=facts, error=error, attempt=attempt
        )

    def _note_stamps(self, item: WorkItem, verdict: str) -> None:
        """Say once per run what the server's timestamps turned out to be worth."""
        where = {
            "batch": item.batch,
            "job": item.name,
            "attempt": item.attempts,
            "request_id": item.request_id,
        }
        if verdict == "contradict":
            log.warning(
                "server timestamps disagree with what the engine saw; ignoring them for "
                "this run (run times come from the engine's own looks)",
                **where,
            )
        elif verdict == "absent":
            log.info(
                "the API sent no usable timestamps; run times come from the engine's own looks",
                **where,
            )
