"""File-host outages over real loopback sockets: 5xx windows, refused connections, the
listener reopening on the same port, ``after``, the admin route, the ledger, the profile
key, and the ``simulate`` banner's run command.

Time is a :class:`ManualClock`: a window ends when the test advances the clock, and the
test waits for the reopened listener with ``server.wait_files_open`` (an event), never a
sleep.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from model_ids import PRO
from simulator_helpers import AUTH, TLS, Sim, assert_error, payload, profile, running

from orchestrator.cli import cli
from orchestrator.engine.download import host_allowed
from orchestrator.simulator import (
    BUILTIN_PROFILES,
    FileOutage,
    ProfileError,
    load_profile,
    parse_profile,
)

if TYPE_CHECKING:
    from pathlib import Path

WAIT = 10.0  # longest wait for the listener to reopen (returns as soon as it has)


def fetch(url: str, **kwargs: Any) -> httpx.Response:
    """One GET on a fresh connection (no pooled connection from before an outage)."""
    with httpx.Client(timeout=10, verify=TLS) as client:
        return client.get(url, **kwargs)


def ready_url(sim: Sim) -> str:
    """A completed job's video URL (the API is never down; only the file host is)."""
    request_id = sim.submit_ok(PRO)
    sim.clock.advance(10)
    return sim.video_url(request_id)


def port_of(url: str) -> int | None:
    return urlsplit(url).port


# -- error outages -------------------------------------------------------------------------


def test_an_error_outage_answers_5xx_for_its_window_then_200() -> None:
    with running() as sim:
        url = ready_url(sim)
        window = sim.server.start_file_outage("error", 30)
        assert (window.kind, window.opened_at, window.closes_at) == ("error", 10, 40)
        for _ in range(4):
            refused = fetch(url)
            assert refused.status_code in (500, 502, 503)
            assert refused.headers["content-type"].startswith("text/plain")
            assert "outage" in refused.text
        sim.clock.advance(29.5)
        assert fetch(url).status_code in (500, 502, 503)  # still inside the window
        # The API keeps answering meanwhile: only the file host is down.
        assert sim.api.get(f"{sim.api_base}/_sim/health").status_code == 200
        sim.clock.advance(0.5)
        served = fetch(url)
        assert served.status_code == 200
        assert served.content[4:8] == b"ftyp"
        assert sim.server.files_open.is_set()  # an error outage never closes the listener


def test_a_planned_error_outage_meets_the_first_request() -> None:
    with running({"file_outages": [{"seconds": 20}]}) as sim:
        url = ready_url(sim)
        sim.clock.advance(100)  # a planned outage waits for a request: none came yet
        assert sim.ledger()["outages"] == []
        assert fetch(url).status_code >= 500  # this first request opens it (at t=110)
        sim.clock.advance(19)
        assert fetch(url).status_code >= 500
        sim.clock.advance(1)
        assert fetch(url).status_code == 200
        assert sim.ledger()["outages"] == [{"kind": "error", "opened_at": 110, "closes_at": 130}]


def test_after_delays_the_window_until_a_request_arrives_at_or_after_it() -> None:
    outages = [{"after": 30, "seconds": 10, "kind": "error"}]
    with running({"file_outages": outages}) as sim:
        url = ready_url(sim)  # t = 10
        assert fetch(url).status_code == 200
        sim.clock.advance(19)  # t = 29: not yet
        assert fetch(url).status_code == 200
        sim.clock.advance(21)  # t = 50: the first request after `after` opens it, now
        assert fetch(url).status_code >= 500
        sim.clock.advance(9.5)  # 59.5: the window runs from 50, not from 30
        assert fetch(url).status_code >= 500
        sim.clock.advance(0.5)
        assert fetch(url).status_code == 200
        sim.clock.advance(1000)
        assert fetch(url).status_code == 200  # a planned outage happens once
        assert sim.ledger()["outages"] == [{"kind": "error", "opened_at": 50, "closes_at": 60}]


