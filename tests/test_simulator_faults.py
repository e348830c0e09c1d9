"""Every fault a profile can inject, forced with probability 1.0 so each test is exact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from model_ids import LITE, PRO
from simulator_helpers import AUTH, Sim, assert_error, data_uri, payload, running

from orchestrator.simulator import load_profile
from orchestrator.simulator.profile import FAULT_SETTINGS, HOSTILE_REPLY_FAULTS, Faults

ROUTES = ["submit", "model", "status", "result", "cancel"]


def with_faults(**faults: float) -> dict[str, Any]:
    return {"faults": faults}


def backdoor_job(sim: Sim, model_id: str = PRO, body: dict[str, Any] | None = None) -> str:
    """A job created in-process, for routes whose HTTP submit is itself faulty."""
    simulator = sim.server.simulator
    owner = simulator.owner_of(AUTH["Authorization"])
    return simulator.submit(owner, model_id, body or payload(model_id)).request_id


def call(
    sim: Sim, route: str, request_id: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One call to an API route the way a client makes it."""
    if route == "submit":
        return sim.submit(PRO, body or payload(PRO, prompt="over the wire"))
    if route == "model":
        return sim.api.get(f"/v1/models/{PRO}")
    if route == "cancel":
        return sim.api.post(f"/v1/requests/{request_id}/cancel")
    return sim.api.get(f"/v1/requests/{request_id}/{route}")


def wire_submissions(sim: Sim, backdoor: str) -> int:
    """Accepted submissions other than the in-process one."""
    jobs = sim.ledger()["jobs"]
    return len([rid for rid in jobs if rid != backdoor])


# -- refused before doing anything ----------------------------------------------------------


def test_rate_limit_429_carries_retry_after_on_every_route() -> None:
    with running(with_faults(rate_limit=1.0, retry_after_seconds=7)) as sim:
        rid = backdoor_job(sim)
        for route in ROUTES:
            response = call(sim, route, rid)
            assert_error(response, 429, 429001)
            assert response.headers["retry-after"] == "7"
        ledger = sim.ledger()
        assert ledger["faults"] == {"rate_limit": len(ROUTES)}
        assert ledger["replies"] == {f"{route} 429": 1 for route in ROUTES}
        assert wire_submissions(sim, rid) == 0
        assert sim.server.simulator.jobs[rid].cancelled_at is None  # cancel did nothing


def test_bare_rate_limit_429_has_no_retry_after_on_every_route() -> None:
    with running(with_faults(rate_limit_bare=1.0)) as sim:
        rid = backdoor_job(sim)
        for route in ROUTES:
            response = call(sim, route, rid)
            assert_error(response, 429, 429001)
            assert "retry-after" not in response.headers
        assert sim.ledger()["faults"] == {"rate_limit_bare": len(ROUTES)}
        assert wire_submissions(sim, rid) == 0


def test_server_errors_on_every_route() -> None:
    with running(with_faults(server_error=1.0)) as sim:
        rid = backdoor_job(sim)
        for route in ROUTES:
            seen = set()
            for attempt in range(8):
                response = call(sim, route, rid, payload(PRO, prompt=f"attempt {attempt}"))
                assert response.status_code in (500, 502, 503), route
                assert_error(response, response.status_code, 500001)
                seen.add(response.status_code)
            assert len(seen) >= 2, route  # the status varies between attempts
        ledger = sim.ledger()
        assert ledger["faults"] == {"server_error": 8 * len(ROUTES)}
        assert ledger["calls"] == dict.fromkeys(ROUTES, 8)
        assert wire_submissions(sim, rid) == 0  # a refused submit created nothing
        assert sim.server.simulator.jobs[rid].cancelled_at is None


def test_a_refused_submit_creates_no_job_and_all_three_statuses_occur() -> None:
    with running(with_faults(server_error=1.0)) as sim:
        assert sim.submit(PRO, payload(PRO)).status_code >= 500
        ledger = sim.ledger()
        assert ledger["submissions"] == {}
        assert ledger["jobs"] == {}
        assert sim.server.simulator.jobs == {}
        statuses = {sim.api.get(f"/v1/requests/req-{n}/status").status_code for n in range(40)}
        assert statuses == {500, 502, 503}


