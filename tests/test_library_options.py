"""The Python API's options: price tables, the catalog's folder and age, the output folder,
a store given open, a spend cap, and JSON forms of the results."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from model_ids import LITE

import orchestrator
from orchestrator import Batch, CatalogOptions, InputError, RunOptions
from orchestrator.catalog import Price
from orchestrator.library.loops import off_the_loop
from orchestrator.store import Store

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import ImageFactory


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)


def batch(tmp_path: Path, **options: object) -> Batch:
    jobs = [{"id": "a", "prompt": "waves", "image": "in/a.png", "duration": 5}]
    return Batch.from_rows(
        jobs,
        name="opts",
        model=LITE,
        base_dir=tmp_path,
        options=CatalogOptions(offline=True, **options),  # type: ignore[arg-type]
    )


def test_a_price_table_from_a_mapping_or_a_file_prices_the_plan(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/a.png")
    assert batch(tmp_path).plan().estimate_new_usd is None  # the shipped files have no price
    priced = batch(tmp_path, prices={LITE: Price(usd=0.1)}).plan()
    assert priced.estimate_new_usd == pytest.approx(0.5)  # 5 s at $0.10
    table = tmp_path / "prices.yaml"
    table.write_text(f"{LITE}: 0.2\n", encoding="utf-8")
    assert batch(tmp_path, prices=table).plan().estimate_new_usd == pytest.approx(1.0)
    table.write_text(f"{LITE}: cheap\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"field '{LITE}': price must be a number"):
        batch(tmp_path, prices=table).plan()


def test_catalog_options_out_of_range_are_input_errors(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/a.png")
    with pytest.raises(InputError, match="field 'catalog_ttl': must be 0 or more seconds"):
        batch(tmp_path, catalog_ttl=-1.0).plan()
    broken = tmp_path / "models"
    broken.mkdir()
    (broken / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json"):
        batch(tmp_path, catalog_dir=broken).plan()


def test_the_output_folder_is_checked_before_anything_is_stored(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/a.png")
    taken = tmp_path / "a-file"
    taken.write_text("not a folder", encoding="utf-8")
    with pytest.raises(InputError):
        Batch.from_rows(
            [{"prompt": "x", "image": "in/a.png"}],
            name="o",
            model=LITE,
            base_dir=tmp_path,
            out=taken,
            options=CatalogOptions(offline=True),
        ).enqueue(db=tmp_path / "o.db")
    assert not (tmp_path / "o.db").exists()
    moved = batch(tmp_path).with_options(prices={LITE: Price(usd=0.1)})
    assert moved.options.offline
    assert moved.plan().estimate_new_usd == pytest.approx(0.5)


def test_a_store_given_open_stays_open_and_results_have_json_forms(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/a.png")
    with Store.open(str(tmp_path / "open.db")) as store:
        done = batch(tmp_path).enqueue(db=store)
        assert done.added == 1
        assert done.output_root == done.requested_root
        assert orchestrator.status(store, "opts").total == 1
        assert [j.id for j in orchestrator.jobs(store)] == ["a"]
        planned = batch(tmp_path).plan(db=store)
        assert planned.expansion is not None
        assert (planned.new, planned.states) == (0, {planned.expansion.jobs[0].key: "pending"})
        for result in (batch(tmp_path).validate(), planned, done):
            assert json.loads(json.dumps(result.as_dict()))["batch"] == "opts"
        assert store.counts("opts")["pending"] == 1  # still open: usable after the calls


def test_a_spend_cap_prices_every_job_before_the_first_submit(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image("in/a.png")
    with orchestrator.simulate(time_scale=0.01) as sim:
        result = (
            batch(tmp_path)
            .with_options(offline=False)
            .run(db=tmp_path / "cap.db", api=sim, options=RunOptions(max_spend=50.0))
        )
    assert result.ok, result.report
    # Every job was priced at enqueue, from the simulator's live catalog: none left to price.
    assert result.prices == {}
    stored = orchestrator.status(tmp_path / "cap.db", "opts")
    assert stored.cap == 50.0  # the cap is kept with the batch for every worker


def test_an_error_in_the_worker_thread_is_raised_in_the_loops_thread() -> None:
    def broken() -> int:
        raise ZeroDivisionError("from the worker")

    async def main() -> int:
        return off_the_loop(broken)

    with pytest.raises(ZeroDivisionError, match="from the worker"):
        asyncio.run(main())
