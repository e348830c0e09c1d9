"""The simulator's catalog routes over real sockets, and the client that pages through
them (issue 14, item 5: the list route with search and paging, categories, prices, 404s).

The catalog is the five shipped models plus the simulator's invented ones
(``orchestrator/simulator/catalog/``), which no client knows before it asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY, V15
from simulator_helpers import assert_error, profile

from orchestrator.api import RunComfyClient
from orchestrator.api.responses import ModelInfo
from orchestrator.simulator import SimulatorServer

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "catalog-token-4e1b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIVE = sorted([DREAMINA, LITE, PRO, RUNWAY, V15])
WONDER = "acme/wonder-video/v2/image-to-video"
FLIPBOOK = "acme/flipbook/image-to-video"
MOTION_X = "studio/motion-x/image-to-video"
EVERY = sorted([*FIVE, WONDER, FLIPBOOK, MOTION_X])
ENTRY_KEYS = {
    "model_id",
    "display_name",
    "categories",
    "kind",
    "base_price_usd",
    "price_unit",
    "pricing_note",
    "model_url",
    "input_schema",
}


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(profile(), token=TOKEN) as running:
        yield running


def get(server: SimulatorServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.api_base}{path}", params=params, headers=AUTH, timeout=10)


def test_the_list_pages_through_every_model_in_order(server: SimulatorServer) -> None:
    everything = get(server, "/v1/models").json()
    assert everything["total"] == 8
    assert [m["model_id"] for m in everything["models"]] == EVERY
    assert all("input_schema" not in m for m in everything["models"])  # only when asked
    pages = [get(server, "/v1/models", limit="3", offset=str(o)).json() for o in (0, 3, 6, 9)]
    assert [len(p["models"]) for p in pages] == [3, 3, 2, 0]
    assert {p["total"] for p in pages} == {8}
    assert [m["model_id"] for p in pages for m in p["models"]] == EVERY
    # Paging composes with a search: the two acme models, one a page.
    acme = [
        get(server, "/v1/models", search="acme/", limit="1", offset=str(o)).json() for o in (0, 1)
    ]
    assert [(p["total"], [m["model_id"] for m in p["models"]]) for p in acme] == [
        (2, [FLIPBOOK]),
        (2, [WONDER]),
    ]


def test_search_category_kind_and_schemas(server: SimulatorServer) -> None:
    found = get(server, "/v1/models", search="SEEDANCE", include_schema="true").json()
    assert found["total"] == 3
    assert all("seedance" in m["model_id"] for m in found["models"])
    assert all(isinstance(m["input_schema"], dict) for m in found["models"])
    entry = found["models"][0]
    assert entry["price_unit"] == "second"
    assert entry["base_price_usd"] > 0
    assert get(server, "/v1/models", category="text-to-image").json() == {"models": [], "total": 0}
    assert get(server, "/v1/models", category="image-to-video").json()["total"] == 8
    effects = get(server, "/v1/models", category="video-effects").json()
    assert [m["model_id"] for m in effects["models"]] == [MOTION_X]
    assert get(server, "/v1/models", kind="workflow").json()["total"] == 0
    assert get(server, "/v1/models/categories").json() == {
        "categories": ["image-to-video", "video-effects"]
    }
    # A search matches display names too: only Wonder's is "Wonder Video 2".
    (wonder,) = get(server, "/v1/models", search="wonder video").json()["models"]
    assert (wonder["model_id"], wonder["display_name"]) == (WONDER, "Wonder Video 2")
    # One entry by id is the same entry as in the list, with its schema.
    (listed,) = get(server, "/v1/models", search="runway", include_schema="1").json()["models"]
    assert get(server, f"/v1/models/{RUNWAY}").json() == listed


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "many"}, {"offset": "-1"}, {"offset": "x"}],
)
def test_a_bad_page_is_a_validation_error(server: SimulatorServer, params: dict[str, str]) -> None:
    body = assert_error(get(server, "/v1/models", **params), 422, 422001)
    (detail,) = body["detail"]
    assert detail["loc"][0] == "query"


def test_the_catalog_needs_the_token_and_unknown_ids_are_404(server: SimulatorServer) -> None:
    bare = httpx.get(f"{server.api_base}/v1/models", timeout=10)
    assert_error(bare, 401, 401001)
    body = assert_error(get(server, "/v1/models/bytedance/seedance-9/ultra"), 404, 404001)
    assert body["error_message"] == "model not found: bytedance/seedance-9/ultra"
    # A submit to that id is still the documented InvalidResourceIdentifier.
    submit = httpx.post(
        f"{server.api_base}/v1/models/bytedance/seedance-9/ultra", json={}, headers=AUTH
    )
    assert_error(submit, 400, 400001)


def test_each_entry_publishes_its_price_unit_and_note(server: SimulatorServer) -> None:
    entries = {
        m["model_id"]: m for m in get(server, "/v1/models", include_schema="true").json()["models"]
    }
    assert all(set(entry) == ENTRY_KEYS for entry in entries.values())  # no keys of ours
    priced = {
        model_id: (e["base_price_usd"], e["price_unit"], e["pricing_note"])
        for model_id, e in entries.items()
    }
    simulated = (0.1, "second", "simulated price, USD per second of video")
    assert priced == {
        **dict.fromkeys(FIVE, simulated),
        WONDER: (0.07, "second", "USD per second of generated video"),
        FLIPBOOK: (0.4, "output", "flat per video"),
        MOTION_X: (
            0.09,
            "second",
            "USD per second at 540p and 720p; 1080p is billed at twice the rate",
        ),
    }
    wonder = entries[WONDER]["input_schema"]
    assert set(wonder["properties"]) == {
        "text_prompt",
        "start_frame",
        "clip_seconds",
        "aspect",
        "noise_seed",
    }
    assert wonder["required"] == ["text_prompt", "start_frame"]
    assert wonder["properties"]["start_frame"]["validations"]


def test_a_profile_price_for_an_invented_model_wins_and_keeps_its_unit() -> None:
    chosen = profile({"prices": {"default": 0.1, FLIPBOOK: 0.25}})
    with SimulatorServer(chosen, token=TOKEN) as running:
        flipbook = get(running, f"/v1/models/{FLIPBOOK}").json()
        wonder = get(running, f"/v1/models/{WONDER}").json()
    assert (flipbook["base_price_usd"], flipbook["price_unit"], flipbook["pricing_note"]) == (
        0.25,
        "output",
        "simulated price, USD per video",
    )
    assert wonder["base_price_usd"] == 0.07  # not named: its own price, not the default
    with SimulatorServer(profile({"publish_prices": False}), token=TOKEN) as hidden:
        listed = get(hidden, "/v1/models").json()["models"]
    assert {m["base_price_usd"] for m in listed} == {None}
    assert {m["price_unit"] for m in listed} == {"second", "output"}


def test_the_client_pages_through_the_list(server: SimulatorServer) -> None:
    async def main() -> tuple[list[ModelInfo], list[ModelInfo], list[ModelInfo]]:
        async with RunComfyClient(server.api_base, token=TOKEN) as api:
            paged = await api.list_models(page_size=2)
            capped = await api.list_models(page_size=2, at_most=3)
            searched = await api.list_models(search="lite", include_schema=True)
        return paged, capped, searched

    paged, capped, searched = anyio.run(main)
    assert [m.model_id for m in paged] == EVERY
    assert [m.model_id for m in capped] == EVERY[:3]
    (lite,) = searched
    assert lite.model_id == LITE
    assert lite.input_schema is not None
    assert lite.display_name
    assert lite.pricing_note
    assert lite.base_price_usd is not None
    assert server.simulator.ledger.snapshot()["calls"]["models"] >= 4 + 2 + 1


def test_a_catalog_entry_of_the_wrong_shape_is_read_safely() -> None:
    odd = ModelInfo.parse(
        {"model_id": 7, "base_price_usd": -1, "price_unit": ["s"], "input_schema": "none"}, "m"
    )
    assert (odd.model_id, odd.base_price_usd, odd.price_unit, odd.input_schema) == (
        "7",
        None,
        None,
        None,
    )
    assert ModelInfo.parse({}, "m").model_id == "m"
