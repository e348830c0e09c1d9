"""Logging set-up: structlog to stderr, secrets redacted from every line.

Stdout belongs to command output (summaries, ``--json``); log lines go to stderr. The
redaction processor replaces any registered secret (the API token) and any
``Bearer ...`` value, wherever it appears in an event, so a token cannot leak through an
exception message or a logged header.

>>> redact_secrets(None, "info", {"event": "x", "header": "Bearer abc123"})["header"]
'Bearer <redacted>'
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

from orchestrator.redact import redact
from orchestrator.redact import register_secret as register_secret

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from pathlib import Path

_DATA_URI = re.compile(r"data:[a-z]+/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]{16,}", re.I)


def _clean(text: str) -> str:
    return _DATA_URI.sub("data:<image omitted>", redact(text))


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


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the moment of writing (it may be replaced after
    logging was configured: test capture, a daemonised process)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class JsonLinesFile:
    """A structlog processor that also appends each (already redacted) event as one JSON
    line to a file: the per-batch log a user or a tool can read after the night.

    The log lives beside the videos, so a full disk fills it too: a line that cannot be
    written turns the file off (one warning on stderr), and the run goes on to fetch what
    it can and print its summary. A log must never be the reason a paid video is lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as exc:
            self._give_up(exc)

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._handle is not None:
            try:
                self._handle.write(json.dumps(dict(event), default=str, sort_keys=True) + "\n")
            except OSError as exc:
                self._give_up(exc)
        return event

    def _give_up(self, error: OSError) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"warning: the batch log {self.path} is off: {error}\n")

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):  # the last buffered line on a full disk
                handle.close()


_file_sink: JsonLinesFile | None = None


def _console_only_info(
    _logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if method == "debug":
        raise structlog.DropEvent
    return event


def configure_logging(
    stream: TextIO | None = None, *, json_lines: bool = False, json_file: Path | None = None
) -> None:
    """Send structlog output to ``stream`` (stderr by default), redacted; with
    ``json_file``, every line also goes there as JSON."""
    global _file_sink
    if _file_sink is not None:
        _file_sink.close()
        _file_sink = None
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become text before redaction: an exception message may hold a secret.
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    if json_file is not None:
        _file_sink = JsonLinesFile(json_file)
        processors.append(_file_sink)
    # Every state transition is logged at debug level: kept in the batch file, too
    # many for a console.
    processors.append(_console_only_info)
    structlog.configure(
        processors=[*processors, renderer],
        logger_factory=structlog.PrintLoggerFactory(
            file=stream or cast("TextIO", _CurrentStderr())
        ),
        cache_logger_on_first_use=False,
    )
