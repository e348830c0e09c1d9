"""Learned run times in the store: saved, replaced, forgotten, never stored when bad, and
there after a store at 0003 migrates. Store tests run on each backend (``db_url``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from model_ids import LITE, PRO
from sqlalchemy import Engine, event, inspect, select, text
from test_store_work import START, Clock

from orchestrator.store import Store
from orchestrator.store.database import (
    SCHEMA_REVISION,
    current_revision,
    downgrade,
    make_engine,
    upgrade,
)
from orchestrator.store.runtimes import MAX_KEY_LENGTH, RunTimeBook, StoredRunTime
from orchestrator.store.tables import RUN_TIMES
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[Store]:
    with Store.open(db_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def book(store: Store) -> RunTimeBook:
    return RunTimeBook(WorkQueue(store))


def run_time(key: str, model: str = PRO, typical: float = 90.0, **kwargs: Any) -> StoredRunTime:
    fields: dict[str, Any] = {"spread_s": 10.0, "samples": 3} | kwargs
    return StoredRunTime(key=key, model_id=model, typical_s=typical, **fields)


def updated_at(store: Store) -> dict[str, datetime]:
    with store.read() as connection:
        rows = connection.execute(select(RUN_TIMES.c.key, RUN_TIMES.c.updated_at)).all()
    return dict(rows)


class Transactions:
    """Counts the transactions an engine begins while it is listened to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.begun = 0

    def _begin(self, _connection: Any) -> None:
        self.begun += 1

    def __enter__(self) -> Transactions:
        event.listen(self.engine, "begin", self._begin)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "begin", self._begin)


def test_an_empty_store_has_no_run_times(book: RunTimeBook) -> None:
    assert book.load() == {}
    assert book.save([]) == 0


def test_run_times_round_trip(book: RunTimeBook, store: Store) -> None:
    rows = [
        run_time(f"{PRO}|5s|1080p", typical=95.5, spread_s=12.25, samples=4),
        run_time(f"{PRO}|10s|720p", typical=0.0, spread_s=0.0, samples=0),
        run_time(f"{LITE}|5s|480p", LITE, typical=1e6, spread_s=3.5, samples=10_000),
        run_time("k" * MAX_KEY_LENGTH, LITE),
    ]

    assert book.save(rows) == 4

    assert book.load() == {row.key: row for row in rows}
    assert all(isinstance(row.typical_s, float) for row in book.load().values())
    assert set(updated_at(store).values()) == {START}


def test_saving_a_key_again_replaces_its_row_and_leaves_the_others(
    book: RunTimeBook, store: Store, clock: Clock
) -> None:
    book.save([run_time("a|5s"), run_time("b|5s")])
    clock.now = START + timedelta(hours=20)

    assert book.save([run_time("a|5s", LITE, typical=40.0, spread_s=2.0, samples=9)]) == 1

    assert book.load() == {
        "a|5s": run_time("a|5s", LITE, typical=40.0, spread_s=2.0, samples=9),
        "b|5s": run_time("b|5s"),
    }
    assert updated_at(store) == {"a|5s": clock.now, "b|5s": START}


def test_one_save_is_one_transaction_however_many_rows(book: RunTimeBook, store: Store) -> None:
    rows = [run_time(f"m{i % 7}|{i}s|1080p", f"m{i % 7}", typical=float(i)) for i in range(500)]

    with Transactions(store.engine) as transactions:
        written = book.save(rows)

    assert written == 500
    assert transactions.begun == 1
    assert len(book.load()) == 500


def test_the_last_row_for_a_key_in_one_save_wins(book: RunTimeBook) -> None:
    # One upsert may not touch a row twice on PostgreSQL: the book keeps one row per key.
    assert book.save([run_time("a|5s", typical=1.0), run_time("a|5s", typical=2.0)]) == 1

    assert book.load()["a|5s"].typical_s == 2.0


@pytest.mark.parametrize(
    "bad",
    [
        run_time("nan", typical=float("nan")),
        run_time("inf", typical=float("inf")),
        run_time("spread-nan", spread_s=float("nan")),
        run_time("spread-inf", spread_s=float("-inf")),
        run_time("negative", typical=-0.5),
        run_time("negative-spread", spread_s=-1.0),
        run_time("negative-samples", samples=-1),
        run_time("bool-samples", samples=True),
        run_time("float-samples", samples=2.5),
        run_time("k" * (MAX_KEY_LENGTH + 1)),
        run_time(""),
        run_time("no-model", ""),
        run_time("none-model", None),  # type: ignore[arg-type]
        run_time(None),  # type: ignore[arg-type]
    ],
    ids=lambda row: str(row.key)[:20] or "empty-key",
)
def test_a_bad_estimate_is_skipped_never_stored(
    book: RunTimeBook, store: Store, bad: StoredRunTime
) -> None:
    good = run_time("good|5s")

    with Transactions(store.engine) as transactions:
        assert book.save([bad]) == 0
    assert transactions.begun == 0  # nothing to write opens no write transaction

    assert book.save([bad, good]) == 1
    assert book.load() == {"good|5s": good}


def test_a_bad_row_put_in_by_hand_is_not_loaded(book: RunTimeBook, store: Store) -> None:
    book.save([run_time("good|5s")])
    with store.write() as connection:
        connection.execute(
            RUN_TIMES.insert(),
            {
                "key": "edited|5s",
                "model_id": PRO,
                "typical_s": -3.0,
                "spread_s": 1.0,
                "samples": 1,
                "updated_at": START,
            },
        )

    assert list(book.load()) == ["good|5s"]


def test_forget_one_model_then_all(book: RunTimeBook) -> None:
    book.save([run_time("p|5s"), run_time("p|10s"), run_time("l|5s", LITE)])

    assert book.forget("no/such-model") == 0
    assert book.forget(PRO) == 2
    assert list(book.load()) == ["l|5s"]
    assert book.forget() == 1
    assert book.load() == {}
    assert book.forget() == 0


@pytest.fixture(name="location", params=["sqlite", "postgresql"])
def _location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that outlives one ``Store.open``: an SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))


def test_the_next_nights_store_starts_from_what_was_saved(location: str) -> None:
    with Store.open(location) as tonight:
        RunTimeBook(WorkQueue(tonight)).save([run_time("a|5s", typical=80.0)])

    with Store.open(location) as tomorrow:
        assert RunTimeBook(WorkQueue(tomorrow)).load() == {"a|5s": run_time("a|5s", typical=80.0)}


def test_a_store_at_0003_migrates_to_head_with_the_table(location: str) -> None:
    engine = make_engine(location)
    try:
        upgrade(engine, "0003")
        assert "run_times" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            store_id = connection.execute(text("SELECT value FROM store_meta")).scalar_one()
    finally:
        engine.dispose()

    with Store.open(location) as store:
        assert current_revision(store.engine) == SCHEMA_REVISION
        book = RunTimeBook(WorkQueue(store))
        assert book.load() == {}
        assert book.save([run_time("a|5s")]) == 1
        assert list(book.load()) == ["a|5s"]
        engine = store.engine
        with store.read() as connection:  # the store's own identity came through untouched
            assert connection.execute(text("SELECT value FROM store_meta")).scalar_one() == (
                store_id
            )

        downgrade(engine, "0003")
        assert current_revision(engine) == "0003"
        assert "run_times" not in inspect(engine).get_table_names()
        assert "store_meta" in inspect(engine).get_table_names()
