"""Estimate against actual per model: the store's grouped query on every backend, and
``status`` (text and ``--json``) over a store the real engine billed through the simulator."""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from engine_helpers import (
    BATCH,
    fast_settings,
    key_of,
    make_profile,
    new_job,
    run_engine,
    seed_store,
    simulator,
)
from model_ids import LITE, PRO, RUNWAY
from sqlalchemy import update

from orchestrator.cli import main
from orchestrator.store import NewJob, Store
from orchestrator.store.money import ModelCost, any_cost
from orchestrator.store.tables import JOBS

if TYPE_CHECKING:
    from pathlib import Path

NEW_MODEL = "acme/wonder/image-to-video"
#: name -> (model, estimate, what RunComfy billed); None is "not known".
JOBS_OF_B: dict[str, tuple[str, float | None, float | None]] = {
    "pro-1": (PRO, 0.40, 0.50),
    "pro-2": (PRO, 0.40, 0.50),
    "pro-3": (PRO, 0.40, None),  # not billed yet: in the estimates of all, not compared
    "lite-1": (LITE, 0.50, 0.30),
    "lite-2": (LITE, 0.50, 0.30),
    "runway-1": (RUNWAY, 0.25, 0.25),
    "runway-2": (RUNWAY, None, 0.25),  # billed with no estimate: actual only
    "wonder-1": (NEW_MODEL, None, 0.75),
}


def _stored(
    store: Store, batch: str, jobs: dict[str, tuple[str, float | None, float | None]]
) -> None:
    """Enqueue ``jobs`` into ``batch`` and record their costs as the engine does."""
    store.ensure_batch(batch, manifest_path="m.yaml", output_root="out", settings={})
    store.enqueue(
        batch,
        [
            NewJob(
                key=key_of(f"{batch}-{name}"),
                name=name,
                model_id=model,
                payload={"prompt": name},
                output_path=f"{name}.mp4",
                max_attempts=1,
                estimated_cost_usd=estimate,
            )
            for name, (model, estimate, _cost) in jobs.items()
        ],
    )
    with store.write() as connection:
        for name, (_model, _estimate, cost) in jobs.items():
            connection.execute(
                update(JOBS).where(JOBS.c.batch == batch, JOBS.c.name == name).values(cost_usd=cost)
            )


def _by_model(costs: list[ModelCost]) -> dict[str, ModelCost]:
    return {c.model_id: c for c in costs}


def test_cost_by_model_compares_the_billed_jobs(db_url: str) -> None:
    with Store.open(db_url) as store:
        _stored(store, "b", JOBS_OF_B)
        _stored(store, "other", {"pro-9": (PRO, 1.00, 3.00)})
        costs = store.cost_by_model("b")
        everywhere = _by_model(store.cost_by_model())
    assert [c.model_id for c in costs] == sorted([PRO, LITE, RUNWAY, NEW_MODEL])
    found = _by_model(costs)

    pro = found[PRO]
    assert (pro.jobs, pro.billed, pro.compared) == (3, 2, 2)
    assert pro.estimated_usd == pytest.approx(1.20)
    assert pro.billed_estimate_usd == pytest.approx(0.80)
    assert pro.actual_usd == pytest.approx(1.00) == pro.compared_actual_usd
    assert pro.ratio == pytest.approx(1.25)
    assert pro.difference_text() == "+25.0%"
    assert pro.over_estimate

    lite = found[LITE]
    assert (lite.jobs, lite.billed, lite.compared) == (2, 2, 2)
    assert lite.ratio == pytest.approx(0.6)
    assert lite.difference_text() == "-40.0%"
    assert not lite.over_estimate

    runway = found[RUNWAY]
    assert (runway.jobs, runway.billed, runway.compared) == (2, 2, 1)
    assert runway.billed_estimate_usd == pytest.approx(0.25)
    assert runway.actual_usd == pytest.approx(0.50)
    assert runway.compared_actual_usd == pytest.approx(0.25)
    assert runway.ratio == pytest.approx(1.0)  # the job without an estimate is left out
    assert runway.difference_text() == "0.0% (1 of 2 billed had an estimate)"

    wonder = found[NEW_MODEL]
    assert (wonder.jobs, wonder.billed, wonder.compared) == (1, 1, 0)
    assert wonder.estimated_usd is None
    assert wonder.billed_estimate_usd is None
    assert wonder.actual_usd == pytest.approx(0.75)
    assert wonder.ratio is None
    assert wonder.difference_text() == "no estimate"

    # Every batch together: the other batch's job counts too.
    assert (everywhere[PRO].jobs, everywhere[PRO].billed) == (4, 3)
    assert everywhere[PRO].ratio == pytest.approx(4.00 / 1.80)
    assert any_cost(costs)


