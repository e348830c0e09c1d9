"""The simulated RunComfy Model API as an ASGI app (Starlette).

Two host names share one server: API routes answer only on the API host (``127.0.0.1``),
videos only on the file host (``localhost``), as on the real service where outputs live
on a storage host that must never see the API token.

API host::

    POST /v1/models/{model_id}           submit (model ids contain slashes and dots)
    GET  /v1/models/{model_id}           catalog entry with base_price_usd, input_schema
    GET  /v1/requests/{id}/status        in_queue (queue_position) / in_progress / completed ...
    GET  /v1/requests/{id}/result        current state, or output when completed
    POST /v1/requests/{id}/cancel        outcome: cancelled | not_cancellable
    GET  /_sim/ledger                    the simulator's ledger (no real API has this)

File host::

    GET  /files/{id}/{version}/output.mp4?expires=..&sig=..
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.simulator.state import ApiError, Simulator

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
    """The ASGI app for one :class:`Simulator`."""
    faults = sim.profile.faults

    async def guarded(
        route: str,
        request: Request,
        identity: str,
        action: Callable[[], tuple[int, dict[str, Any]]],
    ) -> Response:
        """Run one API action with auth, error bodies and the profile's HTTP faults."""
        sim.ledger.call(route)
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
            model = sim.model(model_id)
            return 200, {
                "model_id": model.model_id,
                "display_name": model.display_name,
                "categories": list(model.raw.get("categories", ["image-to-video"])),
                "kind": "model",
                "base_price_usd": sim.profile.price_for(model_id),
                "price_unit": "second",
                "pricing_note": "simulated price, USD per second of video",
                "input_schema": model.raw.get("input_schema"),
                "model_url": f"{sim.api_base}/v1/models/{model_id}",
            }

        return await guarded("model", request, model_id, action)

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

    api = Starlette(
        routes=[
            Route("/v1/models/{model_id:path}", submit, methods=["POST"]),
            Route("/v1/models/{model_id:path}", model_entry, methods=["GET"]),
            Route("/v1/requests/{request_id}/status", status, methods=["GET"]),
            Route("/v1/requests/{request_id}/result", result, methods=["GET"]),
            Route("/v1/requests/{request_id}/cancel", cancel, methods=["POST"]),
            Route("/_sim/ledger", ledger, methods=["GET"]),
            Route("/_sim/health", health, methods=["GET"]),
        ]
    )
    files = Starlette(
        routes=[Route("/files/{request_id}/{version}/output.mp4", download, methods=["GET"])]
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _host_name(scope)
            if host == file_host:
                await files(scope, receive, send)
                return
            if host != api_host:
                response = Response(f"unknown host {host!r}", status_code=404)
                await response(scope, receive, send)
                return
        await api(scope, receive, send)

    return app


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
