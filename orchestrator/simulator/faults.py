"""Fault decisions that are reproducible by seed, whatever order requests arrive in.

Each decision draws from a random generator seeded with (profile seed, what is asked,
the identity of the request, how many times that identity asked before). Two runs with the
same seed and the same requests get the same faults even when concurrent requests
interleave differently.

>>> faults = FaultDecider(seed=1)
>>> faults.draw("status", "req-1") == FaultDecider(seed=1).draw("status", "req-1")
True
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter


class FaultDecider:
    """Seeded, per-identity random draws."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def rng(self, topic: str, identity: str) -> random.Random:
        """A generator for the next decision about ``identity`` on ``topic``."""
        with self._lock:
            count = self._calls[(topic, identity)]
            self._calls[(topic, identity)] = count + 1
        digest = hashlib.sha256(f"{self.seed}|{topic}|{identity}|{count}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def first_draw(self, topic: str, identity: str) -> float | None:
        """The draw of ``identity``'s first decision on ``topic``; None on every later
        call (for faults that meet only a job's first poll, say)."""
        with self._lock:
            first = (topic, identity) not in self._calls
        return self.draw(topic, identity) if first else None

    def draw(self, topic: str, identity: str) -> float:
        """A number in [0, 1) for the next decision about ``identity``."""
        return self.rng(topic, identity).random()

    def pick(self, topic: str, identity: str, chances: dict[str, float]) -> str | None:
        """At most one of ``chances`` (name -> probability), or None.

        The probabilities are stacked on one draw, so each keeps its own share as long as
        they add up to at most 1.
        """
        roll = self.draw(topic, identity)
        edge = 0.0
        for name, chance in chances.items():
            edge += chance
            if roll < edge:
                return name
        return None


#: Output URLs no client can download (``result_bad_url``): ftp, file, relative, rooted,
#: javascript and data.
BAD_URLS = (
    "ftp://localhost/files/{rid}/output.mp4",
    "file:///var/runcomfy/outputs/{rid}/output.mp4",
    "files/{rid}/1/output.mp4",
    "/files/{rid}/1/output.mp4",
    "javascript:fetch('/files/{rid}/1/output.mp4')",
    "data:video/mp4;name={rid};base64,AAAAIGZ0eXBpc29t",
)


def bad_url(seed: int, request_id: str) -> str:
    """The undownloadable output URL of one job: one of :data:`BAD_URLS`, the same on
    every ``/result`` (chosen by a hash, not a draw, so asking again changes nothing).

    >>> bad_url(1, "r1") == bad_url(1, "r1") and "r1" in bad_url(1, "r1")
    True
    """
    digest = hashlib.sha256(f"{seed}|bad_url|{request_id}".encode()).digest()
    form = BAD_URLS[int.from_bytes(digest[:4], "big") % len(BAD_URLS)]
    return form.format(rid=request_id)
