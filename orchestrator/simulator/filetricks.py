"""The file host's hostile replies (:mod:`.tricks`), served around its app.

:class:`TrickedFiles` is ASGI middleware that :class:`.filehost.FileHost` puts in front of
:func:`.app.build_files_app` when the profile enables a trick (with none it is not there at
all, so existing profiles are served exactly as before). It sees every request first, on
either host name the file listener answers:

- a download of ``/files/{id}/{version}/output.mp4`` is counted per request id; only the
  first ``first_downloads`` of each meet the tricks;
- ``redirect_hops``: it answers 302 itself, to the same path with ``hop=k`` added to the
  query, alternating between the file host's name and the listener's address, the last hop
  (``hop=N``) on the file host's name, or on https://:data:`.tricks.UNTRUSTED_HOST`;
- body tricks: the app's reply is captured and, when it is a whole 200, sent again changed
  (cut, compressed, dripped). Anything else (a 403, a 5xx, an outage, a reply cut by the
  ``truncated_download`` fault) goes out as the app sent it.

Each tricked download is recorded in :attr:`TrickedFiles.served` (what was sent, how
much of it, whether the client stayed to the end), and in the ledger: every hop as a
download with status 302 (its headers too, to prove no token travelled), and the faults
``redirect``, ``truncate_faststart``, ``gzip_video`` and ``drip``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import anyio

from orchestrator.simulator.tricks import UNTRUSTED_HOST, FileTricks
from orchestrator.simulator.video import faststart

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from orchestrator.simulator.state import Simulator

FILE_PATH = re.compile(r"^/files/(?P<request_id>[^/]+)/[^/]+/output\.mp4$")
HOP = "hop"
#: The share of the faststart copy that ``truncate_faststart`` serves.
KEEP = 0.6
#: How often (real seconds) a drip reads a clock that does not tell real time (manual).
CLOCK_POLL = 0.005
#: Faststart copies kept (the simulator's videos repeat: one per image and length).
FASTSTART_CACHE = 32


@dataclass
class TrickedDownload:
    """One download that met a body trick, as the file host sent it."""

    request_id: str
    tricks: tuple[str, ...]
    total: int
    """Bytes of the body as changed (what Content-Length said)."""
    sha256: str
    """Of the body as changed."""
    original_sha256: str
    """Of the video the app served, before any change."""
    sent: int = 0
    finished: bool = False
    """The last byte was sent; False while a drip runs, or when the client left early."""
    ended: bool = False
    """Nothing more will be sent (the last byte went, or the client left)."""


@dataclass
class _Captured:
    """The app's reply, held back instead of sent."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    messages: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def whole_video(self) -> bool:
        """A 200 whose body is as long as its Content-Length says."""
        length = dict(self.headers).get(b"content-length")
        return self.status == 200 and length == str(len(self.body)).encode()


