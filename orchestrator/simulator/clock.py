"""Simulated time: scaled wall-clock time for servers, a hand-cranked clock for tests.

The simulator's queue reads time only through :class:`Clock`, so a test can put a job
through queue -> run -> done by advancing a :class:`ManualClock`, with no sleeps.

>>> clock = ManualClock()
>>> clock.advance(60)
>>> clock.now()
60.0
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Simulated seconds since the simulator started."""

    def now(self) -> float: ...


class ScaledClock:
    """Wall-clock time divided by ``time_scale`` (real seconds per simulated second).

    With ``time_scale=0.001`` a job that "runs 60 s" finishes after 60 ms of real time.
    """

    def __init__(self, time_scale: float) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) / self.time_scale

    def real_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds last in real time."""
        return simulated * self.time_scale


class ManualClock:
    """A clock that moves only when told to (thread-safe)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        with self._lock:
            self._now += seconds

    def real_seconds(self, simulated: float) -> float:
        """Manual time has no real-time length; waits are the test's business."""
        return 0.0
