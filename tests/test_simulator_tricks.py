"""The file host's hostile replies (profile ``file_tricks``) over a real socket."""

from __future__ import annotations

import gzip
import hashlib
import io
import queue
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

import av
import httpx
import pytest
from model_ids import PRO
from simulator_helpers import Sim, host_of, probe_video, running

from orchestrator.simulator import ProfileError, parse_profile
from orchestrator.simulator.tricks import UNTRUSTED_HOST, FileTricks, parse_file_tricks

if TYPE_CHECKING:
    from orchestrator.simulator.filetricks import TrickedDownload

#: Six seconds at 8 fps: 48 frames, as in the issue that found the faststart cut.
LONG = {"video_seconds": 6, "video_fps": 8}


def tricked(**tricks: Any) -> dict[str, Any]:
    return {**LONG, "file_tricks": tricks}


def rendered(sim: Sim) -> tuple[str, str]:
    """A finished job's request id and its download URL."""
    rid = sim.submit_ok(PRO)
    sim.clock.advance(10)
    return rid, sim.video_url(rid)


def frames_claimed_and_read(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        whole = sum(1 for p in container.demux(stream) if p.size and not p.is_corrupt)
        return stream.frames, whole


def sent_at_least(count: int, records: list[TrickedDownload]) -> bool:
    return records[0].sent >= count


# -- settings ----------------------------------------------------------------------------------


def test_no_tricks_by_default_and_none_in_front_of_the_app() -> None:
    assert parse_profile({}).file_tricks == FileTricks()
    assert not FileTricks().enabled
    with running() as sim:
        assert sim.server.files.tricks is None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"gzip": True}, "unknown file_tricks key(s) gzip; known: drip_seconds"),
        ({"gzip_videos": 1}, "file_tricks.gzip_videos must be true or false"),
        ({"redirect_hops": -1}, "file_tricks.redirect_hops must be a whole number >= 0"),
        ({"redirect_hops": 21}, "file_tricks.redirect_hops must be at most 20"),
        ({"drip_seconds": "2"}, "file_tricks.drip_seconds must be a number of seconds"),
        ({"drip_seconds": float("inf")}, "file_tricks.drip_seconds must be a number"),
        ({"first_downloads": 1.5}, "file_tricks.first_downloads must be a whole number"),
        ({"redirect_untrusted": True}, "redirect_untrusted needs redirect_hops >= 1"),
        ([], "file_tricks must be a mapping"),
    ],
)
def test_bad_tricks_are_profile_errors(raw: Any, why: str) -> None:
    with pytest.raises(ProfileError, match=r"^p\.yaml: ") as caught:
        parse_profile({"file_tricks": raw}, origin="p.yaml")
    assert why in str(caught.value)


def test_tricks_parse() -> None:
    tricks = parse_file_tricks(
        {"truncate_faststart": True, "drip_seconds": 2, "first_downloads": None}
    )
    assert tricks.truncate_faststart
    assert tricks.drip_seconds == 2.0
    assert tricks.first_downloads is None
    assert tricks.changes_body
    assert tricks.enabled


# -- each trick --------------------------------------------------------------------------------


def test_truncate_faststart_serves_a_cut_that_opens_and_claims_every_frame() -> None:
    with running(tricked(truncate_faststart=True, first_downloads=1)) as sim:
        _rid, url = rendered(sim)
        cut = sim.download(url)
        whole = sim.download(url)  # the second download is not tricked
        ledger = sim.ledger()
    assert cut.status_code == 200
    assert whole.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content)  # honest about the cut
    assert len(cut.content) == int(len(whole.content) * 0.6)
    claimed, read = frames_claimed_and_read(cut.content)
    assert claimed == 48
    assert read < 40
    assert frames_claimed_and_read(whole.content) == (48, 48)
    assert ledger["faults"] == {"truncate_faststart": 1}