def test_planned_outages_open_one_after_another() -> None:
    outages = [
        {"after": 0, "seconds": 10, "kind": "error"},
        {"after": 5, "seconds": 10, "kind": "error"},  # due while the first is open
    ]
    with running({"file_outages": outages}) as sim:
        url = ready_url(sim)  # t = 10, both due
        assert fetch(url).status_code >= 500  # the first opens: 10 .. 20
        sim.clock.advance(10)
        assert fetch(url).status_code >= 500  # the second opens at once: 20 .. 30
        sim.clock.advance(10)
        assert fetch(url).status_code == 200
        windows = [(w["opened_at"], w["closes_at"]) for w in sim.ledger()["outages"]]
        assert windows == [(10, 20), (20, 30)]


# -- refuse outages ------------------------------------------------------------------------


def test_a_refuse_outage_refuses_connections_then_reopens_on_the_same_port() -> None:
    with running() as sim:
        url = ready_url(sim)
        port = sim.server.files_port
        assert port_of(url) == port != sim.server.port
        assert sim.download(url).status_code == 200  # a pooled connection, cut below
        window = sim.server.start_file_outage("refuse", 60)
        assert (window.kind, window.closes_at) == ("refuse", 70)
        assert not sim.server.files_open.is_set()
        with pytest.raises(httpx.ConnectError):
            fetch(url)
        with pytest.raises(httpx.TransportError):
            sim.download(url)  # the pooled connection was aborted with the listener
        sim.clock.advance(59)
        assert not sim.server.wait_files_open(0)  # still closed inside the window
        with pytest.raises(httpx.ConnectError):
            fetch(url)
        sim.clock.advance(1)
        assert sim.server.wait_files_open(WAIT)
        assert sim.server.files_port == port
        assert sim.server.files_base == f"http://localhost:{port}"
        served = fetch(url)
        assert served.status_code == 200
        assert served.content[4:8] == b"ftyp"
        # The server saw no request during the window: nothing was counted.
        ledger = sim.ledger()
        assert ledger["faults"] == {}
        assert ledger["outages"] == [{"kind": "refuse", "opened_at": 10, "closes_at": 70}]


def test_a_planned_refuse_outage_drops_its_first_request_then_refuses() -> None:
    outages = [{"after": 20, "seconds": 45, "kind": "refuse"}]
    with running({"file_outages": outages}) as sim:
        url = ready_url(sim)  # t = 10
        assert fetch(url).status_code == 200
        sim.clock.advance(15)  # t = 25
        with pytest.raises(httpx.RemoteProtocolError):
            fetch(url)  # the request that opens it: connection closed, no reply
        assert not sim.server.files_open.is_set()
        with pytest.raises(httpx.ConnectError):
            fetch(url)
        sim.clock.advance(45)
        assert sim.server.wait_files_open(WAIT)
        assert fetch(url).status_code == 200
        ledger = sim.ledger()
        assert ledger["outages"] == [{"kind": "refuse", "opened_at": 25, "closes_at": 70}]
        assert ledger["faults"] == {"file_outage_refuse": 1}
        assert ledger["replies"]["download 0"] == 1
        assert [d["status"] for d in ledger["downloads"]] == [200, 0, 200]


def test_refuse_then_error_back_to_back() -> None:
    outages = [{"after": 0, "seconds": 30, "kind": "refuse"}, {"after": 0, "seconds": 5}]
    with running({"file_outages": outages}) as sim:
        url = ready_url(sim)
        with pytest.raises(httpx.RemoteProtocolError):
            fetch(url)
        sim.clock.advance(30)
        assert sim.server.wait_files_open(WAIT)
        assert fetch(url).status_code >= 500  # the next planned one: the listener is up
        sim.clock.advance(5)
        assert fetch(url).status_code == 200
        assert [w["kind"] for w in sim.ledger()["outages"]] == ["refuse", "error"]


