"""The RunComfy client over httpx.MockTransport: every reply kind lands in one error class."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from model_ids import PRO

from orchestrator.api import (
    AmbiguousSubmission,
    AuthError,
    InsufficientBalance,
    PermanentError,
    RateLimited,
    RequestNotFound,
    RunComfyClient,
    RunComfyError,
    TransientError,
    UnknownModel,
)
from orchestrator.api.client import default_timeout, error_from_reply, parse_retry_after
from orchestrator.api.responses import RemoteResult, RemoteStatus, find_video_url

BASE = "https://model-api.runcomfy.test"
TOKEN = "tok-very-secret-123"
RID = "3f1c2b9e-aaaa-bbbb-cccc-000000000001"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A MockTransport handler answering with a fixed reply (or raising) and recording."""

    def __init__(self, reply: httpx.Response | Exception | Handler) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.reply, Exception):
            raise self.reply
        if isinstance(self.reply, httpx.Response):
            return self.reply
        return self.reply(request)


def client_for(recorder: Recorder) -> RunComfyClient:
    return RunComfyClient(BASE + "/", token=TOKEN, transport=httpx.MockTransport(recorder))


async def submit_with(reply: httpx.Response | Exception) -> tuple[Any, Recorder]:
    """Submit once; returns (the Submitted or the raised error, the recorder)."""
    recorder = Recorder(reply)
    async with client_for(recorder) as api:
        try:
            return await api.submit(PRO, {"prompt": "hi"}), recorder
        except RunComfyError as exc:
            return exc, recorder


async def status_with(reply: httpx.Response | Exception) -> Any:
    recorder = Recorder(reply)
    async with client_for(recorder) as api:
        try:
            return await api.status(RID)
        except RunComfyError as exc:
            return exc


def error(status: int, code: int | None = None, message: str = "nope", **extra: Any) -> Any:
    body: dict[str, Any] = {"error_code": code, "error_message": message, "detail": None}
    body.update(extra)
    return httpx.Response(status, json=body)


# -- submit: success and ambiguity -----------------------------------------------------------


@pytest.mark.anyio
async def test_submit_sends_the_body_to_the_model_path_with_the_bearer_token() -> None:
    reply = httpx.Response(
        200,
        json={
            "request_id": RID,
            "status_url": f"{BASE}/v1/requests/{RID}/status",
            "result_url": f"{BASE}/v1/requests/{RID}/result",
            "cancel_url": f"{BASE}/v1/requests/{RID}/cancel",
        },
    )
    submitted, recorder = await submit_with(reply)
    assert submitted.request_id == RID
    assert submitted.result_url == f"{BASE}/v1/requests/{RID}/result"
    assert submitted.cancel_url.endswith("/cancel")
    assert submitted.status_url.endswith("/status")
    (request,) = recorder.requests
    assert request.method == "POST"
    # The model id travels raw, slashes and all.
    assert request.url.raw_path.decode() == f"/v1/models/{PRO}"
    assert json.loads(request.content) == {"prompt": "hi"}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("runcomfy-orchestrator/")


@pytest.mark.anyio
async def test_a_202_with_a_request_id_is_accepted_too() -> None:
    submitted, _ = await submit_with(httpx.Response(202, json={"request_id": "req_1-x"}))
    assert submitted.request_id == "req_1-x"
    assert submitted.result_url is None


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json={"status": "in_queue"}),
        httpx.Response(200, json={"request_id": ""}),
        httpx.Response(200, json={"request_id": 12345}),
        httpx.Response(200, json={"request_id": "../../etc/passwd"}),
        httpx.Response(200, json=[{"request_id": RID}]),
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, content=b"\xff\xfe\x00garbled"),
        httpx.Response(201, text=""),
    ],
    ids=["no-id", "empty-id", "number-id", "bad-id", "list", "html", "garbled", "empty"],
)
@pytest.mark.anyio
async def test_a_2xx_without_a_valid_request_id_is_ambiguous(reply: httpx.Response) -> None:
    raised, recorder = await submit_with(reply)
    assert type(raised) is AmbiguousSubmission
    assert "may have been created" in raised.message
    assert raised.status == reply.status_code
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
@pytest.mark.anyio
async def test_5xx_or_408_on_submit_is_ambiguous_but_transient_on_a_get(status: int) -> None:
    raised, _ = await submit_with(error(status, 500001, "Internal Error"))
    assert type(raised) is AmbiguousSubmission
    assert raised.status == status
    assert raised.code == 500001
    assert "the job may have been created" in str(raised)
    on_get = await status_with(error(status, 500001, "Internal Error"))
    assert type(on_get) is TransientError
    assert on_get.status == status


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), TransientError),
        (httpx.ConnectTimeout("slow handshake"), TransientError),
        (httpx.PoolTimeout("pool full"), TransientError),
        (httpx.ReadTimeout("no reply"), AmbiguousSubmission),
        (httpx.WriteTimeout("stuck"), AmbiguousSubmission),
        (httpx.RemoteProtocolError("peer closed"), AmbiguousSubmission),
        (httpx.ReadError("reset"), AmbiguousSubmission),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
