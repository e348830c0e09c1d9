"""Named crash points for the kill -9 tests: the process dies exactly where a real crash hurts.

``ORCHESTRATOR_CRASH_AT=after_post:3`` makes the third pass through the ``after_post`` point
kill the process with SIGKILL (no cleanup, no flush), like a power cut or the OOM killer.
Unset, :func:`reached` costs one dictionary lookup.

Points: ``after_claim`` (intent written, nothing sent), ``after_post`` (RunComfy accepted
the job, its request id not yet committed), ``after_accept`` (request id committed),
``before_download`` (remote job done, file not fetched), ``before_rename`` (verified temp
file on disk, not yet renamed), ``after_rename`` (file in place, success not committed),
``after_status`` (a poll answered, nothing written yet) and ``before_commit`` (a state
change written inside its transaction, not committed: SQLite must roll it back).

It lives outside ``engine`` so the store can name its own point without importing the engine.
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()
_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("ORCHESTRATOR_CRASH_AT", "")
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count or "1")


def reached(name: str) -> None:
    """Die here if this is the configured crash point and pass."""
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == target[1]
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
