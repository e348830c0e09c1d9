"""A catalog that asks the API for each model a manifest names, and says where each came from.

For every model id, the first of these that has it wins:

1. a file of the user's ``--catalog`` folder (the user knows better);
2. the store's cached entry, while younger than the TTL (a day by default);
3. the API's entry (``GET /v1/models/{id}``), cached at once with its fetch time;
4. the cached entry however old, when the API cannot be asked (no token, offline, an
   outage) or its schema cannot be read;
5. the shipped schema file.

When the API answers that it does not know a model, the model is unknown, whatever the
cache or the shipped files say: a submit would be refused too. After one failed fetch the
API is not asked again in the same command, so an offline ``plan`` costs one timeout.

Fetched entries are cached only when the command calls :meth:`LiveCatalog.save_fetched`
(after its store exists; ``validate`` never writes). Entries are resolved lazily, on the
first :meth:`LiveCatalog.get` of each id, so the manifest's expansion asks for exactly the
models it names. The engine gets a plain :meth:`LiveCatalog.snapshot`: nothing is fetched
from inside a running event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from orchestrator.catalog import Catalog, CatalogError, ModelSpec
from orchestrator.catalog.live import spec_from_entry
from orchestrator.catalog.registry import closest_ids
from orchestrator.defaults import DEFAULT_CATALOG_TTL
from orchestrator.livecatalog.fetch import Fetcher, FetchFailed

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator.store.catalog import CachedEntry, CatalogCache

DEFAULT_TTL: Final = DEFAULT_CATALOG_TTL
"""Seconds a cached entry is used without asking the API again (a day)."""

API, CACHE, SHIPPED, USER, UNKNOWN = "api", "cache", "shipped", "user", "unknown"


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where one model's schema and price came from, for the command's output."""

    model_id: str
    origin: str
    """``api``, ``cache``, ``shipped``, ``user`` or ``unknown``."""
    fetched_at: datetime | None = None
    note: str = ""

    def describe(self, now: datetime) -> str:
        """In words: ``RunComfy API (fetched now)``, ``cache (fetched 3 h ago) ...``."""
        if self.origin == API:
            text = "RunComfy API (fetched now)"
        elif self.origin == CACHE and self.fetched_at is not None:
            age = (now - self.fetched_at).total_seconds()
            text = f"cache (fetched {_age(age)} ago)"
        elif self.origin == SHIPPED:
            text = "shipped schema file"
        elif self.origin == USER:
            text = "your --catalog file"
        else:
            text = "unknown"
        return f"{text}; {self.note}" if self.note else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "source": self.origin,
            "fetched_at": self.fetched_at.isoformat() if self.fetched_at else None,
            "note": self.note or None,
        }