# -- the job exists although the reply says otherwise -----------------------------------------


def test_submit_accepted_then_error_creates_the_job() -> None:
    with running(with_faults(submit_accepted_then_error=1.0)) as sim:
        response = sim.submit(PRO, payload(PRO))
        assert_error(response, 500, 500001)
        ledger = sim.ledger()
        assert list(ledger["submissions"].values()) == [1]
        assert ledger["faults"] == {"submit_accepted_then_error": 1}
        (rid,) = ledger["jobs"]
        assert sim.status(rid)["status"] == "in_progress"  # other routes are healthy
        sim.clock.advance(10)
        assert sim.status(rid)["status"] == "completed"
        assert sim.download(sim.video_url(rid)).status_code == 200


def test_submit_accepted_then_error_spares_rejected_bodies() -> None:
    with running(with_faults(submit_accepted_then_error=1.0)) as sim:
        assert_error(sim.submit(LITE, payload(LITE, duration=7)), 422, 422001)
        assert sim.ledger()["faults"] == {}


def test_slow_reply_times_out_the_client_but_records_the_submit() -> None:
    with running(with_faults(slow_reply=1.0, slow_seconds=0.3), timeout=0.1) as sim:
        with pytest.raises(httpx.ReadTimeout):
            sim.submit(PRO, payload(PRO))
        ledger = sim.ledger()
        assert list(ledger["submissions"].values()) == [1]
        assert ledger["faults"] == {"slow_reply": 1}


def test_slow_reply_arrives_for_a_patient_client() -> None:
    with running(with_faults(slow_reply=1.0, slow_seconds=0.2), timeout=5) as sim:
        response = sim.submit(PRO, payload(PRO))
        assert response.status_code == 200
        assert response.json()["request_id"] in sim.ledger()["jobs"]


def test_connection_drop_on_submit_keeps_the_job() -> None:
    with running(with_faults(connection_drop=1.0)) as sim:
        with pytest.raises(httpx.RemoteProtocolError):
            sim.submit(PRO, payload(PRO))
        ledger = sim.ledger()
        assert list(ledger["submissions"].values()) == [1]
        assert ledger["faults"] == {"connection_drop": 1}
        assert ledger["replies"] == {"submit 0": 1}


def test_connection_drop_on_status() -> None:
    with running(with_faults(connection_drop=1.0)) as sim:
        rid = backdoor_job(sim)
        with pytest.raises(httpx.RemoteProtocolError):
            sim.api.get(f"/v1/requests/{rid}/status")
        # A fresh connection works the same way: the fault is per request.
        with pytest.raises(httpx.RemoteProtocolError):
            sim.api.get(f"/v1/requests/{rid}/result")
        assert sim.ledger()["faults"] == {"connection_drop": 2}


# -- outcomes of the job itself --------------------------------------------------------------


def test_job_failed_shows_on_status_and_result() -> None:
    with running(with_faults(job_failed=1.0)) as sim:
        rid = sim.submit_ok(PRO)
        assert sim.status(rid)["status"] == "in_progress"
        sim.clock.advance(10)
        assert sim.status(rid)["status"] == "failed"
        result = sim.result(rid)
        assert result["status"] == "failed"
        assert isinstance(result["error"], dict)
        assert result["error"]["message"]
        assert "output" not in result
        assert "finished_at" in result
        assert sim.ledger()["jobs"][rid]["outcome"] == "failed"


def test_job_failed_result_only_says_completed_on_status() -> None:
    with running(with_faults(job_failed_result_only=1.0)) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        assert sim.status(rid)["status"] == "completed"
        result = sim.result(rid)
        assert result["status"] == "failed"
        assert result["error"]
        assert "output" not in result


def test_no_output_completes_with_an_empty_output() -> None:
    with running(with_faults(no_output=1.0)) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        assert sim.status(rid)["status"] == "completed"
        result = sim.result(rid)
        assert result["status"] == "completed"
        assert result["output"] == {}
        assert "error" not in result


# -- downloads ---------------------------------------------------------------------------------


