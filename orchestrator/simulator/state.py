"""The simulated account: requests, queues, balance, outputs and the ledger.

:class:`Simulator` holds the state and answers in plain values; :mod:`.app` turns those
into HTTP. Nothing here sleeps or runs in the background (see :mod:`.queue`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.catalog import Catalog, ModelSpec
from orchestrator.simulator.clock import Clock, ScaledClock
from orchestrator.simulator.faults import FaultDecider, bad_url
from orchestrator.simulator.hostile import add_fault_counts, impostor
from orchestrator.simulator.inputs import check_submission
from orchestrator.simulator.ledger import Ledger
from orchestrator.simulator.outages import OutageSchedule
from orchestrator.simulator.profile import Profile, ProfileError
from orchestrator.simulator.queue import AccountQueue, SimJob
from orchestrator.simulator.served import (
    SchemaChangeError,
    apply_changes,
    change_field,
    clip_seconds,
    cost_of,
    default_catalog,
    settings_of,
)
from orchestrator.simulator.timing import stamp_fields
from orchestrator.simulator.video import VideoCache

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Job outcomes decided at submit time, mapped to the profile's fault probabilities.
OUTCOME_FAULTS = {
    "failed": "job_failed",
    "failed_result_only": "job_failed_result_only",
    "no_output": "no_output",
    "bad_url": "result_bad_url",
}
IMAGE_MEMORY = 256  # distinct first-frame images kept for rendering


class ApiError(Exception):
    """An error reply: HTTP status and the documented ``{error_code, error_message, detail}``."""

    def __init__(self, status: int, code: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"error_code": self.code, "error_message": self.message, "detail": self.detail}


@dataclass(frozen=True)
class Download:
    """What the file host serves for one URL."""

    status: int
    video: bytes = b""
    reason: str = ""


def payload_hash(body: Mapping[str, Any]) -> str:
    """The identity of a submitted payload (equal bodies, equal hashes)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class Simulator:
    """One RunComfy account as the simulated API sees it."""

    def __init__(
        self,
        profile: Profile,
        *,
        clock: Clock | None = None,
        catalog: Catalog | None = None,
        token: str | None = None,
        wall_start: datetime | None = None,
    ) -> None:
        """``wall_start`` is the aware wall-clock moment simulated time 0 stands for (now by
        default); tests pin it to check stamps exactly. ``catalog`` replaces the default
        one (:func:`.served.default_catalog`: the five shipped models and the invented
        ones); either way the simulator serves a copy, which the profile's
        ``schema_changes`` and :meth:`change_field` change."""
        self.profile = profile
        self.clock: Clock = clock or ScaledClock(profile.time_scale)
        self.catalog = Catalog(catalog if catalog is not None else default_catalog())
        for model in self.catalog:
            settings_of(model)  # a bad ``simulator`` key fails now, not as a 500 on submit
        try:
            apply_changes(self.catalog, profile.schema_changes)
        except SchemaChangeError as exc:
            raise ProfileError(f"schema_changes: {exc}") from exc
        self.token = token
        self.balance = profile.balance_usd
        self.ledger = Ledger()
        self.faults = FaultDecider(profile.seed)
        self.outages = OutageSchedule(profile.file_outages, self.clock, self.ledger)
        self.videos = VideoCache(fps=profile.video_fps, max_side=profile.video_max_side)
        self.jobs: dict[str, SimJob] = {}
        self._queues: dict[str, AccountQueue] = {}
        self._images: OrderedDict[str, bytes] = OrderedDict()
        self._submit_counts: Counter[str] = Counter()
        self._secret = secrets.token_bytes(16)
        self._started = (wall_start or datetime.now(UTC)) - timedelta(
            seconds=self.clock.now() * getattr(self.clock, "time_scale", 1.0)
        )
        self._lock = threading.Lock()
        self.api_base = "http://127.0.0.1"
        self.files_base = "http://localhost"

    # -- identity ------------------------------------------------------------------------

    def owner_of(self, authorization: str | None) -> str:
        """The account a bearer token belongs to; raises a 401 ApiError when it is not valid."""
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, 401001, "Unauthorized: missing bearer token")
        token = authorization[len("Bearer ") :].strip()
        if not token or (self.token is not None and not hmac.compare_digest(token, self.token)):
            raise ApiError(401, 401001, "Unauthorized: invalid or expired token")
        return hashlib.sha256(token.encode()).hexdigest()[:16]

    def _queue(self, owner: str) -> AccountQueue:
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = AccountQueue(self.profile.slots)
        return queue

    def job_for(self, owner: str, request_id: str) -> SimJob:
        """A request the caller may see: 404001 if unknown or expired, 403001 if not theirs."""
        job = self.jobs.get(request_id)
        now = self.clock.now()
        if job is not None:
            self._queue(job.owner).advance(now)
        ttl = self.profile.record_ttl
        expired = (
            job is not None
            and ttl is not None
            and job.finished_at is not None
            and now > job.finished_at + ttl
        )
        if job is None or expired:
            raise ApiError(404, 404001, f"request {request_id} not found or expired")
        if job.owner != owner:
            raise ApiError(403, 403001, "this request belongs to another account")
        return job

    # -- the four request routes -----------------------------------------------------------

    def model(self, model_id: str) -> ModelSpec:
        """The model a submit names: 400001 (InvalidResourceIdentifier) when unknown."""
        model = self.catalog.get(model_id)
        if model is None:
            raise ApiError(400, 400001, f"invalid model_id: {model_id}")
        return model

    def described(self, model_id: str) -> ModelSpec:
        """The model ``GET /v1/models/{id}`` describes: 404001 when unknown."""
        model = self.catalog.get(model_id)
        if model is None:
            raise ApiError(404, 404001, f"model not found: {model_id}")
        return model

    def change_field(self, model_id: str, field: str, **changes: Any) -> ModelSpec:
        """Change one field's schema now, as RunComfy might under a running client: the
        catalog routes serve it and submits are validated against it from the next request.
        ``changes`` are schema keywords (``enum=[4, 8]``, ``maximum=10``; None removes
        one); raises :class:`.served.SchemaChangeError` for an unknown model or field."""
        model = self.catalog.get(model_id)
        if model is None:
            raise SchemaChangeError(f"unknown model {model_id!r}")
        changed = change_field(model, field, changes)
        with self._lock:
            self.catalog.add(changed)
        return changed

    def submit(self, owner: str, model_id: str, body: Any) -> SimJob:
        """Validate, charge and queue one request (raises ApiError on rejection)."""
        model = self.model(model_id)
        if not isinstance(body, dict):
            raise ApiError(
                422,
                422001,
                "Validation Error",
                [{"loc": ["body"], "msg": "a JSON object is required", "type": "type_error"}],
            )
        digest = payload_hash({"model": model_id, "input": body})
        checked = check_submission(model, body)
        if checked.detail:
            self.ledger.rejected(digest)
            raise ApiError(422, 422001, "Validation Error", checked.detail)
        seconds = clip_seconds(model, body) or 5.0
        cost = cost_of(self.profile, model, body, seconds)
        with self._lock:
            if self.balance is not None:
                if self.balance < cost:
                    self.ledger.rejected(digest)
                    raise ApiError(402, 400002, "Insufficient balance to run this operation")
                self.balance = round(self.balance - cost, 6)
            count = self._submit_counts[digest]
            self._submit_counts[digest] = count + 1
        # Request ids, run times and outcomes follow from (seed, payload, how many times it
        # was submitted), so a rerun with the same seed meets the same jobs.
        request_id = str(
            uuid.UUID(
                bytes=hashlib.sha256(f"{self.profile.seed}|{digest}|{count}".encode()).digest()[
                    :16
                ],
                version=4,
            )
        )
        rng = self.faults.rng("job", f"{digest}|{count}")
        outcome = "success"
        roll = rng.random()
        edge = 0.0
        for name, fault in OUTCOME_FAULTS.items():
            edge += getattr(self.profile.faults, fault)
            if roll < edge:
                outcome = name
                break
        image_key = ""
        if checked.first_image is not None:
            image_key = hashlib.sha256(checked.first_image).hexdigest()
            with self._lock:
                self._images[image_key] = checked.first_image
                self._images.move_to_end(image_key)
                while len(self._images) > IMAGE_MEMORY:
                    self._images.popitem(last=False)
        elif checked.first_image_url is not None:
            image_key = "url:" + checked.first_image_url
        # One draw whatever the scale, so adding run_time_scale keeps every other decision.
        run_time = self.profile.duration_for(model_id).sample(rng)
        run_time *= self.profile.run_time_scale.factor(seconds, body)
        job = SimJob(
            request_id=request_id,
            model_id=model_id,
            owner=owner,
            payload_hash=digest,
            run_time=run_time,
            video_seconds=self.profile.video_seconds or seconds,
            cost=cost,
            outcome=outcome,
            image_key=image_key,
        )
        with self._lock:
            self.jobs[request_id] = job
        self._queue(owner).submit(job, self.clock.now())
        self.ledger.submitted(job)
        return job

    def status(self, owner: str, request_id: str) -> dict[str, Any]:
        job = self.job_for(owner, request_id)
        other = impostor(self, owner, job, "status_wrong_request_id")
        if other is not None:  # another job's reply, as a confused server might send
            return self._status_body(owner, other, self.clock.now())
        return self._status_body(owner, job, self.clock.now(), look=True)

    def _status_body(
        self, owner: str, job: SimJob, now: float, *, look: bool = False
    ) -> dict[str, Any]:
        request_id = job.request_id
        body: dict[str, Any] = {"request_id": request_id, "status": job.status_at(now)}
        # What each look found, for benchmarks to see where a schedule spends its polls.
        looks = job.extra.setdefault("looks", {})
        assert isinstance(looks, dict)
        if look:
            looks[body["status"]] = looks.get(body["status"], 0) + 1
        position = self._queue(owner).position(job, self.profile.queue_position_base)
        if position is not None:
            body["queue_position"] = position
        body["status_url"] = self.url(request_id, "status")
        body["result_url"] = self.url(request_id, "result")
        return body

    def result(self, owner: str, request_id: str, include_cost: bool) -> dict[str, Any]:
        job = self.job_for(owner, request_id)
        other = impostor(self, owner, job, "result_wrong_request_id")
        return self._result_body(other or job, include_cost)

    def _result_body(self, job: SimJob, include_cost: bool) -> dict[str, Any]:
        request_id = job.request_id
        now = self.clock.now()
        status = job.result_status_at(now)
        body: dict[str, Any] = {"request_id": request_id, "status": status}
        created = job.submitted_at
        started = job.started_at
        if self.profile.created_at == "start" and started is not None and started <= now:
            created = started
        finished_moment = None
        if status in ("completed", "failed", "cancelled"):
            finished = job.cancelled_at if job.cancelled_at is not None else job.finished_at
            finished_moment = self.moment(now if finished is None else finished)
        body.update(
            stamp_fields(
                self.profile.timestamps,
                self.moment(created),
                finished_moment,
                self.profile.constant_run_seconds,
            )
        )
        if status == "completed":
            if job.outcome == "no_output":
                body["output"] = {}
            elif job.outcome == "bad_url":
                body["output"] = {"video": bad_url(self.profile.seed, request_id)}
            else:
                body["output"] = {"video": self.mint_url(job)}
        elif status == "failed":
            body["error"] = {
                "code": "generation_failed",
                "message": "the model failed to generate a video for this input",
            }
        if include_cost:
            body["model_id"] = job.model_id
            body["cost"] = 0.0 if job.cancelled_at is not None else job.cost
        return body

    def cancel(self, owner: str, request_id: str) -> dict[str, Any]:
        job = self.job_for(owner, request_id)
        now = self.clock.now()
        queue = self._queue(owner)
        with self._lock:  # one refund however many times (or how concurrently) it is cancelled
            already = job.cancelled_at is not None
            cancelled = queue.cancel(job, now)
            if cancelled and not already and self.balance is not None:
                self.balance = round(self.balance + job.cost, 6)  # cancelled while queued: free
        if cancelled:
            return {"request_id": request_id, "outcome": "cancelled", "status": "cancelled"}
        return {
            "request_id": request_id,
            "outcome": "not_cancellable",
            "status": job.status_at(now),
        }

    # -- outputs ---------------------------------------------------------------------------

    def url(self, request_id: str, what: str) -> str:
        return f"{self.api_base}/v1/requests/{request_id}/{what}"

    def mint_url(self, job: SimJob) -> str:
        """A fresh, signed, expiring download URL on the file host."""
        job.url_versions += 1
        expires = int(self.clock.now() + self.profile.url_ttl) + 1
        signature = self._sign(job.request_id, job.url_versions, expires)
        return (
            f"{self.files_base}/files/{job.request_id}/{job.url_versions}/output.mp4"
            f"?expires={expires}&sig={signature}"
        )

    def _sign(self, request_id: str, version: int, expires: int) -> str:
        message = f"{request_id}|{version}|{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def download(self, request_id: str, version: int, expires: int, signature: str) -> Download:
        """The video behind a URL, or 403 when the signature is wrong or it has expired."""
        job = self.jobs.get(request_id)
        good = hmac.compare_digest(signature, self._sign(request_id, version, expires))
        if job is None or not good:
            return Download(403, reason="AccessDenied: invalid signature")
        expired_versions = job.extra.setdefault("expired_versions", {})
        assert isinstance(expired_versions, dict)
        if version not in expired_versions:
            expired_versions[version] = (
                self.faults.draw("expired_url", f"{request_id}|{version}")
                < self.profile.faults.expired_url
            )
        if expired_versions[version] or self.clock.now() > expires:
            return Download(403, reason="AccessDenied: Request has expired")
        image = self._images.get(job.image_key) if job.image_key else None
        fallback = job.image_key or job.request_id
        return Download(200, self.videos.get(image, fallback, job.video_seconds))

    def moment(self, simulated: float) -> datetime:
        """The wall-clock moment (aware, UTC, skew included) /result stamps for a simulated
        one; :func:`.timing.stamp_fields` renders it in the profile's form.

        Real RunComfy stamps wall-clock times; clients measure run times from them, so a
        time-scaled simulator stamps real seconds (simulated x time scale) since it started.
        """
        scale = getattr(self.clock, "time_scale", 1.0)
        offset = simulated * scale + self.profile.timestamp_skew_seconds
        return self._started + timedelta(seconds=offset)

    def snapshot(self) -> dict[str, Any]:
        """The ledger, with every queue advanced to now so timelines are current."""
        now = self.clock.now()
        for queue in list(self._queues.values()):
            queue.advance(now)
        data = self.ledger.snapshot()
        add_fault_counts(self, data["jobs"])
        data["now"] = now
        data["balance_usd"] = self.balance
        data["renders"] = self.videos.renders
        return data