def test_an_error_outage_started_during_a_refuse_one_reopens_the_listener() -> None:
    with running() as sim:
        url = ready_url(sim)
        sim.server.start_file_outage("refuse", 100)
        with pytest.raises(httpx.ConnectError):
            fetch(url)
        sim.server.start_file_outage("error", 100)  # replaces the open window
        assert sim.server.wait_files_open(WAIT)
        assert fetch(url).status_code >= 500
        sim.clock.advance(100)
        assert fetch(url).status_code == 200


def test_start_file_outage_checks_its_arguments() -> None:
    with running() as sim:
        for kind, seconds in (("down", 10.0), ("error", 0.0), ("refuse", -1.0)):
            with pytest.raises(ValueError, match=r"kind|seconds"):
                sim.server.start_file_outage(kind, seconds)
        assert sim.ledger()["outages"] == []
        assert sim.server.files_open.is_set()


# -- hosts, admin route, ledger ------------------------------------------------------------


def test_the_file_listener_serves_only_the_file_host() -> None:
    with running() as sim:
        url = ready_url(sim)
        files = urlsplit(sim.server.files_base)
        # The file port under the API's host name is refused, as an unknown host.
        as_api = fetch(url.replace("localhost", "127.0.0.1", 1))
        assert as_api.status_code == 404
        assert "unknown host" in as_api.text
        assert fetch(f"http://127.0.0.1:{files.port}/_sim/ledger").status_code == 404
        # ... and the API port does not serve files under the file host's name.
        assert fetch(f"http://localhost:{sim.server.port}{urlsplit(url).path}").status_code == 404
        assert fetch(url).status_code == 200


def test_the_admin_route_starts_outages_and_the_ledger_shows_them() -> None:
    with running() as sim, httpx.Client(base_url=sim.api_base, verify=TLS) as admin:
        url = ready_url(sim)
        started = admin.post("/_sim/outage", params={"kind": "error", "seconds": "15"})
        assert started.status_code == 200
        assert started.json() == {"kind": "error", "opened_at": 10, "closes_at": 25}
        statuses = [fetch(url).status_code for _ in range(6)]
        assert all(status in (500, 502, 503) for status in statuses)
        sim.clock.advance(15)
        assert fetch(url).status_code == 200
        refused = admin.post("/_sim/outage", params={"kind": "refuse", "seconds": "5"})
        assert refused.json() == {"kind": "refuse", "opened_at": 25, "closes_at": 30}
        with pytest.raises(httpx.ConnectError):
            fetch(url)
        sim.clock.advance(5)
        assert sim.server.wait_files_open(WAIT)
        assert fetch(url).status_code == 200
        ledger = admin.get("/_sim/ledger").json()
        assert ledger["outages"] == [
            {"kind": "error", "opened_at": 10, "closes_at": 25},
            {"kind": "refuse", "opened_at": 25, "closes_at": 30},
        ]
        assert ledger["faults"] == {"file_outage_error": 6}  # one per 5xx reply
        fives = {k: n for k, n in ledger["replies"].items() if k.startswith("download 5")}
        assert sum(fives.values()) == 6
        assert ledger["replies"]["download 200"] == 2
        # The file host has no admin route.
        assert fetch(f"{sim.server.files_base}/_sim/outage").status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "down", "seconds": "10"},
        {"kind": "error", "seconds": "0"},
        {"kind": "refuse", "seconds": "-3"},
        {"kind": "error", "seconds": "soon"},
        {"kind": "error", "seconds": "inf"},
        {"kind": "error"},
    ],
)
def test_the_admin_route_refuses_bad_requests(params: dict[str, str]) -> None:
    with running() as sim, httpx.Client(base_url=sim.api_base, verify=TLS) as admin:
        body = assert_error(admin.post("/_sim/outage", params=params), 400, 400001)
        assert "kind" in body["detail"]
        assert "seconds" in body["detail"]
        assert sim.ledger()["outages"] == []
        assert sim.server.files_open.is_set()


