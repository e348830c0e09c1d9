"""Typed views of RunComfy's replies, parsed tolerantly.

Unknown fields are ignored; the video URL is ``output.video``, else ``output.videos[0]``,
else the first http(s) URL found anywhere under ``output`` (some models nest it). An output
that holds a URL no client can download instead (``ftp:``, ``file:``, ``data:``, a relative
path ...) is kept apart as ``unusable_url``: the job rendered (and was billed), so it is a
result for a person to look at, not a failure to pay for again.

>>> RemoteResult.parse({"status": "completed", "output": {"videos": ["https://x/v.mp4"]}}).video_url
'https://x/v.mp4'
>>> RemoteResult.parse({"status": "succeeded", "output": {"a": {"url": "https://x/y.mp4"}}}).video_url
'https://x/y.mp4'
>>> RemoteResult.parse({"status": "completed", "output": {"video": "ftp://x/v.mp4"}}).unusable_url
'ftp://x/v.mp4'
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: Remote states, case-folded. Anything else counts as still running.
SUCCESS_STATES = frozenset({"completed", "succeeded", "success"})
FAILURE_STATES = frozenset({"failed", "error"})
CANCELLED_STATES = frozenset({"cancelled", "canceled"})
TERMINAL_STATES = SUCCESS_STATES | FAILURE_STATES | CANCELLED_STATES
URL_KEYS = ("video", "videos", "url", "path")
#: Levels of nesting searched under ``output`` (a reply is JSON; this bounds the walk).
MAX_DEPTH = 32
SKIPPED_KEYS = ("image", "images", "thumbnail")
#: A URL scheme (``ftp:``, ``data:``, ``javascript:`` ...), case-insensitive.
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}:")
#: Endings that make a string without a scheme look like a (relative) file reference.
MEDIA_ENDINGS = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi", ".gif")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _stamp(value: Any) -> str | float | None:
    """A server timestamp as sent: text (ISO 8601) or a number (epoch seconds or ms); the
    engine decides what it means (:mod:`orchestrator.engine.runtimes`)."""
    if isinstance(value, str):
        return value[:64] if value else None
    return _number(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class Submitted:
    """The reply to a submit: the request id (and the URLs the server suggested)."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """``GET /status``: the state and, while queued, the place in the queue."""

    status: str
    queue_position: int | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> RemoteStatus:
        position = body.get("queue_position")
        return cls(
            status=str(body.get("status") or "unknown").lower(),
            queue_position=position if isinstance(position, int) else None,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """``GET /result``: the state, and the output, error and cost once finished."""

    status: str
    video_url: str | None = None
    error: str | None = None
    cost: float | None = None
    created_at: str | float | None = None
    started_at: str | float | None = None
    finished_at: str | float | None = None
    unusable_url: str | None = None
    """A URL (or URL-like string) the output holds where no downloadable one is: an
    ``ftp:``, ``file:``, ``data:`` or ``javascript:`` URL, a relative path, an http(s)
    URL without a host. Never set together with ``video_url``; may be any length."""

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> RemoteResult:
        output = body.get("output")
        error = body.get("error")
        video_url, unusable_url = find_output(output)
        return cls(
            status=str(body.get("status") or "unknown").lower(),
            video_url=video_url,
            unusable_url=unusable_url,
            error=None if error in (None, "", {}, []) else _error_text(error),
            cost=_number(body.get("cost")),
            created_at=_stamp(body.get("created_at")),
            started_at=_stamp(body.get("started_at")),
            finished_at=_stamp(body.get("finished_at")),
        )

    @property
    def succeeded(self) -> bool:
        """Success is judged here, never from /status: a success state and a video URL."""
        return self.status in SUCCESS_STATES and self.video_url is not None

    @property
    def unusable(self) -> bool:
        """Finished with success and an output URL that cannot be downloaded: rendered
        (so paid for), with nothing the engine can fetch. A person decides."""
        return self.status in SUCCESS_STATES and self.unusable_url is not None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class CancelReply:
    """``POST /cancel``: ``cancelled`` only while queued, else ``not_cancellable``."""

    outcome: str
    status: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.outcome == "cancelled" or self.status in CANCELLED_STATES


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """``GET /v1/models/{id}``: price and schema as the API publishes them."""

    model_id: str
    base_price_usd: float | None
    price_unit: str | None
    input_schema: Mapping[str, Any] | None
    display_name: str | None = None
    pricing_note: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The entry as the API sent it (for the catalog cache)."""

    @classmethod
    def parse(cls, body: Mapping[str, Any], model_id: str = "") -> ModelInfo:
        """One catalog entry; fields of the wrong type are dropped, never trusted."""
        price = _number(body.get("base_price_usd"))
        schema = body.get("input_schema")
        unit = body.get("price_unit")
        return cls(
            model_id=str(body.get("model_id") or model_id)[:200],
            base_price_usd=price if price is not None and price >= 0 else None,
            price_unit=unit.lower()[:20] if isinstance(unit, str) else None,
            input_schema=schema if isinstance(schema, Mapping) else None,
            display_name=_text(body.get("display_name")),
            pricing_note=_text(body.get("pricing_note")),
            raw=body,
        )


