"""Shared helpers for the simulator tests: tiny images, valid payloads, a running simulator.

``with running({...}) as sim`` starts a real :class:`SimulatorServer` on loopback with a
:class:`ManualClock`, an API client carrying a bearer token and a file client without one.
"""

from __future__ import annotations

import base64
import io
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import av
import httpx
from model_ids import DREAMINA, LITE, PRO, RUNWAY, V15
from PIL import Image

from orchestrator.simulator import ManualClock, Profile, SimulatorServer, parse_profile

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

TOKEN = "sim-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Small, fast settings every test profile starts from (fixed 10 s jobs, tiny videos).
BASE_SETTINGS: dict[str, Any] = {
    "slots": 2,
    "durations": {"default": {"distribution": "fixed", "seconds": 10}},
    "prices": {"default": 0.1},
    "video_fps": 4,
    "video_max_side": 64,
}
ERROR_KEYS = {"error_code", "error_message", "detail"}
IMAGE_FIELD = {
    PRO: "first_frame_image_url",
    LITE: "first_frame_image_url",
    V15: "first_frame_image_url",
    DREAMINA: "image_urls",
    RUNWAY: "promptImage",
}
HTTPS_IMAGE = "https://images.example/frames/beach.jpg"

_ENCODED: dict[tuple[object, ...], bytes] = {}
#: Built once: loading the CA bundle for every client costs ~30 ms (only http is used here).
TLS = ssl.create_default_context()


Color = tuple[int, int, int]


def image_bytes(
    size: tuple[int, int] = (400, 400), fmt: str = "PNG", color: Color = (200, 120, 40)
) -> bytes:
    """A real image made with Pillow (encoded once per recipe)."""
    key = (size, fmt, color)
    if key not in _ENCODED:
        buffer = io.BytesIO()
        Image.new("RGB", size, color).save(buffer, fmt)
        _ENCODED[key] = buffer.getvalue()
    return _ENCODED[key]


def data_uri(
    size: tuple[int, int] = (400, 400), fmt: str = "PNG", color: Color = (200, 120, 40)
) -> str:
    mime = {"PNG": "image/png", "JPEG": "image/jpeg"}[fmt]
    encoded = base64.b64encode(image_bytes(size, fmt, color)).decode()
    return f"data:{mime};base64,{encoded}"


def payload(model_id: str, image: str | None = None, **extra: Any) -> dict[str, Any]:
    """A minimal valid submit body for one of the seed models."""
    image = image if image is not None else data_uri()
    if model_id == RUNWAY:
        body: dict[str, Any] = {"promptImage": image, "promptText": "a slow dolly-in"}
    elif model_id == DREAMINA:
        body = {"prompt": "a slow dolly-in", "image_urls": [image]}
    else:
        body = {"prompt": "a slow dolly-in", "first_frame_image_url": image}
    body.update(extra)
    return body


def profile(settings: Mapping[str, Any] | None = None) -> Profile:
    """The small base profile with ``settings`` layered on top."""
    return parse_profile({**BASE_SETTINGS, **(settings or {})}, name="test")


def assert_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The documented error body: exactly error_code, error_message and detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error_code"] == code
    assert isinstance(body["error_message"], str)
    assert body["error_message"]
    return dict(body)


def probe_video(data: bytes) -> tuple[str, int, float]:
    """(codec, decoded frames, duration in seconds) of an MP4 held in memory."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = len(list(container.decode(video=0)))
        assert container.duration is not None
        seconds = container.duration / av.time_base
    return codec, frames, seconds


@dataclass
class Sim:
    """A running simulator and clients for it."""

    server: SimulatorServer
    clock: ManualClock
    api: httpx.Client
    files: httpx.Client

    @property
    def api_base(self) -> str:
        return self.server.api_base

    def submit(self, model_id: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.api.post(f"/v1/models/{model_id}", json=body, **kwargs)

    def submit_ok(self, model_id: str = PRO, body: Any = None) -> str:
        """Submit a valid body (the default one if none) and return its request id."""
        response = self.submit(model_id, body if body is not None else payload(model_id))
        assert response.is_success, response.text
        return str(response.json()["request_id"])

    def status(self, request_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/requests/{request_id}/status")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def result(self, request_id: str, *, include_cost: bool = False) -> dict[str, Any]:
        params = {"include_cost": "true"} if include_cost else {}
        response = self.api.get(f"/v1/requests/{request_id}/result", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def cancel(self, request_id: str) -> httpx.Response:
        return self.api.post(f"/v1/requests/{request_id}/cancel")

    def video_url(self, request_id: str) -> str:
        result = self.result(request_id)
        assert result["status"] == "completed", result
        return str(result["output"]["video"])

    def download(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET a file URL with the token-free client."""
        return self.files.get(url, **kwargs)

    def ledger(self) -> dict[str, Any]:
        return self.server.simulator.snapshot()


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


@contextmanager
def running(
    settings: Mapping[str, Any] | Profile | None = None,
    *,
    token: str | None = None,
    timeout: float = 10.0,
) -> Iterator[Sim]:
    """A fresh simulator server on loopback, driven by a ManualClock."""
    chosen = settings if isinstance(settings, Profile) else profile(settings)
    clock = ManualClock()
    with (
        SimulatorServer(chosen, clock=clock, token=token) as server,
        httpx.Client(base_url=server.api_base, headers=AUTH, timeout=timeout, verify=TLS) as api,
        httpx.Client(timeout=timeout, verify=TLS) as files,
    ):
        yield Sim(server, clock, api, files)