def test_expired_url_fault_answers_403_for_every_url() -> None:
    with running(with_faults(expired_url=1.0)) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        first = sim.video_url(rid)
        refused = sim.download(first)
        assert refused.status_code == 403
        assert "expired" in refused.text
        second = sim.video_url(rid)
        assert second != first  # a fresh /result signs a new URL ...
        assert sim.download(second).status_code == 403  # ... which fails the same way
        ledger = sim.ledger()
        assert ledger["faults"] == {"expired_url": 2}
        assert ledger["bytes_served"] == 0


def test_urls_expire_after_url_ttl_and_a_fresh_result_renews_them() -> None:
    with running({"url_ttl": 5}) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        url = sim.video_url(rid)
        assert sim.download(url).status_code == 200  # within the ttl
        sim.clock.advance(10)
        expired = sim.download(url)
        assert expired.status_code == 403
        assert "expired" in expired.text
        fresh = sim.video_url(rid)
        assert fresh != url
        assert sim.download(fresh).status_code == 200
        assert sim.ledger()["faults"] == {"expired_url": 1}


def test_a_tampered_url_is_403() -> None:
    with running() as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        url = sim.video_url(rid)
        assert sim.download(url.replace("sig=", "sig=0")).status_code == 403
        assert sim.download(url.replace("expires=", "expires=9")).status_code == 403
        assert sim.download(url).status_code == 200


def test_truncated_download_promises_more_than_it_sends() -> None:
    with running(with_faults(truncated_download=1.0)) as sim:
        rid = sim.submit_ok(PRO)
        sim.clock.advance(10)
        received = bytearray()
        with sim.files.stream("GET", sim.video_url(rid)) as response:
            assert response.status_code == 200
            promised = int(response.headers["content-length"])
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in response.iter_bytes():
                    received.extend(chunk)
        assert 0 < len(received) < promised
        ledger = sim.ledger()
        assert ledger["faults"] == {"truncated_download": 1}
        assert ledger["bytes_served"] == len(received)


# -- reproducibility -------------------------------------------------------------------------

MIXED = with_faults(
    rate_limit=0.15,
    server_error=0.15,
    submit_accepted_then_error=0.1,
    job_failed=0.2,
    job_failed_result_only=0.1,
    no_output=0.1,
    expired_url=0.3,
    truncated_download=0.3,
)


def _session(seed: int) -> tuple[dict[str, int], dict[str, int], list[object]]:
    """A fixed sequence of requests; what the simulator did to them."""
    seen: list[object] = []
    with running({**MIXED, "seed": seed, "slots": 4}) as sim:
        for n in range(8):
            response = sim.submit(PRO, payload(PRO, data_uri(), prompt=f"take {n}"))
            seen.append(response.status_code)
        sim.clock.advance(30)
        for rid in sorted(sim.ledger()["jobs"]):
            for route in ("status", "result"):
                response = sim.api.get(f"/v1/requests/{rid}/{route}")
                seen.append((route, response.status_code, response.json().get("status")))
                output = response.json().get("output") or {}
                if response.status_code == 200 and "video" in output:
                    try:
                        seen.append(len(sim.download(output["video"]).content))
                    except httpx.RemoteProtocolError:
                        seen.append("truncated")
        ledger = sim.ledger()
    return ledger["faults"], ledger["replies"], seen


def test_the_same_seed_gives_the_same_faults() -> None:
    first, second = _session(seed=42), _session(seed=42)
    assert first == second
    faults = first[0]
    assert sum(faults.values()) > 3
    assert len(faults) >= 3  # several kinds met


def test_the_builtin_flaky_and_hostile_profiles_enable_every_fault() -> None:
    # Hostile replies park jobs for a person or hold them for minutes: no built-in
    # profile enables them (tests/test_simulator_hostile.py checks they are all off).
    skipped = FAULT_SETTINGS + HOSTILE_REPLY_FAULTS
    probabilities = [name for name in Faults.__dataclass_fields__ if name not in skipped]
    for name in ("flaky", "hostile"):
        loaded = load_profile(name)
        assert loaded.name == name
        for fault in probabilities:
            assert 0 < getattr(loaded.faults, fault) < 1, (name, fault)
        assert loaded.faults.any_http_fault()
    calm = load_profile("calm")
    assert not calm.faults.any_http_fault()
    assert all(getattr(calm.faults, fault) == 0 for fault in probabilities)
