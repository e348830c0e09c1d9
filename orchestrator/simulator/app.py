"""The simulated RunComfy Model API as ASGI apps (Starlette).

Two hosts, two listeners: API routes answer only on the API host (``127.0.0.1``), videos
only on the file host (``localhost``, on a port of its own), as on the real service where
outputs live on a storage host that must never see the API token. Each app answers 404 to
a request whose Host header names another host.

API host (:func:`build_api_app`)::

    POST /v1/models/{model_id}           submit (model ids contain slashes and dots)
    GET  /v1/models/{model_id}           catalog entry with base_price_usd, input_schema (404)
    GET  /v1/models?search=&category=&include_schema=&limit=&offset=   {models, total}
    GET  /v1/models/categories           {categories}
    GET  /v1/requests/{id}/status        in_queue (queue_position) / in_progress / completed ...
    GET  /v1/requests/{id}/result        current state, or output when completed
    POST /v1/requests/{id}/cancel        outcome: cancelled | not_cancellable
    GET  /_sim/ledger                    the simulator's ledger (no real API has this)
    POST /_sim/outage?kind=error|refuse&seconds=N   a file-host outage, now (simulated s)

File host (:func:`build_files_app`; during an outage every request meets it, see
:mod:`.outages`)::

    GET  /files/{id}/{version}/output.mp4?expires=..&sig=..
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.simulator.hostile import refuses_first_call
from orchestrator.simulator.listing import catalog_entry, categories, list_models
from orchestrator.simulator.profile import OUTAGE_KINDS
from orchestrator.simulator.state import ApiError, Simulator

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from orchestrator.simulator.outages import OutageWindow

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
PRE_FAULTS = ("rate_limit", "rate_limit_bare", "server_error")
POST_FAULTS = ("slow_reply", "connection_drop")
DROPPED = "ASGI callable returned without completing response."


class _HideInjectedDrops(logging.Filter):
    """uvicorn logs an error for every reply we cut on purpose; those are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != DROPPED


logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


class CutShort(Response):
    """A reply whose headers promise ``length`` bytes and whose body stops early."""

    def __init__(self, body: bytes, length: int, media_type: str) -> None:
        super().__init__(body, media_type=media_type)
        self.length = length
        self.cut_media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", self.cut_media_type.encode()),
                    (b"content-length", str(self.length).encode()),
                ],
            }
        )
        # The server refuses to finish a body shorter than promised: the connection just ends.
        with contextlib.suppress(RuntimeError):
            await send({"type": "http.response.body", "body": self.body, "more_body": False})


