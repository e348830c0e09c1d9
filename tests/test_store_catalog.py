"""Migration 0005 on SQLite and PostgreSQL: the catalog cache table and the quoted estimate."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from engine_helpers import BATCH, new_job
from model_ids import PRO
from sqlalchemy import inspect, select, update

from orchestrator.store import NewJob, Store
from orchestrator.store.catalog import CatalogCache
from orchestrator.store.database import SCHEMA_REVISION, current_revision, downgrade
from orchestrator.store.prices import PriceBook
from orchestrator.store.tables import JOBS
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(name="location", params=["sqlite", "postgresql"])
def _location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))


def enqueue(store: Store, *jobs: NewJob) -> None:
    store.ensure_batch(BATCH, manifest_path="m.yaml", output_root="out", settings={})
    store.enqueue(BATCH, list(jobs))


def quoted_and_estimated(store: Store) -> list[tuple[float | None, float | None]]:
    query = select(JOBS.c.quoted_cost_usd, JOBS.c.estimated_cost_usd).order_by(JOBS.c.name)
    with store.read() as connection:
        return [(q, e) for q, e in connection.execute(query)]


def test_the_quoted_estimate_is_kept_when_the_caps_estimate_is_raised(location: str) -> None:
    with Store.open(location) as store:
        enqueue(store, new_job("a", cost=0.4), new_job("b"))
        assert quoted_and_estimated(store) == [(0.4, 0.4), (None, None)]
        book = PriceBook(WorkQueue(store))
        [(b_row, _payload)] = book.unpriced(BATCH)[PRO]
        book.set_estimates([(b_row, 0.5)])  # priced before a capped run: quoted too
        with store.write() as connection:  # a bill above the estimate raises it
            connection.execute(
                update(JOBS).values(estimated_cost_usd=JOBS.c.estimated_cost_usd * 2)
            )
        book.set_estimates([(b_row, 0.7)])
        assert quoted_and_estimated(store) == [(0.4, 0.8), (0.5, 0.7)]


def test_0005_starts_existing_jobs_quoted_at_their_estimate_and_goes_back(location: str) -> None:
    with Store.open(location) as store:
        enqueue(store, new_job("a", cost=0.4))
        CatalogCache(store, "api.example").save({"model_id": PRO})
        engine = store.engine
        downgrade(engine, "0004")
        names = inspect(engine).get_table_names()
        assert "catalog_entries" not in names
        assert "quoted_cost_usd" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    with Store.open(location) as store:
        assert current_revision(store.engine) == SCHEMA_REVISION
        assert quoted_and_estimated(store) == [(0.4, 0.4)]
        assert CatalogCache(store, "api.example").load_all() == []