class TrickedFiles:
    """ASGI middleware playing the profile's file tricks in front of the file host's app."""

    def __init__(self, app: ASGIApp, sim: Simulator, *, file_host: str, address: str, port: int):
        self.app = app
        self.sim = sim
        self.tricks: FileTricks = sim.profile.file_tricks
        self.file_host = file_host
        self.address = address
        self.port = port
        self.served: list[TrickedDownload] = []
        self._downloads: Counter[str] = Counter()
        self._faststart: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._news = threading.Condition(self._lock)

    def downloads_of(self, request_id: str) -> int:
        """How many downloads of ``request_id``'s video arrived (hops not counted)."""
        with self._lock:
            return self._downloads[request_id]

    def records(self) -> list[TrickedDownload]:
        """A copy of :attr:`served` (a drip updates its record while it runs)."""
        with self._lock:
            return [TrickedDownload(**vars(record)) for record in self.served]

    def wait_for(self, condition: Callable[[list[TrickedDownload]], bool], timeout: float) -> bool:
        """Block until ``condition(records)`` holds (False after ``timeout`` real seconds):
        a test waits on what the file host did, not for a while."""
        with self._news:
            return self._news.wait_for(
                lambda: condition([TrickedDownload(**vars(r)) for r in self.served]), timeout
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = FILE_PATH.match(str(scope.get("path", ""))) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        hop = next((int(v) for k, v in query if k == HOP and v.isdigit()), None)
        if hop is None:
            request_id = match["request_id"]
            with self._lock:
                self._downloads[request_id] += 1
                count = self._downloads[request_id]
            limit = self.tricks.first_downloads
            if limit is not None and count > limit:
                await self.app(scope, receive, send)
                return
        hops = self.tricks.redirect_hops
        if (hop or 0) < hops:
            await self._redirect(scope, receive, send, query, (hop or 0) + 1)
        elif self.tricks.changes_body:
            await self._changed(match["request_id"], scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _redirect(
        self, scope: Scope, receive: Receive, send: Send, query: list[tuple[str, str]], hop: int
    ) -> None:
        """Send the client to hop ``hop`` of the chain."""
        last = hop == self.tricks.redirect_hops
        scheme = "http"
        if last and self.tricks.redirect_untrusted:
            # https, so that only the host is wrong (plain http is refused off loopback).
            scheme, host = "https", UNTRUSTED_HOST
        elif last:
            host = self.file_host
        else:
            # Counted back from the last hop, so the chain always ends on the file host.
            host = self.file_host if (self.tricks.redirect_hops - hop) % 2 == 0 else self.address
        kept = [(k, v) for k, v in query if k != HOP] + [(HOP, str(hop))]
        location = f"{scheme}://{host}:{self.port}{scope['path']}?{urlencode(kept)}"
        headers = _headers(scope)
        ledger = self.sim.ledger
        ledger.call("download")
        if hop == 1:
            ledger.fault("redirect")
        ledger.downloaded(
            host=headers.get("host", ""), path=scope["path"], headers=headers, status=302, size=0
        )
        ledger.reply("download", 302)
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _changed(self, request_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's reply, changed by the body tricks when it is a whole video."""
        captured = _Captured()
        await self.app(scope, receive, captured.send)
        if not captured.whole_video():
            with contextlib.suppress(RuntimeError):  # a reply cut short on purpose
                for message in captured.messages:
                    await send(message)
            return
        body, names = bytes(captured.body), []
        original = hashlib.sha256(body).hexdigest()
        if self.tricks.truncate_faststart:
            whole = await anyio.to_thread.run_sync(self._faststart_of, body)
            body = whole[: int(len(whole) * KEEP)]
            names.append("truncate_faststart")
        headers = [(k, v) for k, v in captured.headers if k != b"content-length"]
        if self.tricks.gzip_videos:
            body = gzip.compress(body, mtime=0)
            headers.append((b"content-encoding", b"gzip"))
            names.append("gzip_video")
        if self.tricks.drip_seconds > 0:
            names.append("drip")
        headers.append((b"content-length", str(len(body)).encode()))
        record = TrickedDownload(
            request_id, tuple(names), len(body), hashlib.sha256(body).hexdigest(), original
        )
        with self._news:
            self.served.append(record)
            self._news.notify_all()
        for name in names:
            self.sim.ledger.fault(name)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if self.tricks.drip_seconds > 0:
            await self._drip(body, record, receive, send)
        else:
            await send({"type": "http.response.body", "body": body, "more_body": False})
            self._sent(record, len(body), finished=True)

    async def _drip(
        self, body: bytes, record: TrickedDownload, receive: Receive, send: Send
    ) -> None:
        """One byte per ``drip_seconds`` simulated seconds, until the end or the client
        leaves (a disconnect is watched for: uvicorn drops what is sent after it)."""
        async with anyio.create_task_group() as group:

            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(gone)
            try:
                for index in range(len(body)):
                    last = index == len(body) - 1
                    piece = body[index : index + 1]
                    await send({"type": "http.response.body", "body": piece, "more_body": not last})
                    self._sent(record, index + 1, finished=last)
                    if not last:
                        await self._wait(self.tricks.drip_seconds)
                group.cancel_scope.cancel()
            finally:
                self._sent(record, record.sent, finished=record.finished, ended=True)

    async def _wait(self, seconds: float) -> None:
        """Wait ``seconds`` on the simulator's clock: real time for a scaled clock, until a
        test moves it for a manual one."""
        clock = self.sim.clock
        due = clock.now() + seconds
        real = getattr(clock, "real_seconds", None)
        while (left := due - clock.now()) > 0:
            pause = real(left) if real is not None else 0.0
            await anyio.sleep(pause if pause > 0 else CLOCK_POLL)

    def _sent(
        self, record: TrickedDownload, sent: int, *, finished: bool, ended: bool = False
    ) -> None:
        with self._news:
            record.sent, record.finished = sent, finished
            record.ended = ended or finished
            self._news.notify_all()

    def _faststart_of(self, video: bytes) -> bytes:
        key = hashlib.sha256(video).hexdigest()
        with self._lock:
            if key in self._faststart:
                return self._faststart[key]
        moved = faststart(video)
        with self._lock:
            self._faststart[key] = moved
            while len(self._faststart) > FASTSTART_CACHE:
                self._faststart.popitem(last=False)
        return moved


def _headers(scope: Scope) -> dict[str, Any]:
    return {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in scope.get("headers", [])
    }