@pytest.mark.anyio
async def test_network_errors_on_submit_split_into_never_sent_and_maybe_sent(
    exc: Exception, kind: type[RunComfyError]
) -> None:
    raised, recorder = await submit_with(exc)
    assert type(raised) is kind
    assert isinstance(raised.__cause__, httpx.HTTPError)
    assert len(recorder.requests) == 1  # tried exactly once: the client never retries a POST


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("no reply"),
        httpx.RemoteProtocolError("peer closed"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.anyio
async def test_network_errors_on_a_get_are_transient(exc: Exception) -> None:
    raised = await status_with(exc)
    assert type(raised) is TransientError
    assert type(exc).__name__ in str(raised)


# -- the error hierarchy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, 401001), (403, 403003), (401, None), (403, None), (400, 400004), (400, 403001)],
)
@pytest.mark.anyio
async def test_auth_failures_raise_auth_error_on_every_route(status: int, code: int | None) -> None:
    raised, _ = await submit_with(error(status, code, "Unauthorized"))
    assert type(raised) is AuthError
    assert (raised.status, raised.code) == (status, code)
    assert type(await status_with(error(status, code))) is AuthError


@pytest.mark.parametrize(("status", "code"), [(402, None), (400, 400002), (400, 10001)])
@pytest.mark.anyio
async def test_insufficient_balance(status: int, code: int | None) -> None:
    raised, _ = await submit_with(error(status, code, "no balance"))
    assert type(raised) is InsufficientBalance
    assert "no balance" in str(raised)


@pytest.mark.anyio
async def test_429_with_retry_after_seconds_is_rate_limited_not_ambiguous() -> None:
    reply = error(429, 429001, "Too Many Requests")
    reply.headers["Retry-After"] = "7"
    raised, _ = await submit_with(reply)
    assert type(raised) is RateLimited
    assert isinstance(raised, TransientError)
    assert raised.retry_after == 7.0
    assert raised.status == 429


@pytest.mark.anyio
async def test_429_with_an_http_date_waits_until_then() -> None:
    reply = httpx.Response(429, headers={"Retry-After": email.utils.formatdate(time.time() + 120)})
    raised, _ = await submit_with(reply)
    assert type(raised) is RateLimited
    assert 110 <= raised.retry_after <= 121


@pytest.mark.parametrize("header", [None, "soon", ""])
@pytest.mark.anyio
async def test_429_without_a_usable_retry_after(header: str | None) -> None:
    reply = httpx.Response(429, json={"error_code": 429001, "message": "slow down"})
    if header is not None:
        reply.headers["Retry-After"] = header
    raised = await status_with(reply)
    assert type(raised) is RateLimited
    assert raised.retry_after is None
    assert "slow down" in str(raised)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("later") is None
    moment = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(moment, now=1445412470.0) == 10.0
    assert parse_retry_after(moment, now=1445412490.0) == 0.0  # already past: no wait


