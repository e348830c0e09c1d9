"""Engine set-up: SQLite durability settings, transaction control and migrations.

SQLite (the default) is configured for "no paid job forgotten" rather than speed:

- ``journal_mode=WAL`` so readers never block the writer;
- ``synchronous=FULL`` so a commit survives a power cut (with NORMAL the last commit, e.g.
  a freshly persisted ``request_id``, can roll back and trigger a paid resubmission);
- ``busy_timeout=5000`` and ``foreign_keys=ON``.

Transactions: the ``sqlite3`` driver would open its own *deferred* transactions, and a
deferred transaction that later writes can fail with SQLITE_BUSY without waiting (SQLite
skips the busy handler on a lock upgrade). Following the SQLAlchemy recipe ("Serializable
isolation / Savepoints / Transactional DDL") the driver's transaction handling is switched
off and a ``begin`` event emits our own ``BEGIN``: ``BEGIN IMMEDIATE`` unless the
connection was marked read-only with :func:`read_transaction`. Any transaction that may
write therefore takes the write lock up front and waits on ``busy_timeout`` instead of
failing halfway; read-only transactions stay deferred so they never queue behind a writer.

PostgreSQL URLs (``postgresql+psycopg://...``) pass through, with one session setting
added unless the URL sets libpq ``options`` itself: a session left idle inside a
transaction for :data:`PG_IDLE_IN_TRANSACTION_MS` is ended by the server. Our transactions
last milliseconds; one left open that long belongs to a worker that is paused (SIGSTOP, a
frozen VM) or wedged, and ending it releases the claim lock and the row locks it held, which
would otherwise hold up every other worker until it resumed. Its lease has run out by then
(the default lease is as long), so the work it held may already be another worker's; when
it resumes, its next statement fails with :func:`retry_safe` true, the engine runs that
store call again on a new connection, and the lease checks fence it off if it was taken
over.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from alembic.config import Config

#: The newest migration's revision. Opening a store already at it skips Alembic entirely
#: (importing it costs ~0.4 s per command); tests/test_migrations.py keeps it in step.
SCHEMA_REVISION: Final = "0005"

MIGRATION_LOCK: Final = 0x6F726368  # "orch": the PostgreSQL advisory lock for migrations
CLAIM_LOCK: Final = 0x6F726369
"""PostgreSQL advisory lock held by each claim, so global limits see every other claim."""

PG_IDLE_IN_TRANSACTION_MS: Final = 60_000
"""How long PostgreSQL lets a session sit idle inside a transaction (the default lease)."""

MIN_SQLITE_VERSION: Final = (3, 35, 0)
"""``UPDATE ... RETURNING`` and ``INSERT ... RETURNING`` need 3.35."""

BEGIN_OPTION: Final = "orchestrator_begin"
"""Execution option naming the SQLite ``BEGIN`` mode of a connection's next transaction."""

BeginMode = Literal["DEFERRED", "IMMEDIATE"]

SQLITE_PRAGMAS: Final = (
    # busy_timeout first, so switching to WAL waits for other connections instead of failing.
    ("busy_timeout", "5000"),
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
)

_CANONICAL_JSON: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
dump_json: Final[Callable[[Any], str]] = _CANONICAL_JSON.encode
"""Canonical JSON: stable key order and no spaces, so equal values are equal text."""


class DatabaseError(RuntimeError):
    """The database cannot be used as configured (version, journal mode, location)."""


def to_url(url_or_path: str) -> URL:
    """A SQLAlchemy URL from a URL or a plain file path (``:memory:`` allowed).

    >>> to_url("state/jobs.db").render_as_string()
    'sqlite:///state/jobs.db'
    >>> to_url("postgresql+psycopg://u@h/db").get_backend_name()
    'postgresql'
    """
    if "://" in url_or_path:
        return make_url(url_or_path)
    if url_or_path == ":memory:":
        return URL.create("sqlite", database=":memory:")
    return URL.create("sqlite", database=str(Path(url_or_path).expanduser()))


