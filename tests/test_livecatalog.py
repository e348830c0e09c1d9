"""The live catalog's resolution order, cache and TTL, in process (a fake API, a real store).

The same behaviour over sockets, against the simulator, is in ``test_catalog_cli.py``.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from model_ids import LITE, PRO

from orchestrator.catalog import Catalog, PriceTable, builtin_catalog
from orchestrator.livecatalog import (
    ApiFetcher,
    FetchFailed,
    LiveCatalog,
    cached_catalog,
    closest_ids,
)
from orchestrator.livecatalog.resolve import API, CACHE, SHIPPED, UNKNOWN, USER
from orchestrator.store import Store
from orchestrator.store.catalog import MAX_ENTRY_CHARS, CatalogCache

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

HOST = "api.example"
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NEW_ID = "acme/wonder-video/v2/image-to-video"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class FakeApi:
    """Entries by model id; ``down`` makes every call fail; counts the calls."""

    host = HOST

    def __init__(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        self.entries = {k: copy.deepcopy(dict(v)) for k, v in entries.items()}
        self.down = False
        self.calls: list[str] = []

    def entry(self, model_id: str) -> Mapping[str, Any] | None:
        self.calls.append(model_id)
        if self.down:
            raise FetchFailed("ConnectError: connection refused")
        return copy.deepcopy(self.entries.get(model_id))

    def listing(self, search: str | None = None) -> list[Mapping[str, Any]]:
        self.calls.append("<list>")
        if self.down:
            raise FetchFailed("ConnectError: connection refused")
        return [{"model_id": m} for m in self.entries]


def live_entry(model_id: str, price: float = 0.1) -> dict[str, Any]:
    """The API's entry for a shipped model: its schema, a price, none of our keys."""
    raw = dict(builtin_catalog().require(model_id).raw)
    for ours in ("universal", "image_formats", "slug", "source"):
        raw.pop(ours, None)
    return raw | {"base_price_usd": price, "price_unit": "second", "pricing_note": "list price"}


def new_model_entry() -> dict[str, Any]:
    return {
        "model_id": NEW_ID,
        "display_name": "Wonder Video 2",
        "base_price_usd": 0.4,
        "price_unit": "output",
        "pricing_note": "flat per video",
        "input_schema": {
            "type": "object",
            "required": ["text_prompt", "start_frame"],
            "properties": {
                "text_prompt": {"type": "string", "maxLength": 100},
                "start_frame": {"type": "string", "format": "image_uri"},
                "clip_seconds": {"type": "integer", "enum": [4, 8], "default": 4},
            },
        },
    }


@pytest.fixture
def store(tmp_path: Path) -> Any:
    clock = Clock()
    with Store.open(str(tmp_path / "s.db"), clock=clock) as opened:
        opened.test_clock = clock  # type: ignore[attr-defined]
        yield opened


def catalog(store: Store | None, api: FakeApi | None, **options: Any) -> LiveCatalog:
    cache = CatalogCache(store, HOST) if store is not None else None
    now = store.test_clock if store is not None else Clock()  # type: ignore[attr-defined]
    return LiveCatalog(builtin_catalog(), fetcher=api, cache=cache, now=now, **options)


def test_the_api_entry_replaces_the_shipped_schema_and_brings_its_price(store: Store) -> None:
    api = FakeApi({PRO: live_entry(PRO, price=0.12)})
    live = catalog(store, api)
    model = live.require(PRO)
    assert model.price is not None
    assert model.price.usd == 0.12
    assert model.pricing_note == "list price"
    assert model.native_name("image") == "first_frame_image_url"  # the shipped mapping kept
    assert model.slug == builtin_catalog().require(PRO).slug
    assert live.sources[PRO].origin == API
    assert live.get(PRO) is model
    assert api.calls == [PRO]


def test_fetched_entries_are_cached_only_when_asked_and_then_used_within_the_ttl(
    store: Store,
) -> None:
    api = FakeApi({PRO: live_entry(PRO, price=0.12)})
    first = catalog(store, api)
    first.get(PRO)
    assert CatalogCache(store, HOST).load(PRO) is None  # validate never writes
    assert first.save_fetched(CatalogCache(store, HOST)) == 1
    cached = CatalogCache(store, HOST).load(PRO)
    assert cached is not None
    assert cached.fetched_at == START

    store.test_clock.now = START + timedelta(hours=23)  # type: ignore[attr-defined]
    second = catalog(store, api)
    assert second.require(PRO).price.usd == 0.12  # type: ignore[union-attr]
    assert second.sources[PRO].origin == CACHE
    assert api.calls == [PRO]

    store.test_clock.now = START + timedelta(hours=25)  # type: ignore[attr-defined]
    api.entries[PRO]["base_price_usd"] = 0.2
    third = catalog(store, api)
    assert third.require(PRO).price.usd == 0.2  # type: ignore[union-attr]
    assert third.sources[PRO].origin == API
    assert api.calls == [PRO, PRO]