def build_app(
    sim: Simulator, *, api_host: str = "127.0.0.1", file_host: str = "localhost"
) -> ASGIApp:
    """Both hosts in one app, routed by Host header (in-process use; the server gives each
    host its own listener). A ``refuse`` outage has no listener to close here: the request
    is just left unanswered."""
    api = build_api_app(sim, api_host=api_host)
    files = build_files_app(sim, file_host=file_host)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _host_name(scope) == file_host:
            await files(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app


def build_api_app(
    sim: Simulator,
    *,
    api_host: str = "127.0.0.1",
    start_outage: Callable[[str, float], OutageWindow] | None = None,
) -> ASGIApp:
    """The API host's app; ``start_outage(kind, seconds)`` serves ``POST /_sim/outage``
    (default: open the window in the simulator's schedule only)."""
    faults = sim.profile.faults
    open_outage = start_outage or sim.outages.start

    async def guarded(
        route: str,
        request: Request,
        identity: str,
        action: Callable[[], tuple[int, dict[str, Any]]],
    ) -> Response:
        """Run one API action with auth, error bodies and the profile's HTTP faults."""
        sim.ledger.call(route)
        if refuses_first_call(sim, route, identity):  # see .hostile
            sim.ledger.reply(route, 429)
            return error_response(
                ApiError(429, 429001, "Too Many Requests"),
                headers={"Retry-After": str(faults.retry_after_huge_seconds)},
            )
        chances = {name: getattr(faults, name) for name in PRE_FAULTS + POST_FAULTS}
        if route == "submit":
            chances["submit_accepted_then_error"] = faults.submit_accepted_then_error
        fault = (
            sim.faults.pick(f"http:{route}", identity, chances) if any(chances.values()) else None
        )
        if fault in PRE_FAULTS:
            sim.ledger.fault(fault)
            refused = _pre_fault_response(fault, route, identity, sim)
            sim.ledger.reply(route, refused.status_code)
            return refused
        response: Response
        try:
            status, body = action()
            response = JSONResponse(body, status_code=status)
        except ApiError as error:
            response = error_response(error)
            fault = None  # a rejected request has nothing to lose
        if fault == "submit_accepted_then_error":
            sim.ledger.fault(fault)
            response = error_response(ApiError(500, 500001, "Internal Error"))
        elif fault == "slow_reply":
            sim.ledger.fault(fault)
            await anyio.sleep(faults.slow_seconds)
        elif fault == "connection_drop":
            sim.ledger.fault(fault)
            sim.ledger.reply(route, 0)
            raw = response.body
            return CutShort(bytes(raw[: len(raw) // 2]), len(raw), "application/json")
        sim.ledger.reply(route, response.status_code)
        return response

    async def submit(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            raw = await request.body()
        except ClientDisconnect:  # the client died mid-upload (kill -9 tests): no job
            return Response(status_code=499)
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        identity = f"{model_id}|{raw.decode('utf-8', 'replace')[:4096]}"

        def action() -> tuple[int, dict[str, Any]]:
            owner = sim.owner_of(request.headers.get("authorization"))
            job = sim.submit(owner, model_id, body)
            return sim.profile.submit_status, {
                "request_id": job.request_id,
                "status_url": sim.url(job.request_id, "status"),
                "result_url": sim.url(job.request_id, "result"),
                "cancel_url": sim.url(job.request_id, "cancel"),
            }

        return await guarded("submit", request, identity, action)

    async def model_entry(request: Request) -> Response:
        model_id = request.path_params["model_id"]

        def action() -> tuple[int, dict[str, Any]]:
            sim.owner_of(request.headers.get("authorization"))
            return 200, catalog_entry(sim, sim.described(model_id))

        return await guarded("model", request, model_id, action)

    async def model_list(request: Request) -> Response:
        def action() -> tuple[int, dict[str, Any]]:
            sim.owner_of(request.headers.get("authorization"))
            return 200, list_models(sim, dict(request.query_params))

        return await guarded("models", request, str(request.url.query), action)

    async def model_categories(request: Request) -> Response:
        def action() -> tuple[int, dict[str, Any]]:
            sim.owner_of(request.headers.get("authorization"))
            return 200, categories(sim)

        return await guarded("categories", request, "", action)

    def request_route(
        route: str, answer: Callable[[str, str, Request], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            request_id = request.path_params["request_id"]

            def action() -> tuple[int, dict[str, Any]]:
                owner = sim.owner_of(request.headers.get("authorization"))
                if not REQUEST_ID.match(request_id):
                    raise ApiError(404, 404001, f"request {request_id} not found")
                return 200, answer(owner, request_id, request)

            return await guarded(route, request, request_id, action)

        return endpoint

    status = request_route("status", lambda owner, rid, _r: sim.status(owner, rid))
    result = request_route(
        "result",
        lambda owner, rid, r: sim.result(
            owner, rid, r.query_params.get("include_cost", "").lower() in ("1", "true", "yes")
        ),
    )
    cancel = request_route("cancel", lambda owner, rid, _r: sim.cancel(owner, rid))

    async def ledger(_request: Request) -> Response:
        return JSONResponse(sim.snapshot())

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "profile": sim.profile.name})

    async def outage(request: Request) -> Response:
        kind = request.query_params.get("kind", "error")
        try:
            seconds = float(request.query_params.get("seconds", ""))
        except ValueError:
            seconds = math.nan
        if kind not in OUTAGE_KINDS or not (math.isfinite(seconds) and seconds > 0):
            detail = f"kind must be one of {', '.join(OUTAGE_KINDS)}; seconds a number > 0"
            return error_response(ApiError(400, 400001, "Bad outage request", detail))
        window = await anyio.to_thread.run_sync(open_outage, kind, seconds)
        return JSONResponse(window.as_dict())

    api = Starlette(
        routes=[
            Route("/v1/models", model_list, methods=["GET"]),
            Route("/v1/models/categories", model_categories, methods=["GET"]),
            Route("/v1/models/{model_id:path}", submit, methods=["POST"]),
            Route("/v1/models/{model_id:path}", model_entry, methods=["GET"]),
            Route("/v1/requests/{request_id}/status", status, methods=["GET"]),
            Route("/v1/requests/{request_id}/result", result, methods=["GET"]),
            Route("/v1/requests/{request_id}/cancel", cancel, methods=["POST"]),
            Route("/_sim/ledger", ledger, methods=["GET"]),
            Route("/_sim/health", health, methods=["GET"]),
            Route("/_sim/outage", outage, methods=["POST"]),
        ]
    )
    return _only_for(api_host, api)


def build_files_app(
    sim: Simulator, *, file_host: str = "localhost", go_dark: Callable[[], None] | None = None
) -> ASGIApp:
    """The file host's app. During an outage every request meets it: ``error`` answers
    5xx, ``refuse`` calls ``go_dark()`` (which closes the listener and aborts every
    connection, this one included) and returns no reply."""
    faults = sim.profile.faults

    async def download(request: Request) -> Response:
        request_id = request.path_params["request_id"]
        sim.ledger.call("download")
        try:
            version = int(request.path_params["version"])
            expires = int(request.query_params.get("expires", "0"))
        except ValueError:
            version, expires = 0, 0
        signature = request.query_params.get("sig", "")
        served = await anyio.to_thread.run_sync(
            sim.download, request_id, version, expires, signature
        )
        headers = {key.lower(): value for key, value in request.headers.items()}
        host = headers.get("host", "")
        if served.status != 200:
            sim.ledger.downloaded(
                host=host, path=request.url.path, headers=headers, status=served.status, size=0
            )
            sim.ledger.reply("download", served.status)
            if "expired" in served.reason:
                sim.ledger.fault("expired_url")
            return Response(served.reason, status_code=served.status, media_type="text/plain")
        truncated = (
            sim.faults.draw("download", f"{request_id}|{version}") < faults.truncated_download
        )
        if truncated:
            sim.ledger.fault("truncated_download")
            cut = served.video[: len(served.video) // 3]
            sim.ledger.downloaded(
                host=host, path=request.url.path, headers=headers, status=200, size=len(cut)
            )
            sim.ledger.reply("download", 200)
            return CutShort(cut, len(served.video), "video/mp4")
        sim.ledger.downloaded(
            host=host, path=request.url.path, headers=headers, status=200, size=len(served.video)
        )
        sim.ledger.reply("download", 200)
        return Response(served.video, media_type="video/mp4")

    files = Starlette(
        routes=[Route("/files/{request_id}/{version}/output.mp4", download, methods=["GET"])]
    )

    async def down(window: OutageWindow, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        sim.ledger.call("download")
        if window.kind == "error":
            status = (500, 502, 503)[int(sim.faults.draw("file_outage", path) * 3)]
            sim.ledger.fault("file_outage_error")
            sim.ledger.downloaded(
                host=headers.get("host", ""), path=path, headers=headers, status=status, size=0
            )
            sim.ledger.reply("download", status)
            response = Response(
                "the file host is unavailable (simulated outage)\n",
                status_code=status,
                media_type="text/plain",
            )
            await response(scope, receive, send)
            return
        sim.ledger.fault("file_outage_refuse")
        sim.ledger.downloaded(
            host=headers.get("host", ""), path=path, headers=headers, status=0, size=0
        )
        sim.ledger.reply("download", 0)
        if go_dark is not None:
            go_dark()
        # Wait for the aborted connection to be noticed, so the server sends no reply.
        with anyio.move_on_after(1):
            while (await receive())["type"] != "http.disconnect":
                pass

    async def gated(scope: Scope, receive: Receive, send: Send) -> None:
        window = sim.outages.meet() if scope["type"] == "http" else None
        if window is None:
            await files(scope, receive, send)
        else:
            await down(window, scope, receive, send)

    return _only_for(file_host, gated)


def _only_for(host_name: str, app: ASGIApp) -> ASGIApp:
    """``app`` for requests whose Host header names ``host_name``; 404 for any other."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _host_name(scope)
            if host != host_name:
                response = Response(f"unknown host {host!r}", status_code=404)
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return routed


def _host_name(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"host":
            host = str(value.decode("latin-1"))
            if host.startswith("["):
                return host[: host.index("]") + 1]
            return host.rsplit(":", 1)[0] if ":" in host else host
    return ""


def _pre_fault_response(fault: str, route: str, identity: str, sim: Simulator) -> Response:
    if fault == "rate_limit":
        return error_response(
            ApiError(429, 429001, "Too Many Requests"),
            headers={"Retry-After": str(sim.profile.faults.retry_after_seconds)},
        )
    if fault == "rate_limit_bare":
        return error_response(ApiError(429, 429001, "Too Many Requests"))
    status = (500, 502, 503)[int(sim.faults.draw(f"5xx:{route}", identity) * 3)]
    return error_response(ApiError(status, 500001, "Internal Error"))
