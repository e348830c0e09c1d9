"""Typed views of RunComfy's replies, parsed tolerantly.

Unknown fields are ignored; the video URL is ``output.video``, else ``output.videos[0]``,
else the first http(s) URL found anywhere under ``output`` (some models nest it).

>>> RemoteResult.parse({"status": "completed", "output": {"videos": ["https://x/v.mp4"]}}).video_url
'https://x/v.mp4'
>>> RemoteResult.parse({"status": "succeeded", "output": {"a": {"url": "https://x/y.mp4"}}}).video_url
'https://x/y.mp4'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Remote states, case-folded. Anything else counts as still running.
SUCCESS_STATES = frozenset({"completed", "succeeded", "success"})
FAILURE_STATES = frozenset({"failed", "error"})
CANCELLED_STATES = frozenset({"cancelled", "canceled"})
TERMINAL_STATES = SUCCESS_STATES | FAILURE_STATES | CANCELLED_STATES
URL_KEYS = ("video", "videos", "url", "path")


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

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> RemoteResult:
        output = body.get("output")
        error = body.get("error")
        return cls(
            status=str(body.get("status") or "unknown").lower(),
            video_url=find_video_url(output),
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
    """``video``, else ``videos[0]``, else the first http(s) URL anywhere in ``output``."""
    if isinstance(output, str):
        return output if _is_url(output) else None
    if isinstance(output, Mapping):
        video = output.get("video")
        if isinstance(video, str) and _is_url(video):
            return video
        videos = output.get("videos")
        first = videos[0] if isinstance(videos, list) and videos else None
        if isinstance(first, str) and _is_url(first):
            return first
    return next(_urls(output), None)


def _urls(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if _is_url(value):
            yield value
    elif isinstance(value, Mapping):
        # Video-ish keys first, so a nested thumbnail image does not win over the video.
        keys = sorted(value, key=lambda k: (k not in URL_KEYS, str(k)))
        for key in keys:
            if key in ("image", "images", "thumbnail"):
                continue
            yield from _urls(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from _urls(item)


def _is_url(text: str) -> bool:
    return text.startswith(("https://", "http://"))


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