def test_refresh_asks_the_api_even_with_a_fresh_cache(store: Store) -> None:
    api = FakeApi({PRO: live_entry(PRO)})
    live = catalog(store, api)
    live.get(PRO)
    live.save_fetched(CatalogCache(store, HOST))
    again = catalog(store, api, refresh=True)
    again.get(PRO)
    assert again.sources[PRO].origin == API
    assert api.calls == [PRO, PRO]


def test_offline_the_stale_cache_then_the_shipped_file_is_used_and_the_api_asked_once(
    store: Store,
) -> None:
    api = FakeApi({PRO: live_entry(PRO, price=0.12)})
    live = catalog(store, api)
    live.get(PRO)
    live.save_fetched(CatalogCache(store, HOST))
    store.test_clock.now = START + timedelta(days=3)  # type: ignore[attr-defined]
    api.down = True
    offline = catalog(store, api)
    assert offline.require(PRO).price.usd == 0.12  # type: ignore[union-attr]
    source = offline.sources[PRO]
    assert source.origin == CACHE
    assert "could not be asked" in source.note
    assert "fetched 3 days ago" in source.describe(START + timedelta(days=3))
    assert offline.require(LITE) is builtin_catalog().require(LITE)
    assert offline.sources[LITE].origin == SHIPPED
    assert api.calls == [PRO, PRO]  # after one failure the API is not asked again


def test_without_a_token_nothing_is_fetched_and_the_reason_is_said() -> None:
    live = catalog(None, None, offline_reason="no API token")
    assert live.require(PRO) is builtin_catalog().require(PRO)
    assert live.sources[PRO].note == "no API token"
    assert live.offline_reason == "no API token"


def test_a_model_the_api_does_not_know_is_unknown_even_when_a_file_has_it(store: Store) -> None:
    api = FakeApi({})
    live = catalog(store, api)
    assert live.get(PRO) is None
    assert PRO not in live
    assert live.sources[PRO].origin == UNKNOWN
    assert "does not know" in (live.unknown_reason(PRO) or "")
    with pytest.raises(KeyError, match="unknown model"):
        live.require(PRO)


def test_a_new_model_comes_from_the_api_with_a_derived_mapping(store: Store) -> None:
    api = FakeApi({NEW_ID: new_model_entry()})
    live = catalog(store, api)
    model = live.require(NEW_ID)
    assert model.native_name("prompt") == "text_prompt"
    assert model.native_name("image") == "start_frame"
    assert model.price is not None
    assert (model.price.usd, model.price.unit) == (0.4, "output")
    live.save_fetched(CatalogCache(store, HOST))
    # ``work`` drains without asking: the cached entry is in its catalog.
    drained = cached_catalog(None, CatalogCache(store, HOST))
    assert drained.require(NEW_ID).native_name("image") == "start_frame"
    assert PRO in drained  # and the shipped files


def test_a_live_schema_that_cannot_be_read_falls_back_with_a_warning(store: Store) -> None:
    broken = live_entry(PRO)
    broken["input_schema"] = {"properties": {"prompt": "not an object"}}
    live = catalog(store, FakeApi({PRO: broken}))
    assert live.require(PRO) is builtin_catalog().require(PRO)
    assert live.sources[PRO].origin == SHIPPED
    assert any("prompt" in warning for warning in live.warnings)


def test_a_users_catalog_file_wins_over_the_api(store: Store) -> None:
    mine = builtin_catalog().require(PRO)
    api = FakeApi({PRO: live_entry(PRO)})
    live = catalog(store, api, user=Catalog([mine]))
    assert live.require(PRO) is mine
    assert live.sources[PRO].origin == USER
    assert api.calls == []