@pytest.mark.anyio
async def test_404001_on_a_get_is_request_not_found() -> None:
    raised = await status_with(error(404, 404001, "request not found"))
    assert type(raised) is RequestNotFound
    assert isinstance(raised, PermanentError)
    assert raised.code == 404001
    assert "request not found" in str(raised)
    # A bare 404 on a GET is the same; on a submit it is an unknown model, not a lost request.
    assert type(await status_with(httpx.Response(404))) is RequestNotFound
    raised, _ = await submit_with(httpx.Response(404, json={"message": "model not found"}))
    assert type(raised) is UnknownModel
    assert isinstance(raised, PermanentError)
    assert "model not found" in str(raised)


@pytest.mark.anyio
async def test_422_is_permanent_with_the_detail_text() -> None:
    detail = [
        {"loc": ["body", "first_frame_image_url"], "msg": "not a valid URL", "type": "x"},
        {"loc": ["body", "ratio"], "msg": "unexpected value", "type": "y"},
        "not a dict",
    ]
    raised, _ = await submit_with(error(422, 422001, "Validation Error", detail=detail))
    assert type(raised) is PermanentError
    text = str(raised)
    assert text.startswith("HTTP 422 (422001): Validation Error")
    assert "first_frame_image_url: not a valid URL" in text
    assert "ratio: unexpected value" in text


@pytest.mark.anyio
async def test_400_is_permanent_and_the_message_falls_back_to_the_reason() -> None:
    raised, _ = await submit_with(httpx.Response(400, json={"detail": "bad ratio"}))
    assert type(raised) is PermanentError
    assert str(raised) == "HTTP 400: bad ratio"
    raised, _ = await submit_with(httpx.Response(400, json={"error_code": 400001}))
    assert type(raised) is UnknownModel  # a submit's only identifier is its model id
    assert str(raised) == "HTTP 400 (400001): Bad Request"
    raised, _ = await submit_with(httpx.Response(400, json={"detail": []}))
    assert str(raised) == "HTTP 400: Bad Request"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"error_code": 400002, "error_message": "broke"}, InsufficientBalance),
        ({"error_code": 401001, "error_message": "who?"}, AuthError),
        ({"error_code": 422001, "error_message": "Validation Error"}, PermanentError),
        ({"error_code": 500001, "error_message": "Internal Error"}, AmbiguousSubmission),
    ],
)
@pytest.mark.anyio
async def test_a_200_carrying_an_error_code_is_an_error(
    body: dict[str, Any], kind: type[RunComfyError]
) -> None:
    raised, _ = await submit_with(httpx.Response(200, json={**body, "request_id": RID}))
    assert type(raised) is kind
    assert raised.status == 200
    assert raised.code == body["error_code"]


@pytest.mark.anyio
async def test_a_200_error_code_on_a_get() -> None:
    assert type(await status_with(httpx.Response(200, json={"error_code": 404001}))) is (
        RequestNotFound
    )
    assert type(await status_with(httpx.Response(200, json={"error_code": 500001}))) is (
        TransientError
    )


def test_a_null_or_boolean_error_code_is_not_an_error() -> None:
    request = httpx.Request("GET", BASE)
    ok = httpx.Response(200, json={"error_code": None, "status": "ok"}, request=request)
    assert error_from_reply(ok, submit=True) is None
    flag = httpx.Response(200, json={"error_code": True}, request=request)
    assert error_from_reply(flag, submit=False) is None


# -- refused before any request ------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id", ["", "../admin", "a//b", "/leading", "trailing/", "sp ace", "x?y=1", "-dash"]
)
@pytest.mark.anyio
async def test_an_invalid_model_id_is_refused_before_any_request(model_id: str) -> None:
    recorder = Recorder(httpx.Response(200, json={"request_id": RID}))
    async with client_for(recorder) as api:
        with pytest.raises(PermanentError, match="invalid model id"):
            await api.submit(model_id, {"prompt": "x"})
        with pytest.raises(PermanentError, match="invalid model id"):
            await api.model_info(model_id)
    assert recorder.requests == []


@pytest.mark.parametrize("request_id", ["", "../x", "a/b", "a" * 129, "id with space", "ü"])
@pytest.mark.anyio
async def test_an_invalid_request_id_is_refused_before_any_request(request_id: str) -> None:
    recorder = Recorder(httpx.Response(200, json={"status": "completed"}))
    async with client_for(recorder) as api:
        for call in (api.status, api.result, api.cancel):
            with pytest.raises(PermanentError, match="invalid request id"):
                await call(request_id)
    assert recorder.requests == []


