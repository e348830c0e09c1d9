"""Migrations: head equals the SQLModel tables, and the scripts upgrade and downgrade cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from orchestrator.store.database import (
    alembic_config,
    downgrade,
    make_engine,
    migrations_dir,
    upgrade,
)
from orchestrator.store.tables import metadata

REPO = Path(__file__).resolve().parent.parent
TABLES = {"batches", "jobs", "attempts", "events"}


@pytest.fixture(name="engine")
def _engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty SQLite file, disposed after the test."""
    engine = make_engine(str(tmp_path / "migrations.db"))
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
    assert scripts.get_heads() == ["0001"]
    assert scripts.get_base() == "0001"


def test_upgrade_to_head_matches_the_models(engine: Engine) -> None:
    upgrade(engine)

    assert current_revision(engine) == "0001"
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
    assert current_revision(engine) == "0001"
    assert schema_differences(engine) == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)

    assert current_revision(engine) == "0001"


def test_foreign_keys_are_back_on_after_migrating(engine: Engine) -> None:
    # upgrade() turns them off for SQLite table rebuilds; pooled connections must not
    # stay that way.
    upgrade(engine)

    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_schema_revision_constant_is_the_alembic_head() -> None:
    """Opening a store skips Alembic when it is at SCHEMA_REVISION: they must agree."""
    from alembic.script import ScriptDirectory

    from orchestrator.store.database import SCHEMA_REVISION, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


def test_a_store_at_head_opens_without_alembic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.store import Store
    from orchestrator.store.database import SCHEMA_REVISION, current_revision

    path = str(tmp_path / "s.db")
    with Store.open(path) as store:
        assert current_revision(store.engine) == SCHEMA_REVISION
    with Store.open(path) as store:  # the second open takes the fast path
        assert store.counts()["pending"] == 0
