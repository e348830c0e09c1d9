"""Every seed model takes a data URI or an https URL and yields a playable H.264 MP4."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import av
import pytest
from model_ids import ALL, DREAMINA, LITE, PRO, RUNWAY, V15
from simulator_helpers import HTTPS_IMAGE, Sim, data_uri, payload, probe_video, running

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Per model: the extra fields asking for a length, and the seconds that length means.
LENGTHS: dict[str, tuple[dict[str, Any], float]] = {
    PRO: ({"duration": 3}, 3.0),
    LITE: ({"duration": 5}, 5.0),
    DREAMINA: ({"frames": 241}, 10.0),
    V15: ({}, 5.0),  # the schema default
    RUNWAY: ({"duration": 10}, 10.0),
}


def _input(kind: str, model_id: str) -> str:
    """A distinct image per test, so each one renders exactly one new video."""
    color = (ALL.index(model_id) * 40, 90, 200 if kind == "jpeg" else 20)
    if kind == "https":
        return f"{HTTPS_IMAGE}?model={ALL.index(model_id)}"
    return data_uri(fmt=kind.upper(), color=color)


@pytest.fixture(scope="module")
def shared() -> Iterator[Sim]:
    """One server for the fifteen model x input renders (each test uses its own image)."""
    with running({"video_fps": 4, "video_max_side": 64}) as sim:
        yield sim


@pytest.mark.parametrize("kind", ["jpeg", "png", "https"])
@pytest.mark.parametrize("model_id", ALL)
def test_every_model_renders_a_playable_video(shared: Sim, model_id: str, kind: str) -> None:
    extra, seconds = LENGTHS[model_id]
    renders = shared.ledger()["renders"]
    rid = shared.submit_ok(model_id, payload(model_id, _input(kind, model_id), **extra))
    assert shared.status(rid)["status"] == "in_progress"
    shared.clock.advance(10)
    assert shared.status(rid)["status"] == "completed"
    download = shared.download(shared.video_url(rid))
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert int(download.headers["content-length"]) == len(download.content)
    codec, frames, duration = probe_video(download.content)
    assert codec == "h264"
    assert frames == round(seconds * 4)
    assert duration == pytest.approx(seconds, abs=0.5)
    assert shared.ledger()["renders"] == renders + 1


def test_the_video_follows_the_image_shape() -> None:
    with running({"video_max_side": 96}) as sim:
        rid = sim.submit_ok(PRO, payload(PRO, data_uri((640, 400), fmt="JPEG")))
        sim.clock.advance(10)
        data = sim.download(sim.video_url(rid)).content
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 60)


def test_one_input_is_rendered_once_across_many_jobs() -> None:
    image = data_uri(fmt="JPEG", color=(10, 160, 60))
    with running({"slots": 8}) as sim:
        ids = [sim.submit_ok(PRO, payload(PRO, image, prompt=f"take {n}")) for n in range(6)]
        ids += [sim.submit_ok(LITE, payload(LITE, image, prompt=f"lite {n}")) for n in range(2)]
        sim.clock.advance(10)
        videos = {sim.download(sim.video_url(rid)).content for rid in ids}
        assert len(videos) == 1
        assert sim.ledger()["renders"] == 1
        assert sim.server.simulator.videos.renders == 1
        # A different image (or a different length) is a different video.
        other = sim.submit_ok(PRO, payload(PRO, data_uri(fmt="PNG", color=(1, 2, 3))))
        longer = sim.submit_ok(PRO, payload(PRO, image, duration=3))
        sim.clock.advance(10)
        for rid in (other, longer):
            assert sim.download(sim.video_url(rid)).content not in videos
        assert sim.ledger()["renders"] == 3


def test_the_same_https_url_shares_a_placeholder_video() -> None:
    with running({"slots": 3}) as sim:
        ids = [sim.submit_ok(RUNWAY, payload(RUNWAY, HTTPS_IMAGE, seed=n)) for n in range(3)]
        sim.clock.advance(10)
        assert len({sim.download(sim.video_url(rid)).content for rid in ids}) == 1
        assert sim.ledger()["renders"] == 1
