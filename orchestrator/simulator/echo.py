"""A hostile API host: every string it can plant the caller's Authorization header in, it does.

:class:`EchoAuthorization` wraps the simulator's API app (``SimulatorServer(...,
echo_authorization=True)``). In each JSON reply it appends the request's
``Authorization`` header to every free-text string (error messages, a failed job's
``error``, validation details, catalog names and notes) and adds it as a query parameter to
every URL (status, result and video URLs), the way a careless proxy or a debug build
echoes what it was sent. The client must keep it out of every output and must never send
it to the file host. Machine-read values (states, ids, numbers) are left alone so the run
still works.

>>> echoed({"error": "boom", "status": "failed", "video": "http://f/v.mp4"}, "Bearer t0k")
{'error': 'boom (Authorization: Bearer t0k)', 'status': 'failed', 'video': 'http://f/v.mp4?echo=Bearer+t0k'}
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Values clients branch on: echoing into these would only break the run, not test leaks.
MACHINE_KEYS = frozenset(
    {"status", "request_id", "model_id", "kind", "price_unit", "categories", "type", "format"}
)


def echoed(value: Any, header: str, key: str | None = None) -> Any:
    """``value`` with ``header`` planted in every free-text string and URL."""
    if isinstance(value, dict):
        return {k: echoed(v, header, k) for k, v in value.items()}
    if isinstance(value, list):
        return [echoed(item, header, key) for item in value]
    if not isinstance(value, str) or key in MACHINE_KEYS or key == "input_schema":
        return value
    if value.startswith(("http://", "https://")):
        joiner = "&" if "?" in value else "?"
        return f"{value}{joiner}echo={quote_plus(header)}"
    return f"{value} (Authorization: {header})"


class EchoAuthorization:
    """ASGI middleware planting the request's Authorization header in JSON replies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        if not header:
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            await _send_echoed(send, start, bytes(body), header)

        await self.app(scope, receive, buffered)


async def _send_echoed(send: Send, start: Message, body: bytes, header: str) -> None:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    kind = dict(start.get("headers", [])).get(b"content-type", b"")
    if kind.startswith(b"application/json"):
        with contextlib.suppress(ValueError):  # not JSON after all: sent as it came
            body = json.dumps(echoed(json.loads(body), header)).encode("utf-8")
    headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
