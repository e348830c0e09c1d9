"""Every way a RunComfy call can fail, classified once, so the engine branches on five kinds.

::

    RunComfyError
    ├── TransientError          try again later: network trouble on a read, 5xx on a read,
    │   ├── RateLimited         429 (``retry_after`` seconds when the server said)
    │   └── WrongRequest        a status or result reply naming another request id: it
    │                           is another job's, so it is asked for again, never used
    ├── PermanentError          this request can never succeed as sent: 400/404/422 ...
    │   ├── RequestNotFound     404001 for a request id we hold: expired or never existed
    │   └── UnknownModel        a submit refused for its model id (400001, or a 404): every
    │                           job of that model would be refused too (a circuit breaker)
    ├── AmbiguousSubmission     a submit that may have reached RunComfy (timeout after
    │                           sending, 5xx, dropped connection, garbled reply): never
    │                           resubmit automatically - it may already be paid for
    ├── AuthError               401/403 or an auth error code: stop everything
    └── InsufficientBalance     402 or 400002: stop submitting, let running jobs finish

A submit is retried only when it provably never reached the server (connect errors) or was
refused (429, a clean 4xx); :func:`orchestrator.api.client.classify_submit_failure` is the
one place that decides.
"""

from __future__ import annotations


class RunComfyError(Exception):
    """Base class. ``status`` is the HTTP status (None for network errors)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class TransientError(RunComfyError):
    """Worth retrying after a delay; nothing was lost."""


class RateLimited(TransientError):
    """HTTP 429. ``retry_after`` is the server's requested delay in seconds, if it gave one."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        code: int | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class WrongRequest(TransientError):
    """A reply for ``asked`` that names ``answered`` as its request id.

    Trusting it would save another job's video as this one's (or take its state for this
    job's); the server may have mixed replies up, so asking again later may get the right
    one. ``answered`` is as the server sent it, cut short."""

    def __init__(self, message: str, *, asked: str, answered: str, route: str) -> None:
        super().__init__(message, status=200)
        self.asked = asked
        self.answered = answered
        self.route = route


class PermanentError(RunComfyError):
    """The request is wrong and will stay wrong (validation, unknown model ...)."""


class RequestNotFound(PermanentError):
    """RunComfy does not know this request id (404001): expired, deleted or never created."""


class UnknownModel(PermanentError):
    """RunComfy does not know the model a submit named (nothing was created or billed)."""


class AmbiguousSubmission(RunComfyError):
    """A submit whose outcome is unknown: the job may exist and be billed."""


class AuthError(RunComfyError):
    """The token is missing, wrong or revoked: nothing else will work either."""


class InsufficientBalance(RunComfyError):
    """The account has no balance left for new submissions."""
