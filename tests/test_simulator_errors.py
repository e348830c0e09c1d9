"""Every error the simulator answers, with the documented body (runcomfy-api.md §3)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY
from simulator_helpers import (
    AUTH,
    Sim,
    assert_error,
    data_uri,
    payload,
    running,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def shared() -> Iterator[Sim]:
    """One server for the checks that leave no state behind (rejections only)."""
    with running() as sim:
        yield sim


# -- 401 / 403 / 404 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "tok"}],
    ids=["none", "bare-bearer", "basic", "no-scheme"],
)
def test_missing_or_invalid_bearer_is_401(shared: Sim, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=shared.api_base, headers=headers) as anonymous:
        for method, path in [
            ("POST", f"/v1/models/{PRO}"),
            ("GET", f"/v1/models/{PRO}"),
            ("GET", "/v1/requests/abc/status"),
            ("GET", "/v1/requests/abc/result"),
            ("POST", "/v1/requests/abc/cancel"),
        ]:
            body = payload(PRO) if method == "POST" and "models" in path else None
            assert_error(anonymous.request(method, path, json=body), 401, 401001)
    assert shared.ledger()["submissions"] == {}


def test_a_server_with_a_token_rejects_every_other_token() -> None:
    with running(token="the-only-one") as sim:
        assert_error(sim.submit(PRO, payload(PRO)), 401, 401001)
        good = {"Authorization": "Bearer the-only-one"}
        accepted = sim.api.post(f"/v1/models/{PRO}", json=payload(PRO), headers=good)
        assert accepted.status_code == 200
        rid = accepted.json()["request_id"]
        assert_error(sim.api.get(f"/v1/requests/{rid}/status"), 401, 401001)
        assert sim.api.get(f"/v1/requests/{rid}/status", headers=good).status_code == 200


def test_another_accounts_request_is_403() -> None:
    with running() as sim:
        rid = sim.submit_ok(PRO)
        other = {"Authorization": "Bearer someone-else"}
        for method, route in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
            response = sim.api.request(method, f"/v1/requests/{rid}/{route}", headers=other)
            assert_error(response, 403, 403001)
        assert sim.status(rid)["status"] == "in_progress"  # the owner still sees it


@pytest.mark.parametrize(
    "request_id",
    ["3f1c2b9e-0000-4000-8000-000000000000", "not.a.valid.id", "x" * 129],
    ids=["unknown", "malformed", "too-long"],
)
def test_unknown_or_malformed_request_id_is_404(shared: Sim, request_id: str) -> None:
    for method, route in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
        response = shared.api.request(method, f"/v1/requests/{request_id}/{route}")
        assert_error(response, 404, 404001)


def test_records_expire_after_record_ttl() -> None:
    with running({"record_ttl": 30}) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10 + 30)  # finished at 10, kept until 40
        assert sim.status(rid)["status"] == "completed"
        sim.clock.advance(1)
        for method, route in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
            assert_error(sim.api.request(method, f"/v1/requests/{rid}/{route}"), 404, 404001)


# -- 400 / 422 -------------------------------------------------------------------------------


def test_unknown_model_is_400_on_submit_and_404_on_get(shared: Sim) -> None:
    assert_error(shared.submit("acme/no-such-model", payload(PRO)), 400, 400001)
    assert_error(shared.api.get("/v1/models/acme/no-such-model"), 404, 404001)


def _not_an_image() -> str:
    return "data:image/png;base64," + base64.b64encode(b"hello, not a picture").decode()


VALIDATION_CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    # (id, model, body, field, type)
    (
        "missing-required",
        PRO,
        {"first_frame_image_url": data_uri()},
        "prompt",
        "value_error",
    ),
    ("enum", LITE, payload(LITE, duration=7), "duration", "value_error"),
    ("max-length", LITE, payload(LITE, prompt="x" * 1901), "prompt", "value_error"),
    ("unknown-field", PRO, payload(PRO, camera_wobble=True), "camera_wobble", "value_error"),
    (
        "malformed-data-uri",
        PRO,
        payload(PRO, first_frame_image_url="data:image/png;base64,@@not base64@@"),
        "first_frame_image_url",
        "value_error.url",
    ),
    (
        "plain-http-url",
        RUNWAY,
        payload(RUNWAY, "http://images.example/frame.jpg"),
        "promptImage",
        "value_error.url",
    ),
    (
        "not-an-image",
        PRO,
        payload(PRO, _not_an_image()),
        "first_frame_image_url",
        "value_error.image",
    ),
    (
        "below-300px",
        LITE,
        payload(LITE, data_uri((200, 200))),
        "first_frame_image_url",
        "value_error.image",
    ),
    (
        "dreamina-two-images",
        DREAMINA,
        {"prompt": "x", "image_urls": [data_uri(), data_uri(fmt="JPEG")]},
        "image_urls",
        "value_error",
    ),
]


@pytest.mark.parametrize(
    ("model_id", "body", "field", "kind"),
    [case[1:] for case in VALIDATION_CASES],
    ids=[case[0] for case in VALIDATION_CASES],
)
def test_invalid_submissions_are_422_with_a_detail_array(
    shared: Sim, model_id: str, body: dict[str, Any], field: str, kind: str
) -> None:
    error = assert_error(shared.submit(model_id, body), 422, 422001)
    detail = error["detail"]
    assert isinstance(detail, list)
    assert detail
    for entry in detail:
        assert set(entry) == {"loc", "msg", "type"}
        assert entry["loc"][0] == "body"
        assert len(entry["loc"]) == 2
        assert isinstance(entry["msg"], str)
        assert entry["msg"]
    matching = [entry for entry in detail if entry["loc"] == ["body", field]]
    assert matching, detail
    assert matching[0]["type"] == kind
    assert shared.ledger()["submissions"] == {}


def test_image_rule_messages_come_from_the_schema(shared: Sim) -> None:
    error = assert_error(shared.submit(LITE, payload(LITE, data_uri((200, 200)))), 422, 422001)
    messages = {entry["msg"] for entry in error["detail"]}
    assert "The uploaded image width and height must not be less than 300 pixels." in messages


def test_a_body_that_is_not_a_json_object_is_422(shared: Sim) -> None:
    for content in (b"[1, 2]", b"{not json", b""):
        response = shared.api.post(
            f"/v1/models/{PRO}", content=content, headers={"Content-Type": "application/json"}
        )
        error = assert_error(response, 422, 422001)
        assert error["detail"][0]["loc"] == ["body"]


def test_rejected_submissions_are_counted_apart(shared: Sim) -> None:
    before = sum(shared.ledger()["rejected_submissions"].values())
    shared.submit(LITE, payload(LITE, duration=7))
    after = shared.ledger()["rejected_submissions"]
    assert sum(after.values()) == before + 1
    assert shared.ledger()["submissions"] == {}


# -- 402 -------------------------------------------------------------------------------------


def test_balance_runs_out_with_402_and_400002() -> None:
    with running({"balance_usd": 1.2, "prices": {"default": 0.1}}) as sim:
        assert sim.ledger()["balance_usd"] == pytest.approx(1.2)
        sim.submit_ok(PRO, payload(PRO, duration=5))  # 0.50
        assert sim.ledger()["balance_usd"] == pytest.approx(0.7)
        sim.submit_ok(LITE, payload(LITE, duration=5))  # 0.50
        assert sim.ledger()["balance_usd"] == pytest.approx(0.2)
        refused = sim.submit(PRO, payload(PRO, duration=5, prompt="one more"))
        assert_error(refused, 402, 400002)
        assert sim.ledger()["balance_usd"] == pytest.approx(0.2)  # nothing charged
        sim.submit_ok(PRO, payload(PRO, duration=2))  # a 0.20 job still fits
        ledger = sim.ledger()
        assert ledger["balance_usd"] == pytest.approx(0.0)
        assert sum(ledger["submissions"].values()) == 3
        assert sum(ledger["rejected_submissions"].values()) == 1
        assert sorted(job["cost"] for job in ledger["jobs"].values()) == pytest.approx(
            [0.2, 0.5, 0.5]
        )


def test_the_auth_header_value_is_checked_before_anything_else(shared: Sim) -> None:
    assert AUTH["Authorization"].startswith("Bearer ")
    with httpx.Client(base_url=shared.api_base) as anonymous:
        # Even an unknown model answers 401 first: nothing is disclosed without a token.
        assert_error(anonymous.post("/v1/models/acme/none", json={}), 401, 401001)
