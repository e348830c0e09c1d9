"""The RunComfy Model API client: four request routes and the catalog, nothing more.

Every failure leaves as one of the exceptions in :mod:`orchestrator.api.errors`; the
engine never sees an httpx exception or a raw status code. The token travels only in this
client's ``Authorization`` header to the API host; downloads use a different client.

>>> RunComfyClient("https://model-api.runcomfy.net", token="secret")
RunComfyClient(base_url='https://model-api.runcomfy.net', token=<hidden>)
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import httpx

from orchestrator import __version__
from orchestrator.api.errors import (
    AmbiguousSubmission,
    AuthError,
    InsufficientBalance,
    PermanentError,
    RateLimited,
    RequestNotFound,
    RunComfyError,
    TransientError,
    UnknownModel,
    WrongRequest,
)
from orchestrator.api.limits import LimitedTransport
from orchestrator.api.responses import (
    CancelReply,
    ModelInfo,
    RemoteResult,
    RemoteStatus,
    Submitted,
    shown_reply,
)
from orchestrator.defaults import DEFAULT_API_BASE
from orchestrator.redact import redact, redact_value, register_secret

if TYPE_CHECKING:
    from types import TracebackType

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
AUTH_CODES = frozenset({400004, 401001, 403001, 403003})
BALANCE_CODES = frozenset({400002, 10001})
#: Characters of a server-sent request id shown in a message (valid ones are <= 128).
SHOWN_ID_CHARS = 140
#: Errors raised before a byte of the request left: a submit that hit one was never sent.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def default_timeout() -> httpx.Timeout:
    """Connect 10 s; reads 30 s; a submit (large data URIs) may write and read for 90 s."""
    return httpx.Timeout(30.0, connect=10.0, pool=30.0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _body(response: httpx.Response) -> Any:
    """The reply's JSON with the token masked wherever the server echoed it: every string
    a reply carries (error messages, a job's ``error``, URLs) enters the tool here."""
    try:
        return redact_value(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def error_from_reply(response: httpx.Response, *, submit: bool) -> RunComfyError | None:
    """The error a reply carries, or None for a plain success.

    Some RunComfy APIs answer HTTP 200 with an ``error_code`` body; that counts as an error.
    """
    status = response.status_code
    body = _body(response)
    code = body.get("error_code") if isinstance(body, dict) else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if status < 400 and code is None:
        return None
    message = ""
    if isinstance(body, dict):
        for key in ("error_message", "message", "error", "detail"):
            if isinstance(body.get(key), str):
                message = body[key]
                break
    message = redact(message or response.reason_phrase or "error")
    text = f"HTTP {status}" + (f" ({code})" if code else "") + f": {message}"
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        details = [
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
            for item in body["detail"]
            if isinstance(item, dict)
        ]
        if details:
            text += " - " + "; ".join(details)
    kwargs: dict[str, Any] = {"status": status, "code": code}
    if status in (401, 403) or code in AUTH_CODES:
        return AuthError(text, **kwargs)
    if status == 402 or code in BALANCE_CODES:
        return InsufficientBalance(text, **kwargs)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimited(text, retry_after=retry_after, **kwargs)
    if status >= 500 or status == 408 or (status < 400 and code is not None and code >= 500000):
        if submit:
            return AmbiguousSubmission(text + " (the job may have been created)", **kwargs)
        return TransientError(text, **kwargs)
    if code == 404001 or (status == 404 and not submit):
        return RequestNotFound(text, **kwargs)
    if submit and (code == 400001 or status == 404):
        # The only identifier a submit carries is its model id (the CLI's "model not found").
        return UnknownModel(text, **kwargs)
    return PermanentError(text, **kwargs)


class RunComfyClient:
    """Async client for one account. Use as ``async with RunComfyClient(...) as api:``."""

    def __init__(
        self,
        base_url: str = DEFAULT_API_BASE,
        *,
        token: str,
        timeout: httpx.Timeout | None = None,
        submit_timeout: httpx.Timeout | None = None,
        max_connections: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        register_secret(token)  # masked in every reply and every output from now on
        self.base_url = base_url.rstrip("/")
        self.submit_timeout = submit_timeout or httpx.Timeout(90.0, connect=10.0, pool=30.0)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"runcomfy-orchestrator/{__version__}",
            },
            timeout=timeout or default_timeout(),
            follow_redirects=False,
            # Every reply body is capped while it streams in (api/limits.py).
            transport=LimitedTransport(
                transport
                or httpx.AsyncHTTPTransport(
                    limits=httpx.Limits(
                        max_connections=max_connections,
                        max_keepalive_connections=max_connections,
                    ),
                    trust_env=False,
                )
            ),
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"RunComfyClient(base_url={self.base_url!r}, token=<hidden>)"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- routes --------------------------------------------------------------------------

    async def submit(self, model_id: str, body: Mapping[str, Any]) -> Submitted:
        """POST one job. Raises AmbiguousSubmission when it may have been created anyway."""
        if not MODEL_ID.match(model_id):
            raise PermanentError(f"invalid model id {model_id!r}")
        try:
            response = await self._http.post(
                f"/v1/models/{model_id}", json=body, timeout=self.submit_timeout
            )
        except NOT_SENT as exc:
            raise TransientError(f"could not connect: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise AmbiguousSubmission(
                f"no complete reply to the submit ({type(exc).__name__}); "
                "the job may have been created"
            ) from exc
        error = error_from_reply(response, submit=True)
        if error is not None:
            raise error
        body_out = _body(response)
        request_id = body_out.get("request_id") if isinstance(body_out, dict) else None
        if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
            raise AmbiguousSubmission(
                f"HTTP {response.status_code} reply without a valid request_id; "
                "the job may have been created",
                status=response.status_code,
            )
        return Submitted(
            request_id=request_id,
            status_url=body_out.get("status_url"),
            result_url=body_out.get("result_url"),
            cancel_url=body_out.get("cancel_url"),
        )

    async def status(self, request_id: str) -> RemoteStatus:
        body = await self._get(f"/v1/requests/{_rid(request_id)}/status")
        return RemoteStatus.parse(same_request(body, request_id, "status"))

    async def result(self, request_id: str, *, include_cost: bool = False) -> RemoteResult:
        params = {"include_cost": "true"} if include_cost else None
        path = f"/v1/requests/{_rid(request_id)}/result"
        return RemoteResult.parse(
            same_request(await self._get(path, params=params), request_id, "result")
        )

    async def cancel(self, request_id: str) -> CancelReply:
        """Ask RunComfy to cancel; only queued jobs can be (running ones keep billing)."""
        try:
            response = await self._http.post(f"/v1/requests/{_rid(request_id)}/cancel")
        except httpx.HTTPError as exc:
            raise TransientError(f"cancel failed: {type(exc).__name__}") from exc
        error = error_from_reply(response, submit=False)
        if error is not None:
            raise error
        body = _body(response)
        if not isinstance(body, dict):  # an empty or odd reply is no confirmation
            body = {}
        same_request(body, request_id, "cancel")  # another job's "cancelled" is not ours
        return CancelReply(
            outcome=str(body.get("outcome") or ""), status=_lower(body.get("status"))
        )

    async def model_info(self, model_id: str) -> ModelInfo:
        if not MODEL_ID.match(model_id):
            raise PermanentError(f"invalid model id {model_id!r}")
        try:
            body = await self._get(f"/v1/models/{model_id}")
        except PermanentError as exc:
            # A 404 (or 400001, an invalid id) here means the model, not a request.
            if exc.status == 404 or exc.code == 400001:
                raise UnknownModel(exc.message, status=exc.status, code=exc.code) from exc
            raise
        return ModelInfo.parse(body, model_id)

    async def list_models(
        self,
        *,
        search: str | None = None,
        category: str | None = "image-to-video",
        include_schema: bool = False,
        page_size: int = 100,
        at_most: int = 5000,
    ) -> list[ModelInfo]:
        """The API's catalog (``GET /v1/models``), page by page, at most ``at_most``
        entries however large the ``total`` a server claims."""
        found: list[ModelInfo] = []
        while len(found) < at_most:
            params = {"limit": str(page_size), "offset": str(len(found))}
            params |= {"include_schema": "true" if include_schema else "false"}
            if search:
                params["search"] = search
            if category:
                params["category"] = category
            body = await self._get("/v1/models", params)
            entries = body.get("models")
            if not isinstance(entries, list) or not entries:
                break
            found.extend(ModelInfo.parse(e) for e in entries if isinstance(e, Mapping))
            total = body.get("total")
            if not isinstance(total, int) or len(found) >= total or len(entries) < page_size:
                break
        return found[:at_most]

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise TransientError(f"GET {path} failed: {type(exc).__name__}") from exc
        error = error_from_reply(response, submit=False)
        if error is not None:
            raise error
        body = _body(response)
        if not isinstance(body, dict):
            raise TransientError(f"GET {path}: HTTP {response.status_code} reply is not JSON")
        return body


def same_request(body: dict[str, Any], asked: str, route: str) -> dict[str, Any]:
    """``body``, unless it names a request id other than ``asked``: then WrongRequest.

    A reply without the field (or with ``null``) is taken as meant for ``asked``; any other
    value must equal it exactly.

    >>> same_request({"request_id": "a", "status": "completed"}, "a", "result")["status"]
    'completed'
    >>> same_request({"request_id": "b"}, "a", "result")
    Traceback (most recent call last):
    ...
    orchestrator.api.errors.WrongRequest: the result reply for request a names request 'b'
    """
    answered = body.get("request_id")
    if answered is None or answered == asked:
        return body
    named = shown_reply(answered, SHOWN_ID_CHARS)
    raise WrongRequest(
        f"the {route} reply for request {asked} names request {named}",
        asked=asked,
        answered=named,
        route=route,
    )


def _rid(request_id: str) -> str:
    if not REQUEST_ID.match(request_id):
        raise PermanentError(f"invalid request id {request_id!r}")
    return request_id


def _lower(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None
