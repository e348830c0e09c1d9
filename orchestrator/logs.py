"""Logging set-up: structlog to stderr, secrets redacted from every line.

Stdout belongs to command output (summaries, ``--json``); log lines go to stderr. The
redaction processor replaces any registered secret (the API token) and any
``Bearer ...`` value, wherever it appears in an event, so a token cannot leak through an
exception message or a logged header.

>>> redact_secrets(None, "info", {"event": "x", "header": "Bearer abc123"})["header"]
'Bearer <redacted>'
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
_BEARER = re.compile(r"Bearer\s+[^\s'\",]+")
_DATA_URI = re.compile(r"data:[a-z]+/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]{16,}", re.I)


def register_secret(value: str) -> None:
    """Never print this value (the API token) in any log line."""
    if value:
        _SECRETS.add(value)


def _clean(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "<redacted>")
    text = _BEARER.sub("Bearer <redacted>", text)
    return _DATA_URI.sub("data:<image omitted>", text)


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: scrub secrets and data URIs from every string value."""
    for key, value in list(event.items()):
        event[key] = _scrub(value)
    return event


def _scrub(value: Any) -> Any:
    """Strings cleaned, dicts and lists (logged headers, say) cleaned all the way down."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, int | float | bool | type(None)):
        return value
    return _clean(repr(value))


def configure_logging(stream: TextIO | None = None, *, json_lines: bool = False) -> None:
    """Send structlog output to ``stream`` (stderr by default), redacted."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks become text before redaction: an exception message may hold a secret.
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