def test_outage_faults_are_counted_per_reply() -> None:
    with running({"file_outages": [{"after": 0, "seconds": 10}]}) as sim:
        url = ready_url(sim)
        leaky = fetch(url, headers=AUTH)  # what the download carried is still recorded
        assert leaky.status_code >= 500
        ledger = sim.ledger()
        assert ledger["faults"] == {"file_outage_error": 1}
        assert ledger["calls"]["download"] == 1
        (entry,) = ledger["downloads"]
        assert entry["status"] == leaky.status_code
        assert entry["bytes"] == 0
        assert entry["host"] == f"localhost:{sim.server.files_port}"
        assert entry["headers"]["authorization"] == AUTH["Authorization"]
        sim.server.simulator.ledger.clear()
        assert sim.ledger()["outages"] == []


def test_5xx_codes_repeat_with_the_seed() -> None:
    def codes() -> list[int]:
        with running({"seed": 11, "file_outages": [{"seconds": 50}]}) as sim:
            url = ready_url(sim)
            return [fetch(url).status_code for _ in range(12)]

    first = codes()
    assert first == codes()
    assert set(first) <= {500, 502, 503}


# -- the profile key -----------------------------------------------------------------------


def test_file_outages_parse_with_defaults() -> None:
    parsed = parse_profile(
        {"file_outages": [{"seconds": 30}, {"after": 60, "seconds": 45.5, "kind": "refuse"}]}
    )
    assert parsed.file_outages == (
        FileOutage(seconds=30, after=0, kind="error"),
        FileOutage(seconds=45.5, after=60, kind="refuse"),
    )
    assert parse_profile({"file_outages": None}).file_outages == ()
    assert parse_profile({}).file_outages == ()
    assert profile().file_outages == ()


