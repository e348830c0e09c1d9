"""The simulator's hostile replies (orchestrator/simulator/hostile.py), over a real socket:
another job's reply, an output URL no client can download, a huge Retry-After on a job's
first poll or a payload's first submit. Each is forced with probability 1.0 (or checked
to be off by default), so every assertion is exact."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from model_ids import PRO
from simulator_helpers import assert_error, payload, running

from orchestrator.simulator import ProfileError, load_profile, parse_profile
from orchestrator.simulator.faults import BAD_URLS, bad_url
from orchestrator.simulator.profile import BUILTIN_PROFILES, HOSTILE_REPLY_FAULTS


def with_faults(**faults: float) -> dict[str, Any]:
    return {"faults": faults}


# -- another job's reply --------------------------------------------------------------------


def test_a_result_can_be_another_finished_jobs_with_its_video() -> None:
    with running(with_faults(result_wrong_request_id=1.0)) as sim:
        first = sim.submit_ok(PRO, payload(PRO, prompt="first"))
        sim.clock.advance(10)  # the first finishes (2 slots, 10 s jobs)
        second = sim.submit_ok(PRO, payload(PRO, prompt="second"))
        reply = sim.result(second)
        # The latest other finished job of the account answers, video and all.
        assert reply["request_id"] == first
        assert reply["status"] == "completed"
        assert f"/files/{first}/" in reply["output"]["video"]
        assert sim.result(first)["request_id"] == second  # (its own result is second's)
        ledger = sim.ledger()
        assert ledger["faults"] == {"result_wrong_request_id": 2}
        assert ledger["jobs"][second]["faults"] == {"result_wrong_request_id": 1}


def test_a_status_can_be_another_jobs_and_a_lone_job_gets_a_strangers() -> None:
    with running(with_faults(status_wrong_request_id=1.0)) as sim:
        lone = sim.submit_ok(PRO)
        stranger = sim.status(lone)
        assert stranger["request_id"] != lone
        assert stranger["status"] == "in_progress"
        other = sim.submit_ok(PRO, payload(PRO, prompt="other"))
        assert sim.status(other)["request_id"] == lone
        # An impostor's reply is not counted as a look at the impostor.
        looks = {rid: t["looks"] for rid, t in sim.ledger()["jobs"].items()}
        assert looks == {lone: {}, other: {}}


def test_replies_are_truthful_by_default() -> None:
    with running() as sim:
        first, second = sim.submit_ok(PRO), sim.submit_ok(PRO, payload(PRO, prompt="2"))
        sim.clock.advance(10)
        for rid in (first, second):
            assert sim.status(rid)["request_id"] == rid
            assert sim.result(rid)["request_id"] == rid
        assert sim.ledger()["faults"] == {}
        assert all("faults" not in t for t in sim.ledger()["jobs"].values())


# -- an output URL that cannot be downloaded -----------------------------------------------


def test_a_bad_url_job_completes_with_the_same_undownloadable_url_every_time() -> None:
    with running({**with_faults(result_bad_url=1.0), "seed": 3}) as sim:
        ids = [sim.submit_ok(PRO, payload(PRO, prompt=f"take {n}")) for n in range(12)]
        sim.clock.advance(100)
        urls = set()
        for rid in ids:
            assert sim.status(rid)["status"] == "completed"
            first, again = sim.result(rid), sim.result(rid)
            url = first["output"]["video"]
            assert url == again["output"]["video"] == bad_url(3, rid)
            assert rid in url
            assert urlsplit(url).scheme not in ("http", "https")
            urls.add(url.replace(rid, "{rid}"))
        assert len(urls) >= 4  # several of the forms (ftp, file, relative, rooted ...)
        assert urls <= set(BAD_URLS)
        timelines = sim.ledger()["jobs"]
        assert {timelines[rid]["outcome"] for rid in ids} == {"bad_url"}
        assert sim.ledger()["calls"].get("download", 0) == 0


# -- a huge Retry-After -----------------------------------------------------------------------


def test_a_jobs_first_status_poll_only_gets_the_huge_retry_after() -> None:
    settings = {**with_faults(status_retry_after_huge=1.0, retry_after_huge_seconds=86_400)}
    with running(settings) as sim:
        rid = sim.submit_ok(PRO)
        refused = sim.api.get(f"/v1/requests/{rid}/status")
        assert_error(refused, 429, 429001)
        assert refused.headers["retry-after"] == "86400"
        assert sim.status(rid)["status"] == "in_progress"  # the next poll answers
        assert sim.status(rid)["request_id"] == rid
        other = sim.submit_ok(PRO, payload(PRO, prompt="other"))
        assert sim.api.get(f"/v1/requests/{other}/status").status_code == 429  # its own first
        sim.clock.advance(10)
        assert sim.result(rid)["status"] == "completed"  # /result is never refused
        ledger = sim.ledger()
        assert ledger["faults"] == {"status_retry_after_huge": 2}
        assert ledger["replies"]["status 429"] == 2
        assert ledger["jobs"][rid]["faults"] == {"status_retry_after_huge": 1}
        assert ledger["jobs"][rid]["looks"] == {"in_progress": 2}  # the 429 found nothing


def test_a_payloads_first_submit_gets_the_huge_retry_after_and_creates_nothing() -> None:
    with running(with_faults(submit_retry_after_huge=1.0)) as sim:
        body = payload(PRO, prompt="once")
        refused = sim.submit(PRO, body)
        assert_error(refused, 429, 429001)
        assert refused.headers["retry-after"] == "86400"
        assert sim.ledger()["jobs"] == {}
        rid = sim.submit_ok(PRO, body)  # the same payload again: accepted
        assert sim.ledger()["submissions"] == {sim.ledger()["jobs"][rid]["payload_hash"]: 1}
        assert sim.ledger()["faults"] == {"submit_retry_after_huge": 1}


# -- the profile keys ---------------------------------------------------------------------------


def test_hostile_reply_faults_are_probabilities_and_off_in_every_builtin_profile() -> None:
    for name in BUILTIN_PROFILES:
        faults = load_profile(name).faults
        assert all(getattr(faults, key) == 0 for key in HOSTILE_REPLY_FAULTS), name
        assert faults.retry_after_huge_seconds == 86_400
    for key in HOSTILE_REPLY_FAULTS:
        with pytest.raises(ProfileError, match="is a probability"):
            parse_profile({"faults": {key: 2}})
    parsed = parse_profile({"faults": {"retry_after_huge_seconds": 3600.0}})
    assert parsed.faults.retry_after_huge_seconds == 3600
    assert isinstance(parsed.faults.retry_after_huge_seconds, int)
