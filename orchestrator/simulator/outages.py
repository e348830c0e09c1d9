"""File-host outages: when the file host is down, in simulated seconds.

A profile plans outages (``file_outages``); :meth:`OutageSchedule.start` opens one at once.
A planned outage opens at the first file-host request arriving at or after its ``after``
(so a client is sure to meet it: that request is already refused) and lasts ``seconds``
from then. Only one window is open at a time: a planned outage that falls due while
another is open opens at the first request after that one has closed.

>>> from orchestrator.simulator.clock import ManualClock
>>> from orchestrator.simulator.ledger import Ledger
>>> from orchestrator.simulator.profile import FileOutage
>>> clock = ManualClock()
>>> schedule = OutageSchedule([FileOutage(seconds=30, after=10)], clock, Ledger())
>>> schedule.meet() is None
True
>>> clock.advance(12)
>>> schedule.meet()
OutageWindow(kind='error', opened_at=12.0, closes_at=42.0)
>>> clock.advance(30)
>>> schedule.meet() is None
True
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.simulator.profile import OUTAGE_KINDS, FileOutage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from orchestrator.simulator.clock import Clock
    from orchestrator.simulator.ledger import Ledger


@dataclass(frozen=True, slots=True)
class OutageWindow:
    """One outage that has opened: ``error`` (downloads answer 5xx) or ``refuse``."""

    kind: str
    opened_at: float
    closes_at: float

    def as_dict(self) -> dict[str, float | str]:
        return {"kind": self.kind, "opened_at": self.opened_at, "closes_at": self.closes_at}


class OutageSchedule:
    """The planned outages still to come and the window open now (thread-safe)."""

    def __init__(self, planned: Iterable[FileOutage], clock: Clock, ledger: Ledger) -> None:
        self._pending = sorted(planned, key=lambda outage: outage.after)
        self._clock = clock
        self._ledger = ledger
        self._active: OutageWindow | None = None
        self._lock = threading.Lock()

    def meet(self) -> OutageWindow | None:
        """The outage a file-host request arriving now meets, opening a due one."""
        now = self._clock.now()
        with self._lock:
            active = self._current(now)
            if active is None and self._pending and self._pending[0].after <= now:
                planned = self._pending.pop(0)
                active = self._open(planned.kind, planned.seconds, now)
            return active

    def current(self) -> OutageWindow | None:
        """The window open now, if any (opens nothing)."""
        now = self._clock.now()
        with self._lock:
            return self._current(now)

    def start(self, kind: str, seconds: float) -> OutageWindow:
        """Open an outage now, replacing any open window."""
        if kind not in OUTAGE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(OUTAGE_KINDS)}, got {kind!r}")
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
        now = self._clock.now()
        with self._lock:
            return self._open(kind, float(seconds), now)

    def _current(self, now: float) -> OutageWindow | None:
        if self._active is not None and now >= self._active.closes_at:
            self._active = None
        return self._active

    def _open(self, kind: str, seconds: float, now: float) -> OutageWindow:
        window = OutageWindow(kind, now, now + seconds)
        self._active = window
        self._ledger.outage(window.kind, window.opened_at, window.closes_at)
        return window