@pytest.mark.parametrize(
    ("outages", "words"),
    [
        ({"after": 1, "seconds": 2}, "file_outages must be a list"),
        ([30], r"file_outages\[0\] must be a mapping"),
        ([{"seconds": 5, "duration": 3}], r"file_outages\[0\]: unknown key\(s\) duration"),
        ([{"after": 5}], r"file_outages\[0\]: seconds .* is required"),
        ([{"seconds": 0}], r"file_outages\[0\]\.seconds must be > 0"),
        ([{"seconds": -5}], r"file_outages\[0\]\.seconds must be a number >= 0"),
        ([{"seconds": "1m"}], r"file_outages\[0\]\.seconds must be a number"),
        ([{"seconds": True}], r"file_outages\[0\]\.seconds must be a number"),
        ([{"seconds": 5}, {"seconds": 5, "after": -1}], r"file_outages\[1\]\.after must be"),
        ([{"seconds": 5, "kind": "down"}], r"kind must be one of error, refuse, got 'down'"),
    ],
)
def test_bad_file_outages_are_refused(outages: Any, words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        parse_profile({"file_outages": outages}, origin="night.yaml")


def test_a_bad_outage_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "night.yaml"
    path.write_text("file_outages:\n  - {seconds: 10, kind: maybe}\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"night\.yaml: file_outages\[0\]\.kind"):
        load_profile(path)


def test_the_builtin_outages_profile() -> None:
    assert "outages" in BUILTIN_PROFILES
    outages, calm = load_profile("outages"), load_profile("calm")
    assert outages.name == "outages"
    assert outages.slots == 8
    assert outages.record_ttl is None
    assert outages.prices == calm.prices
    assert outages.durations == calm.durations
    assert outages.faults == calm.faults
    kinds = [o.kind for o in outages.file_outages]
    assert 2 <= kinds.count("error") <= 3
    assert 2 <= kinds.count("refuse") <= 3
    assert all(30 <= o.seconds <= 120 for o in outages.file_outages)
    assert all(o.after <= 600 for o in outages.file_outages)


def test_the_builtin_outages_profile_over_sockets() -> None:
    """Its first outage (error) meets the first download after it is due; the second
    (refuse) is due by the time the first ends, so the next download opens it."""
    outages = load_profile("outages")
    first, second, third = outages.file_outages[:3]
    assert (first.kind, second.kind) == ("error", "refuse")
    with running(outages.with_overrides(video_max_side=64)) as sim:
        request_id = sim.submit_ok(PRO)
        sim.clock.advance(90)  # the longest run time
        url = sim.video_url(request_id)
        assert first.after <= 90
        assert fetch(url).status_code >= 500
        sim.clock.advance(first.seconds)
        assert 90 + first.seconds >= second.after
        with pytest.raises(httpx.RemoteProtocolError):
            fetch(url)
        with pytest.raises(httpx.ConnectError):
            fetch(url)
        sim.clock.advance(second.seconds)
        assert sim.server.wait_files_open(WAIT)
        now = 90 + first.seconds + second.seconds
        assert now < third.after
        assert fetch(url).status_code == 200
        assert sim.ledger()["outages"] == [
            {"kind": "error", "opened_at": 90, "closes_at": 90 + first.seconds},
            {"kind": "refuse", "opened_at": 90 + first.seconds, "closes_at": now},
        ]


# -- the simulate banner -------------------------------------------------------------------

BANNER = re.compile(r"^\s*(API|files|run):\s+(\S.*?)\s*$")


def _banner(process: subprocess.Popen[bytes], deadline: float) -> dict[str, str]:
    """The banner's API, files and run lines (read without blocking past ``deadline``)."""
    assert process.stdout is not None
    lines: dict[str, str] = {}
    buffer = b""
    while "run" not in lines and time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        buffer += chunk
        for line in buffer.decode(errors="replace").splitlines():
            match = BANNER.match(line)
            if match:
                lines[match.group(1)] = match.group(2)
    return lines


@pytest.mark.slow
def test_the_banner_prints_a_run_command_that_fits_the_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "RUNCOMFY"))}
    log = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "orchestrator", "simulate", "--port", "0"]
    command += ["--time-scale", "0.001"]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            lines = _banner(process, time.monotonic() + 30)
            assert {"API", "files", "run"} <= set(lines), (lines, log.read_text())
            api_base = lines["API"].split()[0]
            files_base = lines["files"].split()[0]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", api_base)
            assert re.fullmatch(r"http://localhost:\d+", files_base)
            assert port_of(api_base) != port_of(files_base)

            words = shlex.split(lines["run"])
            assert words[0].startswith("RUNCOMFY_API_TOKEN=")
            assert len(words[0]) > 19
            assert words[1:4] == ["orchestrator", "run", "MANIFEST"]
            # The command parses as shown.
            args = SimpleNamespace(**cli.commands["run"].make_context("run", words[3:]).params)
            assert args.api_base == api_base
            assert args.trust_host == urlsplit(files_base).hostname
            # Simulated minutes pass in milliseconds: it polls as ``run --simulate`` would.
            assert (float(args.poll_min), float(args.poll_max)) == (0.05, 0.5)

            # Against the running server: the token is accepted at that API base, and the
            # video URL it hands out is one the orchestrator downloads with that trust.
            token = words[0].split("=", 1)[1]
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=args.api_base, headers=headers, verify=TLS) as api:
                submitted = api.post(f"/v1/models/{PRO}", json=payload(PRO))
                assert submitted.status_code == 200, submitted.text
                rid = submitted.json()["request_id"]
                result: dict[str, Any] = {}
                deadline = time.monotonic() + 30  # a 40-90 s job at time scale 0.001
                while result.get("status") != "completed" and time.monotonic() < deadline:
                    result = api.get(f"/v1/requests/{rid}/result").json()
            assert result.get("status") == "completed", result
            video_url = result["output"]["video"]
            assert video_url.startswith(files_base + "/files/")
            assert host_allowed(video_url, args.trust_host.split(",")) is None
            assert host_allowed(video_url, []) is not None  # the trust is what allows it
            video = fetch(video_url)
            assert video.status_code == 200
            assert video.content[4:8] == b"ftyp"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            finally:
                if process.poll() is None:  # pragma: no cover - only if SIGTERM was ignored
                    process.kill()
                    process.wait()
                assert process.stdout is not None
                process.stdout.close()