def find_video_url(output: Any) -> str | None:
    """The URL to download (see :func:`find_output`), or None."""
    return find_output(output)[0]


def find_output(output: Any) -> tuple[str | None, str | None]:
    """(the video URL to download, an undownloadable URL found instead), at most one set.

    The named video (``output`` itself when it is text, ``video``, else ``videos[0]``)
    decides when it looks like a URL: downloadable or not, it is the one meant (a nested
    preview is no stand-in for it). Else the first http(s) URL anywhere; else the first
    URL-like string anywhere, or any text under a video-ish key (``video``, ``url`` ...).
    Images and thumbnails are skipped; an output with none of these has no output at all.

    >>> find_output({"video": "ftp://x/v.mp4", "preview": "https://x/p.gif"})
    (None, 'ftp://x/v.mp4')
    >>> find_output({"video": "not a url", "clip": "https://x/c.mp4"})
    ('https://x/c.mp4', None)
    >>> find_output({"image": "https://x/i.png", "frames": 48})
    (None, None)
    """
    named = _named_video(output)
    if named is not None and _url_like(named):
        return (named, None) if _is_url(named) else (None, named)
    found = next((text for text, _keyed in _texts(output) if _is_url(text)), None)
    if found is not None:
        return found, None
    odd = (text for text, keyed in _texts(output) if keyed or _url_like(text))
    return None, next(odd, None)


def _named_video(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping):
        video = output.get("video")
        if isinstance(video, str):
            return video
        videos = output.get("videos")
        first = videos[0] if isinstance(videos, list) and videos else None
        if isinstance(first, str):
            return first
    return None


def _texts(value: Any, keyed: bool = False, depth: int = 0) -> Iterator[tuple[str, bool]]:
    """Every non-empty string under ``value`` (video-ish keys first), with whether it sits
    under a video-ish key; images and thumbnails skipped, nesting bounded."""
    if isinstance(value, str):
        if value:
            yield value, keyed
    elif depth > MAX_DEPTH:
        return
    elif isinstance(value, Mapping):
        # Video-ish keys first, so a nested thumbnail image does not win over the video.
        keys = sorted(value, key=lambda k: (k not in URL_KEYS, str(k)))
        for key in keys:
            if key in SKIPPED_KEYS:
                continue
            yield from _texts(value[key], keyed or key in URL_KEYS, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, keyed, depth + 1)


def _is_url(text: str) -> bool:
    """An http(s) URL with a host: something a client can try to download."""
    if not text[:8].lower().startswith(("https://", "http://")):
        return False
    try:
        return bool(urlsplit(text).hostname)
    except ValueError:  # an unbalanced [ in the host, say
        return False


def _url_like(text: str) -> bool:
    """Whether a string is meant as a link to a file: a scheme, a path, or a media file
    name, with no white space (text such as a caption is not)."""
    if any(c.isspace() for c in text):
        return False
    return (
        bool(SCHEME.match(text))
        or "/" in text
        or "\\" in text
        or text.lower().endswith(MEDIA_ENDINGS)
    )


def shown_reply(value: Any, limit: int) -> str:
    """A value a server sent, for a message or a log line: quoted as ``repr`` quotes it
    (control characters escaped, so it cannot rewrite a terminal), at most ``limit``
    characters, ending in ``...`` when cut. The work is bounded by ``limit`` too.

    >>> shown_reply("ftp://x/v.mp4", 40), shown_reply("x" * 99, 10), shown_reply(7, 10)
    ("'ftp://x/v.mp4'", "'xxxxxx...", '7')
    """
    text = repr(value[:limit]) if isinstance(value, str) else reprlib.repr(value)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _error_text(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, Mapping):
        for key in ("message", "error_message", "error", "detail"):
            if isinstance(error.get(key), str):
                return str(error[key])
    if isinstance(error, list) and error:
        return "; ".join(_error_text(item) for item in error)
    return str(error)
