"""The simulator's ledger: what every client did, for tests and benchmarks to check.

It records submissions per payload hash (a payload submitted twice is a double payment),
calls per route and status code, the headers each download carried (to prove the API token
never reached the file host), bytes served, each job's timeline (simulated seconds)
for makespan figures, and each file-host outage window (``outages``: kind, opened_at,
closes_at in simulated seconds; the replies they spoiled count as the faults
``file_outage_error`` and ``file_outage_refuse``).
Read it in-process with :meth:`Ledger.snapshot` or over HTTP at ``GET /_sim/ledger``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.simulator.queue import SimJob


@dataclass
class Ledger:
    """Thread-safe counters and records; never reset except by :meth:`clear`."""

    submissions: Counter[str] = field(default_factory=Counter)
    rejected_submissions: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    bytes_served: int = 0
    jobs: dict[str, SimJob] = field(default_factory=dict)
    outages: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def call(self, route: str) -> None:
        with self._lock:
            self.calls[route] += 1

    def reply(self, route: str, status: int) -> None:
        with self._lock:
            self.replies[f"{route} {status}"] += 1

    def fault(self, name: str) -> None:
        with self._lock:
            self.faults[name] += 1

    def submitted(self, job: SimJob) -> None:
        with self._lock:
            self.submissions[job.payload_hash] += 1
            self.jobs[job.request_id] = job

    def rejected(self, payload_hash: str) -> None:
        with self._lock:
            self.rejected_submissions[payload_hash] += 1

    def downloaded(
        self, *, host: str, path: str, headers: dict[str, str], status: int, size: int
    ) -> None:
        with self._lock:
            self.downloads.append(
                {"host": host, "path": path, "headers": headers, "status": status, "bytes": size}
            )
            self.bytes_served += size

    def outage(self, kind: str, opened_at: float, closes_at: float) -> None:
        with self._lock:
            self.outages.append({"kind": kind, "opened_at": opened_at, "closes_at": closes_at})

    def duplicates(self) -> dict[str, int]:
        """Payload hashes accepted more than once (each extra one was paid for again)."""
        with self._lock:
            return {h: n for h, n in self.submissions.items() if n > 1}

    def clear(self) -> None:
        with self._lock:
            self.submissions.clear()
            self.rejected_submissions.clear()
            self.calls.clear()
            self.replies.clear()
            self.faults.clear()
            self.downloads.clear()
            self.bytes_served = 0
            self.jobs.clear()
            self.outages.clear()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of everything recorded."""
        with self._lock:
            return {
                "submissions": dict(self.submissions),
                "rejected_submissions": dict(self.rejected_submissions),
                "duplicates": {h: n for h, n in self.submissions.items() if n > 1},
                "calls": dict(self.calls),
                "replies": dict(self.replies),
                "faults": dict(self.faults),
                "downloads": list(self.downloads),
                "bytes_served": self.bytes_served,
                "jobs": {rid: _timeline(job) for rid, job in self.jobs.items()},
                "outages": [dict(window) for window in self.outages],
            }


def _timeline(job: SimJob) -> dict[str, Any]:
    return {
        "model_id": job.model_id,
        "payload_hash": job.payload_hash,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "cancelled_at": job.cancelled_at,
        "outcome": job.outcome,
        "cost": job.cost,
        "looks": dict(job.extra.get("looks") or {}),  # type: ignore[call-overload]
    }