def test_nothing_billed_or_priced_is_not_comparable(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert store.cost_by_model("b") == []
        _stored(store, "b", {"a": (PRO, 0.40, None), "z": (NEW_MODEL, None, None)})
        found = _by_model(store.cost_by_model("b"))
        assert store.cost_by_model("nope") == []
    assert found[PRO].estimated_usd == pytest.approx(0.40)
    assert found[PRO].billed_estimate_usd is None
    assert found[PRO].actual_usd is None
    assert found[PRO].difference_text() == "not billed yet"
    assert found[NEW_MODEL].as_dict() == {
        "model": NEW_MODEL,
        "jobs": 1,
        "billed": 0,
        "compared": 0,
        "estimated_usd": None,
        "billed_estimate_usd": None,
        "actual_usd": None,
        "compared_actual_usd": None,
        "ratio": None,
        "difference_pct": None,
    }
    assert any_cost(list(found.values()))
    assert not any_cost([found[NEW_MODEL]])


def test_an_estimate_of_zero_is_not_divided_by() -> None:
    free = ModelCost("m", 1, 1, 1, 0.0, 0.0, 0.10, 0.10)
    assert free.ratio is None
    assert free.difference_pct is None
    assert free.difference_text() == "estimate $0"
    matched = ModelCost("m", 1, 1, 1, 0.3, 0.3, 0.1 + 0.2, 0.1 + 0.2)  # 0.30000000000000004
    assert matched.difference_text() == "0.0%"
    assert not matched.over_estimate


# -- status over a store the real engine billed -------------------------------------------


def _status(db: Path, *args: str) -> str:
    out = io.StringIO()
    assert main(["status", "--db", str(db), *args], out=out) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch run by the engine against the simulator, which bills every job $0.50
    (0.1 USD per second x 5 s) through ``include_cost``: PRO was estimated $0.40 and LITE
    $1.00, one job each. Then, never run: a RUNWAY job in the batch, a LITE job elsewhere."""
    tmp = tmp_path_factory.mktemp("billed")
    store = seed_store(
        tmp, [new_job("pro", model=PRO, cost=0.40), new_job("lite", model=LITE, cost=1.00)]
    )
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
    store.enqueue(BATCH, [new_job("waiting", model=RUNWAY, cost=0.25)])
    _stored(store, "later", {"queued": (LITE, 0.75, None)})
    store.close()
    return tmp / "store.db"


def _cost_rows(text: str) -> dict[str, list[str]]:
    """The estimate-vs-actual table of ``status``: model -> its other cells."""
    lines = text.split("\nestimate vs actual:\n", 1)[1].splitlines()
    cells = [re.split(r" {2,}", line.strip()) for line in lines]
    assert cells[0] == ["model", "billed", "estimated", "actual", "difference"]
    rows = {}
    for row in cells[1:]:
        if len(row) != 5:
            break  # the table ends where the next section starts
        rows[row[0]] = row[1:]
    return rows


#: PRO's row as the engine leaves it: billed $0.50 against $0.40. Its estimate was raised
#: to the bill while the job was in flight (PriceBook.raise_estimates keeps the spend cap a
#: bound); the quoted estimate, never raised, is what the bill is compared with.
PRO_OVER = ["1 of 1", "$0.40", "$0.50", "+25.0%"]


def test_status_text_compares_estimate_and_actual_per_model(billed: Path) -> None:
    text = _status(billed, "--batch", BATCH)
    assert _cost_rows(text) == {
        LITE: ["1 of 1", "$1.00", "$0.50", "-50.0%"],
        PRO: PRO_OVER,
        RUNWAY: ["0 of 1", "-", "-", "not billed yet"],
    }
    assert "paid and delivered" in text.split("estimate vs actual")[0]  # the money, above


def test_status_json_has_cost_by_model(billed: Path) -> None:
    data = json.loads(_status(billed, "--batch", BATCH, "--json"))
    found: dict[str, dict[str, Any]] = {c["model"]: c for c in data["cost_by_model"]}
    assert list(found) == sorted([PRO, LITE, RUNWAY])
    assert found[LITE] == {
        "model": LITE,
        "jobs": 1,
        "billed": 1,
        "compared": 1,
        "estimated_usd": 1.0,
        "billed_estimate_usd": 1.0,
        "actual_usd": 0.5,
        "compared_actual_usd": 0.5,
        "ratio": 0.5,
        "difference_pct": -50.0,
    }
    assert (found[PRO]["billed_estimate_usd"], found[PRO]["ratio"]) == (0.4, 1.25)
    assert found[RUNWAY]["billed"] == 0
    assert found[RUNWAY]["ratio"] is None
    everywhere = {c["model"]: c for c in json.loads(_status(billed, "--json"))["cost_by_model"]}
    assert (everywhere[LITE]["jobs"], everywhere[LITE]["estimated_usd"]) == (2, 1.75)


def test_status_of_every_batch_shows_the_table_too(billed: Path) -> None:
    text = _status(billed)
    assert text.startswith("2 batch(es): 4 job(s), spent $1.00\n")
    assert _cost_rows(text) == {
        LITE: ["1 of 2", "$1.00", "$0.50", "-50.0%"],
        PRO: PRO_OVER,
        RUNWAY: ["0 of 1", "-", "-", "not billed yet"],
    }


def test_status_without_estimates_or_costs_leaves_the_table_out(tmp_path: Path) -> None:
    seed_store(tmp_path, [new_job("a", model=PRO), new_job("b", model=NEW_MODEL)]).close()
    text = _status(tmp_path / "store.db", "--batch", BATCH)
    assert "estimate vs actual" not in text
    data = json.loads(_status(tmp_path / "store.db", "--json"))
    assert [c["model"] for c in data["cost_by_model"]] == sorted([PRO, NEW_MODEL])
    assert all(c["ratio"] is None for c in data["cost_by_model"])