def test_suggestions_come_from_the_files_the_cache_and_the_apis_list(store: Store) -> None:
    api = FakeApi({NEW_ID: new_model_entry()})
    live = catalog(store, api)
    assert live.get("acme/wonder-vidoe/v2/image-to-video") is None
    assert live.suggestions("acme/wonder-vidoe/v2/image-to-video") == [NEW_ID]
    assert live.suggestions("bytedance/seedance-1-0/por/image-to-video")[0] == PRO


def test_closest_ids_ignores_the_shared_suffix_and_bounds_the_count() -> None:
    known = [m.model_id for m in builtin_catalog()]
    assert len(closest_ids("bytedance/seedance", known, limit=2)) <= 2
    assert closest_ids("zzzz", known) == []


def test_the_cache_skips_entries_it_cannot_hold(store: Store) -> None:
    cache = CatalogCache(store, HOST)
    assert not cache.save({"display_name": "no id"})
    assert not cache.save({"model_id": "a/b", "blob": "x" * MAX_ENTRY_CHARS})
    assert not cache.save({"model_id": "a/b", "price": float("nan")})
    assert cache.save({"model_id": "a/b"})
    assert cache.forget("a/b") == 1
    assert cache.load_all() == []
    # Hosts are apart: the simulator's entries never stand in for RunComfy's.
    assert cache.save({"model_id": "a/b"})
    assert CatalogCache(store, "other.example").load("a/b") is None


def test_an_unreadable_schema_with_nothing_to_fall_back_on_is_reported_by_field(
    store: Store,
) -> None:
    broken = new_model_entry()
    broken["input_schema"]["properties"]["clip_seconds"]["maxLength"] = "abc"
    live = catalog(store, FakeApi({NEW_ID: broken}))
    assert live.get(NEW_ID) is None
    reason = live.unknown_reason(NEW_ID) or ""
    assert "its live schema cannot be read" in reason
    assert "field 'clip_seconds': maxLength must be a whole number" in reason


# -- the real fetcher, over an in-process transport (the socket tests are in test_catalog_cli)

SECRET = "tok-9f8e7d6c5b4a"


def fetcher(handler: Any) -> ApiFetcher:
    return ApiFetcher("https://api.example", SECRET, transport=httpx.MockTransport(handler))


def test_the_fetcher_masks_a_token_the_server_echoes_and_maps_a_404_to_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/nope/x"):
            return httpx.Response(404, json={"error_code": 404001, "error_message": "no"})
        if request.url.path.endswith("/down/x"):
            echoed = f"upstream failed for {request.headers['authorization']}"
            return httpx.Response(503, json={"error_message": echoed})
        entry = new_model_entry() | {"model_id": "acme/echo/x"}
        entry["pricing_note"] = f"billed to {request.headers['authorization']}"
        return httpx.Response(200, json=entry)

    api = fetcher(handler)
    entry = api.entry("acme/echo/x")
    assert entry is not None
    assert SECRET not in json.dumps(entry)
    assert entry["pricing_note"] == "billed to Bearer <redacted>"
    assert api.entry("acme/nope/x") is None
    with pytest.raises(FetchFailed) as failed:
        api.entry("acme/down/x")
    assert SECRET not in str(failed.value)
    assert "503" in str(failed.value)


def test_the_fetcher_lists_and_reports_a_dead_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"models": [{"model_id": NEW_ID}], "total": 1})
        raise httpx.ConnectError("connection refused")

    api = fetcher(handler)
    assert [e["model_id"] for e in api.listing("wonder")] == [NEW_ID]
    with pytest.raises(FetchFailed, match="ConnectError"):
        api.entry(NEW_ID)


def test_a_clip_length_written_as_text_is_priced() -> None:
    entry = new_model_entry() | {"base_price_usd": 0.1, "price_unit": "second"}
    entry["input_schema"]["properties"]["clip_seconds"] = {"type": "string", "enum": ["4", "8"]}
    model = LiveCatalog(builtin_catalog(), fetcher=FakeApi({NEW_ID: entry})).require(NEW_ID)
    assert PriceTable().estimate(model, {"clip_seconds": "8"}) == pytest.approx(0.8)
    assert PriceTable().estimate(model, {"clip_seconds": "eight"}) is None


def test_an_invalid_model_id_answer_means_unknown_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error_code": 400001, "error_message": "invalid model"})

    assert fetcher(handler).entry("acme/x/image-to-video") is None
    assert fetcher(handler).entry("not a model id") is None  # refused before sending