def test_the_repr_hides_the_token() -> None:
    client = RunComfyClient(BASE, token=TOKEN, transport=httpx.MockTransport(Recorder(Exception())))
    try:
        assert TOKEN not in repr(client)
        assert repr(client) == f"RunComfyClient(base_url={BASE!r}, token=<hidden>)"
    finally:
        anyio.run(client.aclose)


def test_default_timeouts() -> None:
    timeout = default_timeout()
    assert (timeout.connect, timeout.read, timeout.pool) == (10.0, 30.0, 30.0)


# -- status and result -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_status_parsing_and_the_request_path() -> None:
    recorder = Recorder(
        httpx.Response(200, json={"request_id": RID, "status": "IN_QUEUE", "queue_position": 3})
    )
    async with client_for(recorder) as api:
        status = await api.status(RID)
    assert (status.status, status.queue_position, status.terminal) == ("in_queue", 3, False)
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == f"/v1/requests/{RID}/status"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert RemoteStatus.parse({"status": "Canceled"}).terminal
    assert RemoteStatus.parse({"status": "failed", "queue_position": "3"}).queue_position is None
    assert RemoteStatus.parse({}).status == "unknown"


@pytest.mark.anyio
async def test_a_get_whose_reply_is_not_a_json_object_is_transient() -> None:
    for reply in (httpx.Response(200, text="<html>"), httpx.Response(200, json=["a"])):
        raised = await status_with(reply)
        assert type(raised) is TransientError
        assert "not JSON" in str(raised)


@pytest.mark.anyio
async def test_result_asks_for_the_cost_and_parses_video_and_cost() -> None:
    body = {
        "request_id": RID,
        "status": "Completed",
        "output": {"video": "https://files.runcomfy.net/a/output.mp4"},
        "cost": 0.75,
        "created_at": "2025-10-01T12:00:00+00:00",
        "finished_at": "2025-10-01T12:01:31+00:00",
    }
    recorder = Recorder(httpx.Response(200, json=body))
    async with client_for(recorder) as api:
        result = await api.result(RID, include_cost=True)
        plain = await api.result(RID)
    assert result.succeeded
    assert result.terminal
    assert result.video_url == "https://files.runcomfy.net/a/output.mp4"
    assert result.cost == 0.75
    assert result.error is None
    assert result.created_at == "2025-10-01T12:00:00+00:00"
    assert result.finished_at == "2025-10-01T12:01:31+00:00"
    assert plain == result
    first, second = recorder.requests
    assert first.url.path == f"/v1/requests/{RID}/result"
    assert first.url.params["include_cost"] == "true"
    assert "include_cost" not in second.url.params


@pytest.mark.parametrize(
    ("output", "url"),
    [
        ({"video": "https://x/v.mp4"}, "https://x/v.mp4"),
        ({"videos": ["https://x/first.mp4", "https://x/second.mp4"]}, "https://x/first.mp4"),
        ({"result": {"media": [{"url": "https://x/deep.mp4"}]}}, "https://x/deep.mp4"),
        ({"thumbnail": "https://x/t.png", "clip": {"url": "https://x/c.mp4"}}, "https://x/c.mp4"),
        ({"images": ["https://x/i.png"], "video": {"path": "https://x/p.mp4"}}, "https://x/p.mp4"),
        ({"videos": [{"url": "https://x/obj.mp4"}]}, "https://x/obj.mp4"),
        ({"video": "not a url", "other": "http://127.0.0.1/v.mp4"}, "http://127.0.0.1/v.mp4"),
        ("https://x/bare.mp4", "https://x/bare.mp4"),
        ("ftp://x/bare.mp4", None),
        ({"image": "https://x/only-an-image.png"}, None),
        ({"seconds": 5, "frames": [1, 2]}, None),
        ({}, None),
        (None, None),
    ],
)
def test_tolerant_video_url_search(output: Any, url: str | None) -> None:
    assert find_video_url(output) == url
    result = RemoteResult.parse({"status": "succeeded", "output": output})
    assert result.video_url == url
    assert result.succeeded is (url is not None)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        ("model crashed", "model crashed"),
        ({"code": "generation_failed", "message": "no video"}, "no video"),
        ({"error_message": "from error_message"}, "from error_message"),
        ({"detail": "from detail"}, "from detail"),
        ([{"errorCode": 1, "error": "first"}, {"message": "second"}], "first; second"),
        ({"code": 7}, "{'code': 7}"),
        (42, "42"),
        (None, None),
        ("", None),
        ({}, None),
        ([], None),
    ],
)
def test_remote_error_as_string_object_or_list(error: Any, text: str | None) -> None:
    result = RemoteResult.parse({"status": "failed", "error": error})
    assert result.error == text
    assert result.terminal
    assert not result.succeeded


