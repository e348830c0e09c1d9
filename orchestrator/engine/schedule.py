"""The poll schedule: when each watched job is looked at next (one heap for all of them).

Watching a job records it in the :class:`~.ledger.InFlight` ledger and pushes its next look
on the heap; unwatching drops it from the ledger (and what :class:`~.timing.Timing` saw of
it), and its pending look is skipped when it comes due. The heap is in memory only: it is
rebuilt from the store on start (see :meth:`.pool.Engine.run`).
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING

from orchestrator.engine.core import Wakeup

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator.engine.ledger import InFlight
    from orchestrator.engine.timing import Timing
    from orchestrator.store.work import WorkItem


class PollSchedule:
    """The heap of due looks over the ledger's watched jobs."""

    def __init__(self, ledger: InFlight, timing: Timing, monotonic: Callable[[], float]) -> None:
        self._ledger = ledger
        self._timing = timing
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._wake = Wakeup()

    def watch(self, item: WorkItem, delay: float) -> None:
        """Watch ``item`` (as last written) and look at it in ``delay`` seconds."""
        self._ledger.watch(item)
        due = self._monotonic() + delay
        heapq.heappush(self._heap, (due, next(self._seq), item.row_id))
        self._wake.set()

    def unwatch(self, row_id: int) -> None:
        """The job is no longer this worker's to poll (finished, moved on, taken over)."""
        self._ledger.unwatch(row_id)
        self._timing.forget(row_id)

    def release(self, row_id: int) -> None:
        """The job finished remotely: no more looks (what timing saw of it is kept: its
        run time has just been learned)."""
        self._ledger.unwatch(row_id)

    def due(self, now: float) -> list[WorkItem]:
        """The watched jobs whose look is due at ``now``, taken off the heap."""
        items: list[WorkItem] = []
        while self._heap and self._heap[0][0] <= now:
            _due, _seq, row_id = heapq.heappop(self._heap)
            item = self._ledger.watched(row_id)
            if item is not None:
                items.append(item)
        return items

    async def wait(self, now: float, idle: float) -> None:
        """Sleep from ``now`` until the next look is due, a new one is scheduled, or
        ``idle`` passes (when nothing is scheduled)."""
        wait = self._heap[0][0] - now if self._heap else idle
        await self._wake.wait(wait)