def test_redirect_hops_alternate_between_the_two_names_and_end_on_the_file_host() -> None:
    with running(tricked(redirect_hops=3)) as sim:
        _rid, url = rendered(sim)
        first = sim.download(url)
        hops = [first]
        while hops[-1].status_code == 302:
            hops.append(sim.download(hops[-1].headers["location"]))
        ledger = sim.ledger()
    assert [r.status_code for r in hops] == [302, 302, 302, 200]
    hosts = [host_of(str(r.request.url)) for r in hops]
    assert hosts == ["localhost", "localhost", "127.0.0.1", "localhost"]
    assert probe_video(hops[-1].content)[1] == 48
    assert [d["status"] for d in ledger["downloads"]] == [302, 302, 302, 200]
    assert ledger["faults"] == {"redirect": 1}


def test_redirect_untrusted_points_the_last_hop_away() -> None:
    with running(tricked(redirect_hops=2, redirect_untrusted=True)) as sim:
        _rid, url = rendered(sim)
        first = sim.download(url)
        second = sim.download(first.headers["location"])
    assert host_of(first.headers["location"]) == "127.0.0.1"
    assert second.status_code == 302
    assert host_of(second.headers["location"]) == UNTRUSTED_HOST


def test_gzip_videos_are_sent_compressed_with_their_coding() -> None:
    with running(tricked(gzip_videos=True)) as sim:
        _rid, url = rendered(sim)
        with sim.files.stream("GET", url) as response:
            raw = b"".join(response.iter_raw())
            headers = response.headers
        tricks = sim.server.files.tricks
        assert tricks is not None
        # The host marks the record after its last send returns, which may be after the
        # client has read the last byte: wait for the mark, not for a while.
        assert tricks.wait_for(lambda records: records[0].finished, 10)
        record = tricks.records()[0]
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(raw)
    assert probe_video(gzip.decompress(raw))[1] == 48
    assert record.tricks == ("gzip_video",)
    assert record.sha256 == hashlib.sha256(raw).hexdigest()
    assert record.finished


def test_drip_sends_one_byte_per_interval_of_the_simulators_clock() -> None:
    with running(tricked(drip_seconds=2)) as sim:
        _rid, url = rendered(sim)
        tricks = sim.server.files.tricks
        assert tricks is not None
        got: queue.Queue[bytes] = queue.Queue()

        def read() -> None:
            with sim.files.stream("GET", url) as response:
                for count, piece in enumerate(response.iter_raw(), start=1):
                    got.put(piece)
                    if count == 3:
                        return  # the client leaves: the drip must stop too

        reader = threading.Thread(target=read)
        reader.start()
        pieces = [got.get(timeout=10)]  # the first byte goes at once
        for count in (1, 2):
            # Nothing more until the simulator's clock moves: the drip waits on it.
            assert tricks.wait_for(partial(sent_at_least, count), 10)
            assert tricks.records()[0].sent == count
            assert got.empty()
            sim.clock.advance(2)
            pieces.append(got.get(timeout=10))
        reader.join(10)
        assert tricks.wait_for(lambda records: records[0].ended, 10)
        record = tricks.records()[0]
    assert [len(p) for p in pieces] == [1, 1, 1]
    assert record.tricks == ("drip",)
    assert not record.finished
    assert record.sent == 3
    assert record.total > 1000


def test_first_downloads_counts_every_url_version_of_a_video() -> None:
    with running(tricked(gzip_videos=True, first_downloads=2)) as sim:
        rid, url = rendered(sim)
        codings = [sim.download(url).headers.get("content-encoding")]
        codings.append(sim.download(sim.video_url(rid)).headers.get("content-encoding"))
        codings.append(sim.download(sim.video_url(rid)).headers.get("content-encoding"))
        assert sim.server.files.tricks is not None
        assert sim.server.files.tricks.downloads_of(rid) == 3
    assert codings == ["gzip", "gzip", None]


def test_a_403_is_not_tricked() -> None:
    with running(tricked(gzip_videos=True)) as sim:
        _rid, url = rendered(sim)
        refused = sim.download(url.replace("sig=", "sig=0"))
    assert refused.status_code == 403
    assert "content-encoding" not in refused.headers


def test_outside_the_files_path_the_app_answers() -> None:
    with running(tricked(redirect_hops=1)) as sim:
        files = f"http://localhost:{sim.server.files_port}"
        response = sim.download(f"{files}/other")
    assert response.status_code == 404
    assert isinstance(response, httpx.Response)
