"""Migrations: head equals the SQLModel tables on SQLite and PostgreSQL, and the scripts
upgrade (with data in place) and downgrade cleanly on both."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from orchestrator.store.database import (
    alembic_config,
    downgrade,
    make_engine,
    migrations_dir,
    upgrade,
)
from orchestrator.store.tables import metadata

if TYPE_CHECKING:
    from collections.abc import Iterator

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent
TABLES = {
    "batches",
    "jobs",
    "attempts",
    "events",
    "workers",
    "pacers",
    "store_meta",
    "run_times",
    "catalog_entries",
}
HEAD = "0005"


@pytest.fixture(name="engine", params=["sqlite", "postgresql"])
def _engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty SQLite file or PostgreSQL database, disposed after the test."""
    if request.param == "sqlite":
        url = str(tmp_path / "migrations.db")
    else:
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_migrations_dir_resolves_to_the_source_checkout() -> None:
    # No orchestrator/_migrations in a source checkout: the top-level folder is used.
    assert migrations_dir() == REPO / "migrations"
    assert (migrations_dir() / "env.py").is_file()


def test_scripts_form_a_single_line_of_history() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD]
    assert scripts.get_base() == "0001"
    assert [s.revision for s in scripts.walk_revisions()] == [
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]


def test_upgrade_to_head_matches_the_models(engine: Engine) -> None:
    upgrade(engine)

    assert current_revision(engine) == HEAD
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert schema_differences(engine) == []


def test_comparison_notices_drift(engine: Engine) -> None:
    # Guard against a vacuous comparison: a schema missing a table must show up.
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE events")

    differences = schema_differences(engine)

    assert any(diff[0] == "add_table" for diff in differences if isinstance(diff, tuple))


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    upgrade(engine)
    downgrade(engine, "base")

    assert current_revision(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())

    upgrade(engine)
    assert current_revision(engine) == HEAD
    assert schema_differences(engine) == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)

    assert current_revision(engine) == HEAD


def test_upgrade_from_0001_keeps_the_jobs_and_starts_their_leases_at_zero(engine: Engine) -> None:
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO batches (name, manifest_path, output_root, settings, created_at,"
                " updated_at) VALUES ('b', 'm.yaml', 'out', '{}', :t, :t)"
            ),
            {"t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO jobs (batch, name, key, model_id, state, payload, output_path,"
                " attempts, max_attempts, created_at, updated_at) VALUES ('b', 'j', 'k', 'm',"
                " 'submitted', '{}', 'j.mp4', 1, 3, :t, :t)"
            ),
            {"t": NOW},
        )

    upgrade(engine)

    assert current_revision(engine) == HEAD
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT state, worker_id, lease_token, fetch_failures FROM jobs")
        ).one()
        store_ids = connection.execute(text("SELECT value FROM store_meta")).scalars().all()
    assert tuple(row) == ("submitted", None, 0, 0)
    assert len(store_ids) == 1
    assert len(store_ids[0]) == 32
    assert schema_differences(engine) == []


def test_foreign_keys_are_back_on_after_migrating(tmp_path: Path) -> None:
    # upgrade() turns them off for SQLite table rebuilds; pooled connections must not
    # stay that way.
    engine = make_engine(str(tmp_path / "fk.db"))
    upgrade(engine)

    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_schema_revision_constant_is_the_alembic_head() -> None:
    """Opening a store skips Alembic when it is at SCHEMA_REVISION: they must agree."""
    from alembic.script import ScriptDirectory

    from orchestrator.store.database import SCHEMA_REVISION, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_at_head_opens_without_alembic(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from orchestrator.store import Store
    from orchestrator.store.database import SCHEMA_REVISION, current_revision

    path = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    with Store.open(path) as store:
        assert current_revision(store.engine) == SCHEMA_REVISION
    with Store.open(path) as store:  # the second open takes the fast path
        assert store.counts()["pending"] == 0


def test_concurrent_first_opens_on_postgresql_migrate_once(pg_url: str) -> None:
    """Several workers starting at once on an empty database: one migrates, the others
    wait on the advisory lock and then find the schema at head."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.store import Store

    def open_and_count(_: int) -> int:
        with Store.open(pg_url) as store:
            return store.counts()["pending"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_and_count, range(4))) == [0, 0, 0, 0]
    engine = make_engine(pg_url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()
