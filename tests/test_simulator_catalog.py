"""The simulator's catalog routes over real sockets, and the client that pages through
them (issue 14, item 5: the list route with search and paging, categories, 404s)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY, V15
from simulator_helpers import assert_error, profile

from orchestrator.api import RunComfyClient
from orchestrator.api.responses import ModelInfo
from orchestrator.simulator import SimulatorServer

TOKEN = "catalog-token-4e1b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIVE = sorted([DREAMINA, LITE, PRO, RUNWAY, V15])


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(profile(), token=TOKEN) as running:
        yield running


def get(server: SimulatorServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.api_base}{path}", params=params, headers=AUTH, timeout=10)


def test_the_list_pages_through_every_model_in_order(server: SimulatorServer) -> None:
    everything = get(server, "/v1/models").json()
    assert everything["total"] == 5
    assert [m["model_id"] for m in everything["models"]] == FIVE
    assert all("input_schema" not in m for m in everything["models"])  # only when asked
    pages = [get(server, "/v1/models", limit="2", offset=str(o)).json() for o in (0, 2, 4, 6)]
    assert [len(p["models"]) for p in pages] == [2, 2, 1, 0]
    assert {p["total"] for p in pages} == {5}
    assert [m["model_id"] for p in pages for m in p["models"]] == FIVE


def test_search_category_kind_and_schemas(server: SimulatorServer) -> None:
    found = get(server, "/v1/models", search="SEEDANCE", include_schema="true").json()
    assert found["total"] == 3 and all("seedance" in m["model_id"] for m in found["models"])
    assert all(isinstance(m["input_schema"], dict) for m in found["models"])
    entry = found["models"][0]
    assert entry["price_unit"] == "second" and entry["base_price_usd"] > 0
    assert get(server, "/v1/models", category="text-to-image").json() == {"models": [], "total": 0}
    assert get(server, "/v1/models", category="image-to-video").json()["total"] == 5
    assert get(server, "/v1/models", kind="workflow").json()["total"] == 0
    assert get(server, "/v1/models/categories").json() == {"categories": ["image-to-video"]}
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
    assert_error(get(server, "/v1/models/bytedance/seedance-9/ultra"), 400, 400001)


def test_the_client_pages_through_the_list(server: SimulatorServer) -> None:
    async def main() -> tuple[list[ModelInfo], list[ModelInfo], list[ModelInfo]]:
        async with RunComfyClient(server.api_base, token=TOKEN) as api:
            paged = await api.list_models(page_size=2)
            capped = await api.list_models(page_size=2, at_most=3)
            searched = await api.list_models(search="lite", include_schema=True)
        return paged, capped, searched

    paged, capped, searched = anyio.run(main)
    assert [m.model_id for m in paged] == FIVE
    assert [m.model_id for m in capped] == FIVE[:3]
    (lite,) = searched
    assert lite.model_id == LITE and lite.input_schema is not None
    assert lite.display_name and lite.pricing_note and lite.base_price_usd is not None
    assert server.simulator.ledger.snapshot()["calls"]["models"] >= 3 + 2 + 1


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