def test_result_states_and_cost_values() -> None:
    assert not RemoteResult.parse({"status": "completed", "output": {}}).succeeded
    assert RemoteResult.parse({"status": "completed"}).terminal
    running = RemoteResult.parse({"status": "in_progress"})
    assert not running.terminal
    assert not running.succeeded
    assert RemoteResult.parse({}).status == "unknown"
    assert RemoteResult.parse({"status": "failed", "cost": 2}).cost == 2.0
    assert RemoteResult.parse({"status": "failed", "cost": True}).cost is None
    assert RemoteResult.parse({"status": "failed", "cost": "0.5"}).cost is None
    assert RemoteResult.parse({"status": "x", "created_at": ""}).created_at is None


# -- cancel and model info -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "outcome", "status", "cancelled"),
    [
        ({"outcome": "cancelled", "status": "cancelled"}, "cancelled", "cancelled", True),
        (
            {"outcome": "not_cancellable", "status": "In_Progress"},
            "not_cancellable",
            "in_progress",
            False,
        ),
        ({"status": "canceled"}, "", "canceled", True),
        (
            {"outcome": "not_cancellable", "status": "completed"},
            "not_cancellable",
            "completed",
            False,
        ),
        ({}, "", None, False),
        (["unexpected"], "", None, False),
    ],
)
@pytest.mark.anyio
async def test_cancel_reply_parsing(
    body: Any, outcome: str, status: str | None, cancelled: bool
) -> None:
    recorder = Recorder(httpx.Response(200, json=body))
    async with client_for(recorder) as api:
        reply = await api.cancel(RID)
    assert (reply.outcome, reply.status, reply.cancelled) == (outcome, status, cancelled)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.path == f"/v1/requests/{RID}/cancel"
    assert request.content == b""


@pytest.mark.anyio
async def test_cancel_failures_are_classified() -> None:
    for reply, kind in (
        (httpx.ConnectError("refused"), TransientError),
        (httpx.ReadTimeout("slow"), TransientError),
        (error(404, 404001, "gone"), RequestNotFound),
        (error(401, 401001), AuthError),
    ):
        async with client_for(Recorder(reply)) as api:
            with pytest.raises(kind):
                await api.cancel(RID)


@pytest.mark.anyio
async def test_model_info() -> None:
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}}}
    recorder = Recorder(
        httpx.Response(
            200,
            json={
                "model_id": PRO,
                "base_price_usd": 0.12,
                "price_unit": "Second",
                "input_schema": schema,
            },
        )
    )
    async with client_for(recorder) as api:
        info = await api.model_info(PRO)
    assert (info.model_id, info.base_price_usd, info.price_unit) == (PRO, 0.12, "second")
    assert info.input_schema == schema
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.raw_path.decode() == f"/v1/models/{PRO}"

    async with client_for(Recorder(httpx.Response(200, json={"base_price_usd": "free"}))) as api:
        bare = await api.model_info(PRO)
    assert (bare.model_id, bare.base_price_usd, bare.price_unit, bare.input_schema) == (
        PRO,
        None,
        None,
        None,
    )


@pytest.mark.anyio
async def test_the_client_closes_its_connections_on_exit() -> None:
    api = client_for(Recorder(httpx.Response(200, json={"status": "in_queue"})))
    async with api:
        await api.status(RID)
    assert api._http.is_closed