def sqlite_file(url: URL) -> Path | None:
    """The database file of an SQLite URL; None for other backends and memory databases."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    return Path(url.database)


def store_exists(url_or_path: str) -> bool:
    """Whether the store is there already: an SQLite file that exists, or any server URL
    (a server database is created by its administrator, not by us)."""
    path = sqlite_file(to_url(url_or_path))
    return path is None or path.exists()


def check_sqlite_version(version: tuple[int, int, int] | None = None) -> None:
    """Refuse SQLite older than :data:`MIN_SQLITE_VERSION` with an actionable message."""
    found = version if version is not None else sqlite3.sqlite_version_info
    if tuple(found) < MIN_SQLITE_VERSION:
        wanted = ".".join(map(str, MIN_SQLITE_VERSION))
        raise DatabaseError(
            f"SQLite {'.'.join(map(str, found))} is too old: orchestrator needs {wanted} or "
            "later (for RETURNING); use a newer Python build or a PostgreSQL --db URL"
        )


def make_engine(url_or_path: str) -> Engine:
    """An engine for a path or URL; SQLite engines get the durability settings above."""
    url = to_url(url_or_path)
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url, json_serializer=dump_json, pool_pre_ping=True, connect_args=_session_options(url)
        )
    check_sqlite_version()
    path = sqlite_file(url)
    if path is None:
        # One shared connection, so every thread sees the same in-memory database.
        engine = create_engine(
            url,
            json_serializer=dump_json,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        engine = create_engine(url, json_serializer=dump_json)
    event.listen(engine, "connect", _sqlite_connect_listener(expect_wal=path is not None))
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def retry_safe(error: BaseException) -> bool:
    """True if the database rolled the whole transaction back on its own, so the store call
    that failed can run again as it was. PostgreSQL: a deadlock (SQLSTATE 40P01), a
    serialization failure (40001), or the session ended for idling in a transaction
    (25P03). SQLite: still locked by another process after ``busy_timeout`` (SQLITE_BUSY).

    >>> from types import SimpleNamespace
    >>> retry_safe(DBAPIError("SELECT 1", None, SimpleNamespace(sqlstate="40P01")))
    True
    >>> retry_safe(DBAPIError("BEGIN", None, SimpleNamespace(sqlite_errorcode=5)))
    True
    >>> retry_safe(DBAPIError("SELECT 1", None, SimpleNamespace(sqlstate="23505")))
    False
    """
    if not isinstance(error, DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) in _RETRY_SAFE:
        return True
    # Extended codes (SQLITE_BUSY_RECOVERY, _SNAPSHOT...) keep SQLITE_BUSY in the low byte.
    return (getattr(error.orig, "sqlite_errorcode", None) or 0) & 0xFF == _SQLITE_BUSY


_RETRY_SAFE: Final = frozenset({"25P03", "40001", "40P01"})
_SQLITE_BUSY: Final = 5


def _session_options(url: URL) -> dict[str, str]:
    """libpq ``options`` bounding idle transactions, unless the URL sets its own.

    >>> _session_options(to_url("postgresql+psycopg://u@h/db"))
    {'options': '-c idle_in_transaction_session_timeout=60000'}
    >>> _session_options(to_url("postgresql+psycopg://u@h/db?options=-c%20work_mem%3D64MB"))
    {}
    """
    if url.get_backend_name() != "postgresql" or "options" in url.query:
        return {}
    return {"options": f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_MS}"}


def _sqlite_connect_listener(*, expect_wal: bool) -> Callable[[Any, Any], None]:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Stop sqlite3 from opening its own deferred transactions; _begin_sqlite_transaction
        # emits BEGIN instead. Pragmas run here, outside any transaction, as they must.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for name, value in SQLITE_PRAGMAS:
                row = cursor.execute(f"PRAGMA {name} = {value}").fetchone()
                if name == "journal_mode" and expect_wal and str(row[0]).lower() != "wal":
                    raise DatabaseError(
                        f"could not enable WAL (journal_mode is {row[0]!r}); the database "
                        "must be on a local filesystem"
                    )
        finally:
            cursor.close()

    return configure


def _begin_sqlite_transaction(connection: Connection) -> None:
    mode = connection.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
    if mode not in ("DEFERRED", "IMMEDIATE"):
        raise ValueError(f"{BEGIN_OPTION} must be DEFERRED or IMMEDIATE, not {mode!r}")
    connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def _transaction(engine: Engine, mode: BeginMode) -> Iterator[Connection]:
    with engine.connect() as connection:
        connection.execution_options(**{BEGIN_OPTION: mode})
        with connection.begin():
            yield connection


def write_transaction(engine: Engine) -> AbstractContextManager[Connection]:
    """One short transaction that may write (``BEGIN IMMEDIATE`` on SQLite); commits on exit."""
    return _transaction(engine, "IMMEDIATE")


def read_transaction(engine: Engine) -> AbstractContextManager[Connection]:
    """One short read-only transaction (deferred ``BEGIN`` on SQLite: never waits for writers)."""
    return _transaction(engine, "DEFERRED")


# --- migrations -------------------------------------------------------------------------


def migrations_dir() -> Path:
    """The Alembic scripts: ``orchestrator/_migrations`` in a wheel, else ``<repo>/migrations``."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "_migrations", package_dir.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError(f"no Alembic migrations found next to {package_dir}")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code (no alembic.ini), optionally bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for a new or unmigrated one)."""
    with engine.connect() as connection:
        try:
            row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        except DBAPIError:  # no alembic_version table yet: a new database
            return None
        finally:
            connection.rollback()
    return str(row[0]) if row else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction (concurrent starters serialise).

    A database already at :data:`SCHEMA_REVISION` is left alone without loading Alembic.
    """
    if revision == "head" and current_revision(engine) == SCHEMA_REVISION:
        return
    from alembic import command

    _migrate(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to ``revision`` (``"base"`` drops every table)."""
    from alembic import command

    _migrate(engine, lambda config: command.downgrade(config, revision))


def _migrate(engine: Engine, run: Callable[[Config], None]) -> None:
    with engine.connect() as connection:
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:
            # SQLite's documented procedure for table rebuilds (batch migrations): foreign
            # keys off outside the transaction, check them before commit, back on after.
            _set_foreign_keys(connection, enabled=False)
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    # Workers starting together on a new database: one migrates, the others
                    # wait here, then Alembic finds the schema already at head.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                run(alembic_config(connection))
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise DatabaseError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if is_sqlite:
                _set_foreign_keys(connection, enabled=True)


def _set_foreign_keys(connection: Connection, *, enabled: bool) -> None:
    # Through the driver: a SQLAlchemy execute would autobegin, and this pragma is a no-op
    # inside a transaction.
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")
