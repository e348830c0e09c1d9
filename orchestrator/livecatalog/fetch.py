"""Fetching catalog entries from the API, synchronously, for commands that are not async.

:class:`Fetcher` is the narrow interface the resolving catalog needs; :class:`ApiFetcher`
is the real one, over :class:`~orchestrator.api.RunComfyClient` (one short-lived client
per call, run on its own event loop: a command asks for a handful of models, once).

Every failure that is not "this model does not exist" becomes :class:`FetchFailed`, whose
text is safe to print: the token is masked even when a server echoes it back (the client
redacts every reply body, :mod:`orchestrator.redact`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import httpx

from orchestrator.api import RunComfyClient, RunComfyError, UnknownModel
from orchestrator.api.errors import PermanentError
from orchestrator.redact import redact, register_secret

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

#: Catalog reads are small: a dead host should cost seconds, not the default minutes.
FETCH_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
LISTING_LIMIT = 2000
T = TypeVar("T")


class FetchFailed(Exception):
    """The API could not be asked (offline, an outage, a refused token ...)."""


class Fetcher(Protocol):
    """Where live catalog entries come from."""

    host: str

    def entry(self, model_id: str) -> Mapping[str, Any] | None:
        """The model's entry, or None when the API does not know the model."""
        ...

    def listing(self, search: str | None = None) -> list[Mapping[str, Any]]:
        """The image-to-video models the API offers (without schemas)."""
        ...


class ApiFetcher:
    """Entries from the RunComfy API at ``api_base`` with ``token``."""

    def __init__(
        self,
        api_base: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_base = api_base
        self.host = httpx.URL(api_base).host or api_base
        self._token = token
        self._transport = transport
        register_secret(token)

    def entry(self, model_id: str) -> Mapping[str, Any] | None:
        async def ask(client: RunComfyClient) -> Mapping[str, Any] | None:
            try:
                info = await client.model_info(model_id)
            except UnknownModel:
                return None
            except PermanentError as exc:
                if exc.status is None:  # refused before sending: not an id the API could know
                    return None
                raise
            return dict(info.raw, model_id=info.model_id)

        return self._run(ask)

    def listing(self, search: str | None = None) -> list[Mapping[str, Any]]:
        async def ask(client: RunComfyClient) -> list[Mapping[str, Any]]:
            found = await client.list_models(search=search, at_most=LISTING_LIMIT)
            return [dict(info.raw, model_id=info.model_id) for info in found]

        return self._run(ask)

    def _run(self, ask: Callable[[RunComfyClient], Awaitable[T]]) -> T:
        async def call() -> T:
            async with RunComfyClient(
                self.api_base, token=self._token, timeout=FETCH_TIMEOUT, transport=self._transport
            ) as client:
                return await ask(client)

        try:
            return anyio.run(call)
        except RunComfyError as exc:
            # Said once for every model of the command: the host, not the first path.
            reason = re.sub(r"^GET \S+ failed: ", "", exc.message)
            raise FetchFailed(self.masked(f"{self.host}: {reason}")) from None
        except (httpx.HTTPError, OSError) as exc:
            raise FetchFailed(self.masked(f"{self.host}: {type(exc).__name__}: {exc}")) from None

    def masked(self, text: str) -> str:
        """``text`` redacted (:mod:`orchestrator.redact`) and capped for one output line."""
        return redact(text)[:300]
