"""The submit gate: whether new jobs may be submitted, and the circuit breakers.

Submitting stops for the rest of the run when the spend cap is reached, and while a
circuit breaker is open (a failure every new job would meet too: a refused token, an
empty balance, an unknown model, a full disk). Paid work is still polled and fetched.
Some breakers close again when a download succeeds (:data:`.paidwork.CLOSE_ON_SUCCESS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.engine.core import EngineReport, log
from orchestrator.engine.paidwork import CLOSE_ON_SUCCESS, Breaker
from orchestrator.store.states import EventKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator.engine.gateway import StoreGateway
    from orchestrator.store.work import WorkQueue

BREAKER_TRIPPED = EventKind.BREAKER_TRIPPED.value
BREAKER_CLOSED = EventKind.BREAKER_CLOSED.value


class SubmitGate:
    """Spend cap and breakers, kept in the report; ``on_open`` wakes the submitter."""

    def __init__(
        self,
        report: EngineReport,
        gateway: StoreGateway,
        queue: WorkQueue,
        *,
        on_open: Callable[[], None],
    ) -> None:
        self._report = report
        self._gateway = gateway
        self._queue = queue
        self._on_open = on_open
        self._below_cap = True
        """False once the spend cap is reached (breakers are kept apart: some close)."""

    @property
    def open(self) -> bool:
        """Whether new jobs may be submitted: no spend cap reached, no breaker open."""
        return self._below_cap and self._report.breaker is None

    def cap_reached(self, why: str) -> None:
        """The spend cap: no new submits for the rest of the run (nothing else lifts it)."""
        if self._below_cap:
            self._below_cap = False
            self._report.spend_capped = True
            self._report.notes.append(f"stopped submitting: {why}")

    async def trip(self, breaker: Breaker, batch: str) -> None:
        """Stop submitting because of a failure every new job would meet too; paid work
        is still polled and fetched. The first breaker's message is kept, and recorded in
        the batch's event log (what stopped it, and when: no claim after it was sent)."""
        report = self._report
        if report.breaker is not None:
            return
        report.breaker = breaker
        report.tripped_at = report.tripped_at or self._queue.now()
        report.notes.append(f"stopped submitting: {breaker}")
        log.error(
            "circuit breaker tripped: submitting stopped",
            batch=batch,
            kind=breaker.kind.value,
            problem=breaker.problem,
            fix=breaker.fix,
        )
        detail = {"kind": breaker.kind.value, "problem": breaker.problem, "fix": breaker.fix}
        await self._gateway.call(
            lambda: self._queue.store.record_event(BREAKER_TRIPPED, batch=batch, detail=detail)
        )

    async def download_succeeded(self, batch: str) -> None:
        """A download succeeded: a full disk or an unwritable folder has been fixed."""
        breaker = self._report.breaker
        if breaker is None or breaker.kind not in CLOSE_ON_SUCCESS:
            return
        self._report.breaker = None
        self._report.notes.append(f"submitting resumed: {breaker.kind.value} cleared")
        log.warning("circuit breaker closed: submitting resumed", batch=batch, kind=breaker.kind)
        detail = {"kind": breaker.kind.value}
        await self._gateway.call(
            lambda: self._queue.store.record_event(BREAKER_CLOSED, batch=batch, detail=detail)
        )
        self._on_open()
