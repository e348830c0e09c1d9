"""A cap on the size of every API reply, enforced while the body streams in.

A reply is a few kilobytes of JSON (a catalog page with schemas, a few megabytes). A
server that sends a gigabyte, by mistake or on purpose, must not become a gigabyte in this
process: :class:`LimitedTransport` wraps the client's transport and stops reading a body at
:data:`MAX_REPLY_BYTES`, raising :class:`ReplyTooLarge` (an ``httpx.TransportError``, so the
client classifies it like any broken reply: a read is retried later, a submit whose reply
was cut is ambiguous and never resent).

>>> import anyio
>>> big = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 10))
>>> transport = LimitedTransport(big, 4)
>>> async def read() -> None:
...     async with httpx.AsyncClient(transport=transport) as client:
...         await client.get("https://api.example/")
>>> anyio.run(read)
Traceback (most recent call last):
...
orchestrator.api.limits.ReplyTooLarge: the reply is larger than 4 bytes: not read further
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MAX_REPLY_BYTES: Final = 16 * 1024 * 1024


class ReplyTooLarge(httpx.TransportError):
    """A reply body past the cap."""


class LimitedTransport(httpx.AsyncBaseTransport):
    """``inner`` with every response body capped at ``max_bytes``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await response.aclose()
            raise ReplyTooLarge(self._message(), request=request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _Capped(stream, self.max_bytes, request, self._message())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _message(self) -> str:
        return f"the reply is larger than {self.max_bytes:,} bytes: not read further"


class _Capped(httpx.AsyncByteStream):
    def __init__(
        self, inner: httpx.AsyncByteStream, limit: int, request: httpx.Request, message: str
    ) -> None:
        self.inner = inner
        self.limit = limit
        self.request = request
        self.message = message

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.inner:
            seen += len(chunk)
            if seen > self.limit:
                raise ReplyTooLarge(self.message, request=self.request)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()