class LiveCatalog(Catalog):
    """Model specifications resolved from the API, the cache and the files (see above)."""

    def __init__(
        self,
        shipped: Catalog,
        *,
        user: Catalog | None = None,
        fetcher: Fetcher | None = None,
        cache: CatalogCache | None = None,
        ttl: float = DEFAULT_TTL,
        refresh: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        offline_reason: str = "no API token",
    ) -> None:
        super().__init__(shipped)
        self.shipped = shipped
        self.user = user or Catalog()
        for model in self.user:
            self.add(model)
        self.fetcher = fetcher
        self.cache = cache
        self.ttl = ttl
        self.refresh = refresh
        self.now = now
        self.sources: dict[str, ModelSource] = {}
        self.warnings: list[str] = []
        self._unknown: dict[str, str] = {}
        self._fetch_error: str | None = None if fetcher else offline_reason
        self._listing: list[str] | None = None
        self._fetched: dict[str, dict[str, Any]] = {}
        self._broken: dict[str, str] = {}  # model id -> why its entry could not be read

    # -- the Catalog interface ---------------------------------------------------------------

    def get(self, model_id: str) -> ModelSpec | None:
        if model_id not in self.sources:
            self._resolve(model_id)
        return self._models.get(model_id)

    def require(self, model_id: str) -> ModelSpec:
        model = self.get(model_id)
        if model is None:
            near = self.suggestions(model_id, 1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise KeyError(f"unknown model {model_id!r}{hint}")
        return model

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.get(model_id) is not None

    def unknown_reason(self, model_id: str) -> str | None:
        """Why ``model_id`` is unknown (after a :meth:`get` that found nothing)."""
        return self._unknown.get(model_id)

    def suggestions(self, model_id: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` known ids most like ``model_id``: the files, the cache and, once
        the API said it does not know ``model_id``, what the API lists."""
        known = set(self._models)
        if self.cache is not None:
            known |= {entry.model_id for entry in self.cache.load_all()}
        if self.fetcher is not None and self._fetch_error is None:
            known |= set(self._remote_ids())
        known.discard(model_id)
        return closest_ids(model_id, known, limit)

    def snapshot(self) -> Catalog:
        """A plain catalog of everything resolved so far (for the engine)."""
        return Catalog(self._models.values())

    def use_cached(self, cached: CachedEntry) -> None:
        """Take ``cached`` as the model's entry (unless a user's file has the model, or
        its schema cannot be read): for a catalog built from an entry already read."""
        model_id = cached.model_id
        if model_id in self.user:
            self._resolve(model_id)
            return
        spec = self._spec(cached.entry, self.shipped.get(model_id), "store cache")
        if spec is not None:
            self._use(spec, ModelSource(model_id, CACHE, cached.fetched_at))

    def save_fetched(self, cache: CatalogCache) -> int:
        """Cache every entry fetched from the API so far, with the time now (commands that
        may not write, such as ``validate``, never call this). Returns how many."""
        return sum(cache.save(entry) for entry in self._fetched.values())

    @property
    def offline_reason(self) -> str | None:
        """Why the API is not being asked (no token, or the first fetch failed)."""
        return self._fetch_error

    # -- resolution -------------------------------------------------------------------------

    def _resolve(self, model_id: str) -> None:
        user = self.user.get(model_id)
        if user is not None:
            self._use(user, ModelSource(model_id, USER))
            return
        shipped = self.shipped.get(model_id)
        cached = self.cache.load(model_id) if self.cache is not None else None
        if cached is not None and not self.refresh and self._fresh(cached):
            spec = self._spec(cached.entry, shipped, "store cache")
            if spec is not None:
                self._use(spec, ModelSource(model_id, CACHE, cached.fetched_at))
                return
        unknown, fetched = self._fetch(model_id)
        if unknown:
            self._forget(model_id, f"RunComfy's catalog ({self._host}) does not know it")
            return
        if fetched is not None:
            spec = self._spec(fetched, shipped, f"RunComfy API ({self._host})")
            if spec is not None:
                self._fetched[model_id] = fetched
                self._use(spec, ModelSource(model_id, API))
                return
        why = self._fetch_error or f"its live schema cannot be read: {self._broken.get(model_id)}"
        if cached is not None:
            spec = self._spec(cached.entry, shipped, "store cache")
            if spec is not None:
                self._use(spec, ModelSource(model_id, CACHE, cached.fetched_at, why))
                return
        if shipped is not None:
            self._use(shipped, ModelSource(model_id, SHIPPED, note=why))
            return
        self._forget(model_id, f"no schema file or cached entry has it ({why})")

    def _fetch(self, model_id: str) -> tuple[bool, dict[str, Any] | None]:
        """``(unknown, entry)``: whether the API said it does not know the model, and its
        entry (None when not asked, not known, or the API could not answer)."""
        if self.fetcher is None or self._fetch_error is not None:
            return False, None
        try:
            entry = self.fetcher.entry(model_id)
        except FetchFailed as exc:
            self._fetch_error = f"RunComfy could not be asked: {exc}"
            return False, None
        return entry is None, None if entry is None else dict(entry)

    def _spec(self, entry: Any, shipped: ModelSpec | None, origin: str) -> ModelSpec | None:
        try:
            return spec_from_entry(entry, shipped, origin=origin)
        except CatalogError as exc:
            self.warnings.append(f"{origin}: {exc}")
            self._broken[str(entry.get("model_id") if isinstance(entry, dict) else "")] = str(exc)
            return None

    def _fresh(self, cached: CachedEntry) -> bool:
        return cached.age_seconds(self.now()) < self.ttl

    def _use(self, spec: ModelSpec, source: ModelSource) -> None:
        self._models[spec.model_id] = spec
        self.sources[spec.model_id] = source

    def _forget(self, model_id: str, reason: str) -> None:
        self._models.pop(model_id, None)
        self._unknown[model_id] = reason
        self.sources[model_id] = ModelSource(model_id, UNKNOWN, note=reason)

    def _remote_ids(self) -> list[str]:
        if self._listing is None and self.fetcher is not None:
            try:
                self._listing = [str(e.get("model_id")) for e in self.fetcher.listing()]
            except FetchFailed:
                self._listing = []
        return self._listing or []

    @property
    def _host(self) -> str:
        return self.fetcher.host if self.fetcher is not None else "offline"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 172_800:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86_400)} days"
