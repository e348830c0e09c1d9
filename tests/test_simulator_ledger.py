"""The ledger: what clients did, in-process and over ``GET /_sim/ledger``; the two hosts."""

from __future__ import annotations

import json

import httpx
import pytest
from model_ids import LITE, PRO
from simulator_helpers import AUTH, TLS, payload, running

from orchestrator.simulator.state import payload_hash


def test_submissions_are_counted_per_payload_and_duplicates_show() -> None:
    with running({"slots": 4}) as sim:
        body = payload(PRO, prompt="the same one")
        first, second = sim.submit_ok(PRO, body), sim.submit_ok(PRO, body)
        assert first != second  # two paid jobs
        other = sim.submit_ok(LITE)
        ledger = sim.ledger()
        same = payload_hash({"model": PRO, "input": body})
        assert ledger["submissions"][same] == 2
        assert ledger["duplicates"] == {same: 2}
        assert sum(ledger["submissions"].values()) == 3
        assert ledger["jobs"][first]["payload_hash"] == ledger["jobs"][second]["payload_hash"]
        assert ledger["jobs"][other]["payload_hash"] != same
        assert sim.server.simulator.ledger.duplicates() == {same: 2}


def test_the_same_body_for_another_model_is_another_payload() -> None:
    with running() as sim:
        body = payload(PRO)
        sim.submit_ok(PRO, body)
        sim.submit_ok(LITE, body)
        assert sim.ledger()["duplicates"] == {}


def test_calls_and_replies_are_counted_per_route() -> None:
    with running() as sim:
        rid = sim.submit_ok(PRO)
        sim.api.get(f"/v1/models/{PRO}")
        sim.status(rid)
        sim.status(rid)
        sim.api.get("/v1/requests/unknown-id/status")
        sim.cancel(rid)
        sim.clock.advance(10)
        sim.download(sim.video_url(rid))
        ledger = sim.ledger()
        assert ledger["calls"] == {
            "submit": 1,
            "model": 1,
            "status": 3,
            "cancel": 1,
            "result": 1,
            "download": 1,
        }
        assert ledger["replies"] == {
            "submit 200": 1,
            "model 200": 1,
            "status 200": 2,
            "status 404": 1,
            "cancel 200": 1,
            "result 200": 1,
            "download 200": 1,
        }


def test_download_headers_show_whether_the_token_reached_the_file_host() -> None:
    with running() as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        url = sim.video_url(rid)
        clean = sim.download(url)
        leaky = sim.download(url, headers=AUTH)
        downloads = sim.ledger()["downloads"]
        assert [d["status"] for d in downloads] == [200, 200]
        assert "authorization" not in downloads[0]["headers"]
        assert downloads[1]["headers"]["authorization"] == AUTH["Authorization"]
        for entry in downloads:
            assert entry["host"].startswith("localhost:")
            assert entry["path"] == f"/files/{rid}/1/output.mp4"
        # bytes_served adds up every byte sent.
        assert downloads[0]["bytes"] == len(clean.content) == len(leaky.content)
        assert sim.ledger()["bytes_served"] == len(clean.content) + len(leaky.content)


def test_refused_downloads_are_recorded_with_no_bytes() -> None:
    with running({"url_ttl": 1}) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        url = sim.video_url(rid)
        sim.clock.advance(5)
        assert sim.download(url).status_code == 403
        ledger = sim.ledger()
        assert [(d["status"], d["bytes"]) for d in ledger["downloads"]] == [(403, 0)]
        assert ledger["bytes_served"] == 0
        assert ledger["replies"]["download 403"] == 1


def test_timelines_show_the_fifo_makespan() -> None:
    with running({"slots": 2}) as sim:
        ids = [sim.submit_ok(PRO, payload(PRO, prompt=f"shot {n}")) for n in range(4)]
        sim.clock.advance(25)
        jobs = sim.ledger()["jobs"]
        timeline = [
            (jobs[rid]["submitted_at"], jobs[rid]["started_at"], jobs[rid]["finished_at"])
            for rid in ids
        ]
        assert timeline == [(0, 0, 10), (0, 0, 10), (0, 10, 20), (0, 10, 20)]
        assert max(finished for _s, _b, finished in timeline) == 20
        assert all(jobs[rid]["outcome"] == "success" for rid in ids)


def test_timelines_of_jobs_submitted_later() -> None:
    with running({"slots": 1, "durations": {"default": 10, LITE: 4}}) as sim:
        first = sim.submit_ok(PRO)
        sim.clock.advance(3)
        second = sim.submit_ok(LITE)
        sim.clock.advance(30)
        jobs = sim.ledger()["jobs"]
        assert (jobs[first]["started_at"], jobs[first]["finished_at"]) == (0, 10)
        assert (jobs[second]["submitted_at"], jobs[second]["started_at"]) == (3, 10)
        assert jobs[second]["finished_at"] == 14


def test_the_http_ledger_matches_the_in_process_one() -> None:
    with running({"balance_usd": 5.0}) as sim:
        rid = sim.submit_ok(PRO)
        sim.submit(LITE, payload(LITE, duration=7))  # rejected
        sim.clock.advance(10)
        sim.download(sim.video_url(rid))
        # The admin route needs no token and is not counted as an API call.
        with httpx.Client(verify=TLS) as plain:
            over_http = plain.get(f"{sim.api_base}/_sim/ledger")
        assert over_http.status_code == 200
        in_process = json.loads(json.dumps(sim.ledger()))
        assert over_http.json() == in_process
        assert in_process["balance_usd"] == pytest.approx(4.5)
        assert in_process["now"] == 10
        assert in_process["renders"] == 1
        assert rid in in_process["jobs"]


def test_clear_forgets_everything() -> None:
    with running() as sim:
        sim.submit_ok(PRO)
        sim.server.simulator.ledger.clear()
        ledger = sim.ledger()
        assert ledger["submissions"] == {}
        assert ledger["calls"] == {}
        assert ledger["jobs"] == {}


def test_each_host_serves_only_its_own_routes() -> None:
    with running() as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        url = sim.video_url(rid)
        files_base, api_base = sim.server.files_base, sim.api_base
        file_path = url[len(files_base) :]
        # The API host refuses file routes ...
        assert sim.files.get(api_base + file_path).status_code == 404
        # ... and the file host refuses API routes, with or without a token.
        for path in (f"/v1/requests/{rid}/status", f"/v1/models/{PRO}", "/_sim/ledger"):
            assert sim.files.get(files_base + path, headers=AUTH).status_code == 404
        assert sim.files.post(f"{files_base}/v1/models/{PRO}", json=payload(PRO)).status_code == 404
        # Another host name is refused outright.
        other = sim.files.get(f"{api_base}/_sim/ledger", headers={"Host": "example.com"})
        assert other.status_code == 404
        assert sim.download(url).status_code == 200
        assert sum(sim.ledger()["submissions"].values()) == 1
