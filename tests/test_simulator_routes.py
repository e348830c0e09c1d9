"""The simulator's routes and reply shapes over a real socket (runcomfy-api.md §1.1-1.5)."""

from __future__ import annotations

from datetime import datetime

import pytest
from model_ids import ALL, DREAMINA, LITE, PRO, V15
from simulator_helpers import host_of, payload, running


def test_submit_answers_request_id_and_absolute_urls_on_the_api_host() -> None:
    with running() as sim:
        response = sim.submit(PRO, payload(PRO))
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
        rid = body["request_id"]
        for what in ("status", "result", "cancel"):
            assert body[f"{what}_url"] == f"{sim.api_base}/v1/requests/{rid}/{what}"
        assert host_of(body["status_url"]) == "127.0.0.1"
        # The returned URLs are usable as they are.
        assert sim.api.get(body["status_url"]).json()["request_id"] == rid


def test_model_ids_with_slashes_and_dots_route_to_their_model() -> None:
    with running({"slots": 5}) as sim:
        for model_id in ALL:
            entry = sim.api.get(f"/v1/models/{model_id}")
            assert entry.status_code == 200
            assert entry.json()["model_id"] == model_id
            rid = sim.submit_ok(model_id)
            assert sim.server.simulator.jobs[rid].model_id == model_id
            assert sim.result(rid, include_cost=True)["model_id"] == model_id


def test_get_and_post_on_a_model_are_different_operations() -> None:
    with running({"prices": {"default": 0.1, V15: 0.25}}) as sim:
        entry = sim.api.get(f"/v1/models/{V15}").json()
        assert entry["base_price_usd"] == 0.25
        assert entry["price_unit"] == "second"
        assert entry["input_schema"]["required"] == ["prompt", "first_frame_image_url"]
        assert "first_frame_image_url" in entry["input_schema"]["properties"]
        assert sim.ledger()["submissions"] == {}  # GET never submits
        submitted = sim.submit(V15, payload(V15)).json()
        assert "request_id" in submitted
        assert "input_schema" not in submitted
        calls = sim.ledger()["calls"]
        assert (calls["model"], calls["submit"]) == (1, 1)


def test_status_moves_through_queue_run_and_done_with_the_clock() -> None:
    with running({"slots": 1}) as sim:
        first, second = sim.submit_ok(PRO), sim.submit_ok(LITE)
        assert sim.status(first)["status"] == "in_progress"
        assert "queue_position" not in sim.status(first)
        queued = sim.status(second)
        assert queued["status"] == "in_queue"
        assert queued["queue_position"] == 1
        assert queued["status_url"].endswith(f"/v1/requests/{second}/status")
        assert queued["result_url"].endswith(f"/v1/requests/{second}/result")
        sim.clock.advance(10)
        assert sim.status(first)["status"] == "completed"
        running_now = sim.status(second)
        assert running_now["status"] == "in_progress"
        assert "queue_position" not in running_now
        sim.clock.advance(10)
        done = sim.status(second)
        assert done["status"] == "completed"
        assert "queue_position" not in done


def test_queue_positions_are_exact_and_move_up_after_a_cancel() -> None:
    with running({"slots": 1}) as sim:
        ids = [sim.submit_ok(PRO, payload(PRO, prompt=f"shot {n}")) for n in range(4)]
        statuses = [sim.status(rid) for rid in ids]
        assert statuses[0]["status"] == "in_progress"
        assert [s.get("queue_position") for s in statuses] == [None, 1, 2, 3]
        cancelled = sim.cancel(ids[2]).json()  # the second job in the queue
        assert cancelled == {"request_id": ids[2], "outcome": "cancelled", "status": "cancelled"}
        after = [sim.status(rid) for rid in ids]
        assert [s["status"] for s in after] == ["in_progress", "in_queue", "cancelled", "in_queue"]
        assert [s.get("queue_position") for s in after] == [None, 1, None, 2]
        # The cancelled job never runs: the last one starts right after the second.
        sim.clock.advance(10)
        assert sim.status(ids[3])["queue_position"] == 1
        sim.clock.advance(10)
        assert sim.status(ids[3])["status"] == "in_progress"
        assert sim.ledger()["jobs"][ids[3]]["started_at"] == 20


def test_queue_position_base_follows_the_profile() -> None:
    with running({"slots": 1, "queue_position_base": 0}) as sim:
        ids = [sim.submit_ok(PRO, payload(PRO, prompt=f"shot {n}")) for n in range(3)]
        assert [sim.status(rid).get("queue_position") for rid in ids] == [None, 0, 1]


