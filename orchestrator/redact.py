"""One redaction policy for every sink: the API token never leaves in any output.

A server may echo the ``Authorization`` header back (in a 422 body, a failed job's
``error``, a catalog entry). The policy is applied where replies enter (every reply body
the API client parses) and again at each sink: the console and ``--json`` output, log
lines, the store's error texts and events, sidecars, reports and exports.

What is masked: every registered secret (the token), and any ``Bearer ...`` value. A secret
shorter than :data:`MIN_SECRET_LENGTH` is never masked by substring (a token ``t`` would
mask every letter t); such a token is refused where it is read (see
:func:`check_token`), so it cannot reach a sink unmasked.

>>> register_secret("tok-0123456789")
>>> redact("bad token tok-0123456789 (Authorization: Bearer tok-0123456789)")
'bad token <redacted> (Authorization: Bearer <redacted>)'
>>> redact_value({"error": ["Bearer abc.def"], "n": 3})
{'error': ['Bearer <redacted>'], 'n': 3}
"""

from __future__ import annotations

import re
import threading
from typing import Any, Final, TextIO

MIN_SECRET_LENGTH: Final = 8
"""Shorter secrets are refused rather than masked by substring."""

MASK: Final = "<redacted>"
_BEARER = re.compile(r"Bearer\s+[^\s'\",;)\]}]+")
_secrets: set[str] = set()
_lock = threading.Lock()
_MAX_DEPTH = 64


class ShortSecret(ValueError):
    """A token too short to be masked safely in output."""


def check_token(token: str, where: str) -> str:
    """``token`` if it is long enough to mask by substring, else :class:`ShortSecret`."""
    if len(token) < MIN_SECRET_LENGTH:
        raise ShortSecret(
            f"{where} is {len(token)} character(s) long: too short to be a RunComfy token "
            f"and to keep out of every output (at least {MIN_SECRET_LENGTH} are needed)"
        )
    return token


def register_secret(value: str) -> None:
    """Mask ``value`` from now on, wherever it appears (ignored when too short to mask)."""
    if len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and every ``Bearer`` value masked."""
    for secret in _registered():
        if secret in text:
            text = text.replace(secret, MASK)
    if "Bearer" in text:
        text = _BEARER.sub(f"Bearer {MASK}", text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    """Strings redacted all the way down a JSON-like value (keys included); other values
    as they are. Past a depth of 64 a value is left as it is: a reply that deep is refused
    elsewhere, and recursion must not be the failure."""
    if isinstance(value, str):
        return redact(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {redact_value(k, depth + 1): redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item, depth + 1) for item in value]
    return value


def _registered() -> tuple[str, ...]:
    with _lock:
        # Longest first: a secret that contains another is masked whole.
        return tuple(sorted(_secrets, key=len, reverse=True))


class RedactingStream:
    """A text stream that redacts what is written, then passes it on (stdout, stderr).

    Anything else (``isatty``, ``fileno``, ``encoding`` ...) is the wrapped stream's, so a
    live progress panel still sees the terminal it draws on.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
