"""Probing https image URLs (opt-in): a capped download, then the same probe as a file."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest
from PIL import Image

from orchestrator.media import ImageUnreadable, NotAnImage, TooLarge
from orchestrator.media.remote import probe_url

if TYPE_CHECKING:
    from collections.abc import Iterator


def png_bytes(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def client_for(status: int, body: bytes) -> httpx.Client:
    return httpx.Client(
        transport=httpx.MockTransport(lambda _request: httpx.Response(status, content=body))
    )


def test_probe_url_reads_size_and_hash() -> None:
    with client_for(200, png_bytes((640, 360))) as client:
        info = probe_url("https://files.example/a/frame.png", client=client)
    assert (info.format, info.width, info.height) == ("PNG", 640, 360)
    assert info.path == "frame.png"


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (404, b"", ImageUnreadable, "HTTP 404"),
        (200, b"not an image", NotAnImage, "not an image"),
        (200, b"x" * 2048, TooLarge, "larger than"),
    ],
    ids=["http-404", "not-an-image", "too-large"],
)
def test_probe_url_errors(status: int, body: bytes, error: type[Exception], words: str) -> None:
    with client_for(status, body) as client, pytest.raises(error, match=words):
        probe_url("https://files.example/x.png", client=client, max_bytes=1024)


@pytest.fixture
def image_server() -> Iterator[str]:
    """A real HTTP server on loopback serving one PNG at /frame.png."""
    body = png_bytes((800, 600))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/frame.png" else 404)
            self.send_header("Content-Length", str(len(body) if self.path == "/frame.png" else 0))
            self.end_headers()
            if self.path == "/frame.png":
                self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_probe_url_over_a_loopback_socket(image_server: str) -> None:
    info = probe_url(f"{image_server}/frame.png")
    assert (info.width, info.height) == (800, 600)
    with pytest.raises(ImageUnreadable, match="HTTP 404"):
        probe_url(f"{image_server}/missing.png")