def test_result_before_completion_returns_the_current_state_without_output() -> None:
    with running({"slots": 1}) as sim:
        first, second = sim.submit_ok(PRO), sim.submit_ok(LITE)
        queued = sim.result(second)
        assert queued["status"] == "in_queue"
        assert "output" not in queued
        assert "finished_at" not in queued
        assert "error" not in queued
        running_now = sim.result(first)
        assert running_now["status"] == "in_progress"
        assert "output" not in running_now
        # Wall-clock ISO 8601 with microseconds and an offset, like the real API.
        created = datetime.fromisoformat(running_now["created_at"])
        assert created.tzinfo is not None
        assert running_now["created_at"].endswith("+00:00")


def test_completed_result_points_at_the_file_host() -> None:
    with running() as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        result = sim.result(rid)
        assert result["status"] == "completed"
        finished = datetime.fromisoformat(result["finished_at"])
        created = datetime.fromisoformat(result["created_at"])
        assert (finished - created).total_seconds() == 10  # the simulated run, in real seconds
        video = result["output"]["video"]
        assert host_of(video) == "localhost" != host_of(sim.api_base) == "127.0.0.1"
        assert video.startswith(sim.server.files_base + "/files/")
        assert "model_id" not in result
        assert "cost" not in result
        download = sim.download(video)
        assert download.status_code == 200
        assert download.headers["content-type"] == "video/mp4"


def test_include_cost_adds_cost_and_model_id() -> None:
    with running({"prices": {"default": 0.1, DREAMINA: 0.2}}) as sim:
        rid = sim.submit_ok(DREAMINA, payload(DREAMINA, frames=241))
        early = sim.result(rid, include_cost=True)
        assert (early["model_id"], early["cost"]) == (DREAMINA, pytest.approx(2.0))
        sim.clock.advance(10)
        done = sim.result(rid, include_cost=True)
        assert done["status"] == "completed"
        assert done["model_id"] == DREAMINA
        assert done["cost"] == pytest.approx(2.0)


def test_cancel_while_queued_cancels_and_refunds_once() -> None:
    with running({"slots": 1, "balance_usd": 10.0}) as sim:
        ids = [sim.submit_ok(PRO, payload(PRO, prompt=f"shot {n}")) for n in range(2)]
        assert sim.ledger()["balance_usd"] == pytest.approx(9.0)  # two 5 s jobs at 0.1/s
        response = sim.cancel(ids[1])
        assert response.status_code == 200
        assert response.json() == {
            "request_id": ids[1],
            "outcome": "cancelled",
            "status": "cancelled",
        }
        assert sim.status(ids[1])["status"] == "cancelled"
        assert sim.ledger()["balance_usd"] == pytest.approx(9.5)
        # Cancelling again confirms the cancel but does not refund a second time.
        assert sim.cancel(ids[1]).json()["outcome"] == "cancelled"
        assert sim.ledger()["balance_usd"] == pytest.approx(9.5)
        result = sim.result(ids[1], include_cost=True)
        assert result["status"] == "cancelled"
        assert result["cost"] == 0.0
        assert result["finished_at"] == result["created_at"]  # cancelled at t=0
        assert "output" not in result
        sim.clock.advance(100)
        assert sim.ledger()["jobs"][ids[1]]["started_at"] is None


def test_cancel_while_running_or_finished_is_not_cancellable() -> None:
    with running({"balance_usd": 10.0}) as sim:
        rid = sim.submit_ok(PRO)
        running_now = sim.cancel(rid)
        assert running_now.is_success
        assert running_now.json() == {
            "request_id": rid,
            "outcome": "not_cancellable",
            "status": "in_progress",
        }
        assert sim.status(rid)["status"] == "in_progress"
        sim.clock.advance(10)
        finished = sim.cancel(rid)
        assert finished.is_success
        assert finished.json()["outcome"] == "not_cancellable"
        assert finished.json()["status"] == "completed"
        assert sim.ledger()["balance_usd"] == pytest.approx(9.5)  # still charged


def test_profile_submit_status_202_is_honoured() -> None:
    with running({"submit_status": 202}) as sim:
        response = sim.submit(PRO, payload(PRO))
        assert response.status_code == 202
        assert "request_id" in response.json()
        assert sim.status(response.json()["request_id"])["status"] == "in_progress"
