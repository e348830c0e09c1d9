"""What this worker has in hand: the one count the end of a run is judged by.

A job is in hand while it is watched (in flight remotely, polled by this worker), while a
poll of it runs (until what the poll found is written, and a finished job handed to the
downloaders), while its submit runs, and while a downloader works on it. "Nothing in hand"
must never be seen in between two of these, so each part marks the next one before it
lets go of its own.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.store.work import WorkItem


class InFlight:
    """The in-flight ledger: jobs watched, and polls, submits and downloads running."""

    def __init__(self) -> None:
        self._watched: dict[int, WorkItem] = {}
        self._polls = 0
        self._submits = 0
        self._downloads = 0

    # -- jobs watched (in flight remotely) ---------------------------------------------------

    def watch(self, item: WorkItem) -> None:
        """``item`` (as last written) is this worker's to poll."""
        self._watched[item.row_id] = item

    def unwatch(self, row_id: int) -> None:
        """The job is no longer this worker's to poll."""
        self._watched.pop(row_id, None)

    def watched(self, row_id: int) -> WorkItem | None:
        """The job as last written by this worker, if it is still watched."""
        return self._watched.get(row_id)

    def all_watched(self) -> dict[int, WorkItem]:
        """A copy of every watched job, by row id."""
        return dict(self._watched)

    # -- work running ------------------------------------------------------------------------

    def poll_started(self) -> None:
        """A poll was scheduled: counted until :meth:`poll_ended`."""
        self._polls += 1

    def poll_ended(self) -> None:
        """What a poll found is written (and a finished job handed on)."""
        self._polls -= 1

    def submit_started(self) -> None:
        """A claimed job's submit was started: counted until :meth:`submit_ended`."""
        self._submits += 1

    def submit_ended(self) -> None:
        """A submit's answer is written."""
        self._submits -= 1

    @contextmanager
    def downloading(self) -> Iterator[None]:
        """A downloader works on a job for the duration of the block."""
        self._downloads += 1
        try:
            yield
        finally:
            self._downloads -= 1

    @property
    def submits(self) -> int:
        """Submits running now (claimed, answer not yet written)."""
        return self._submits

    @property
    def busy(self) -> int:
        """Polls, submits and downloads running now."""
        return self._polls + self._submits + self._downloads

    @property
    def empty(self) -> bool:
        """Nothing running and nothing watched."""
        return not self.busy and not self._watched
