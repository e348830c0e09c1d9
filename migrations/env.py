"""Alembic environment for the orchestrator store.

The application runs migrations in code (``orchestrator.store.database.upgrade``), passing
its open connection through ``config.attributes["connection"]`` so migrations share the
engine's SQLite settings and its ``BEGIN IMMEDIATE`` transaction. Without a connection a
``sqlalchemy.url`` main option is used (handy for ``command.revision(..., autogenerate=True)``
with ``orchestrator.store.database.alembic_config()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import context

from orchestrator.store.database import make_engine
from orchestrator.store.tables import metadata

if TYPE_CHECKING:
    from sqlalchemy import Connection

config = context.config
target_metadata = metadata


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on ``connection`` (inside its transaction if it has one)."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: autogenerate "move and copy" batch operations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("pass a connection in config.attributes or set sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.connect() as new_connection:
            run_migrations(new_connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=bool(url and url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
