"""Probing an image given by https URL, only when a user asks (``--probe-urls``).

RunComfy fetches URL images itself; checking them locally first costs one download each,
so it is opt-in. The download is size-capped and follows no redirects to other schemes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from orchestrator.media.errors import ImageUnreadable, TooLarge
from orchestrator.media.probe import ImageInfo, probe_bytes

#: RunComfy recommends images of at most 50 MB; anything larger is refused unread.
MAX_URL_IMAGE_BYTES = 50 * 1024 * 1024


def probe_url(
    url: str, *, client: httpx.Client | None = None, max_bytes: int = MAX_URL_IMAGE_BYTES
) -> ImageInfo:
    """Download ``url`` (streamed, capped) and probe it like a local file."""
    owned = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(20.0, connect=10.0))
    name = urlsplit(url).path.rsplit("/", 1)[-1] or url
    try:
        with http.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ImageUnreadable(f"download failed with HTTP {response.status_code}", url)
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(f"larger than {max_bytes // (1024 * 1024)} MiB", url)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ImageUnreadable(f"cannot download: {exc}", url) from exc
    finally:
        if owned:
            http.close()
    return probe_bytes(b"".join(chunks), name)
