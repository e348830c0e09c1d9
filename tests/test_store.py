"""The Store: SQLite durability settings, transactions, idempotent enqueue and queries."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, exc, update

from orchestrator.store import (
    IN_FLIGHT,
    TERMINAL,
    DatabaseError,
    JobState,
    NewJob,
    Store,
    database,
    make_engine,
)
from orchestrator.store.database import check_sqlite_version, to_url
from orchestrator.store.states import PARKED, TO_FETCH
from orchestrator.store.tables import JOBS

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
IMAGE_REF = {"$image": {"path": "images/beach.jpg", "sha256": "ab" * 32}}


def key_of(seed: object) -> str:
    return hashlib.sha256(repr(seed).encode()).hexdigest()


def new_job(
    name: str,
    *,
    model: str = "bytedance/seedance-1-0/lite/image-to-video",
    prompt: str | None = None,
    payload: dict[str, Any] | None = None,
) -> NewJob:
    """A job whose key follows its model and payload, as the manifest's keys do."""
    payload = payload or {"prompt": prompt or f"prompt for {name}", "image": IMAGE_REF}
    return NewJob(
        key=key_of((model, json.dumps(payload, sort_keys=True))),
        name=name,
        model_id=model,
        payload=payload,
        output_path=f"demo/{model.split('/')[0]}/{name}.mp4",
        max_attempts=3,
        estimated_cost_usd=0.25,
    )


@pytest.fixture(name="db_path")
def _db_path(tmp_path: Path) -> Path:
    """A database file in a folder that does not exist yet."""
    return tmp_path / "state" / "orchestrator.db"


@pytest.fixture(name="store")
def _store(db_path: Path) -> Iterator[Store]:
    """An open store on a fresh file with a fixed clock and a ``demo`` batch."""
    with Store.open(str(db_path), clock=lambda: NOW) as store:
        store.ensure_batch(
            "demo", manifest_path="demo.yaml", output_root="outputs", settings={"retry": {}}
        )
        yield store


def set_state(store: Store, name: str, state: JobState, **values: Any) -> None:
    with store.write() as connection:
        connection.execute(
            update(JOBS).where(JOBS.c.name == name).values(state=state.value, **values)
        )


# --- engine and transactions ------------------------------------------------------------


def test_durability_settings_hold_on_a_fresh_connection(store: Store, db_path: Path) -> None:
    engine = make_engine(str(db_path))
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 2  # FULL
            assert pragma("busy_timeout") == 5000
            assert pragma("foreign_keys") == 1
    finally:
        engine.dispose()


def test_writes_begin_immediate_and_reads_begin_deferred(store: Store) -> None:
    statements: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.enqueue("demo", [new_job("beach")])
        assert statements[0] == "BEGIN IMMEDIATE"

        statements.clear()
        store.counts("demo")
        assert statements[0] == "BEGIN DEFERRED"
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)


def test_a_write_transaction_holds_the_write_lock_from_its_begin(
    store: Store, db_path: Path
) -> None:
    # A second writer that will not wait (timeout=0) is refused while the store's write
    # transaction is open, although that transaction has not written anything yet.
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        with store.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again after commit
        other.execute("ROLLBACK")

        # A read transaction takes no write lock: the other writer gets in at once.
        with store.read():
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()


def test_foreign_keys_are_enforced_and_a_failed_write_rolls_back(store: Store) -> None:
    with pytest.raises(exc.IntegrityError):
        store.enqueue("no-such-batch", [new_job("beach")])

    assert store.list_jobs() == []
    assert store.events() == []


def test_plain_paths_and_urls() -> None:
    assert to_url("a/b.db").render_as_string() == "sqlite:///a/b.db"
    assert to_url("sqlite:////tmp/x.db").database == "/tmp/x.db"
    assert to_url("postgresql+psycopg://u:p@h/db").get_backend_name() == "postgresql"


def test_postgresql_urls_pass_through_with_a_bound_on_idle_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Check what would reach create_engine, without a server.
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(
        database, "create_engine", lambda url, **kwargs: calls.append((url, kwargs))
    )

    database.make_engine("postgresql+psycopg://user@localhost/orchestrator")
    database.make_engine("postgresql+psycopg://user@localhost/orchestrator?options=-c%20x%3D1")

    (url, kwargs), (_, own) = calls
    assert url.render_as_string() == "postgresql+psycopg://user@localhost/orchestrator"
    assert "poolclass" not in kwargs
    assert kwargs["connect_args"] == {"options": "-c idle_in_transaction_session_timeout=60000"}
    assert own["connect_args"] == {}  # the URL's own options win


def test_an_old_sqlite_is_refused_with_a_clear_message() -> None:
    check_sqlite_version((3, 35, 0))
    with pytest.raises(DatabaseError, match=r"SQLite 3\.34\.1 is too old.*3\.35\.0"):
        check_sqlite_version((3, 34, 1))


def test_an_in_memory_store_works_across_threads() -> None:
    with Store.open(":memory:") as store:
        store.ensure_batch("mem", manifest_path="m.yaml", output_root="out", settings={})
        worker = threading.Thread(target=store.enqueue, args=("mem", [new_job("a")]))
        worker.start()
        worker.join()
        assert store.counts("mem")["pending"] == 1


# --- enqueue ------------------------------------------------------------------------------


def test_enqueue_is_idempotent(store: Store) -> None:
    jobs = [new_job("beach"), new_job("city"), new_job("forest")]

    first = store.enqueue("demo", jobs)
    second = store.enqueue("demo", jobs)

    assert (first.added, first.existing) == (3, 0)
    assert (second.added, second.existing) == (0, 3)
    assert store.counts("demo")["pending"] == 3
    events = store.events("demo")
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [
        ("enqueued", None, "pending")
    ] * 3
    assert [e.job_id for e in events] == [j.row_id for j in store.list_jobs()]


def test_duplicate_keys_within_one_call_are_added_once(store: Store) -> None:
    result = store.enqueue("demo", [new_job("beach"), new_job("beach")])

    assert (result.added, result.existing) == (1, 1)


def test_enqueue_stores_canonical_json_and_image_references(store: Store) -> None:
    store.enqueue("demo", [new_job("beach", payload={"z": 1, "image": IMAGE_REF, "a": "x"})])

    with store.read() as connection:
        stored = connection.execute(JOBS.select()).one()

    assert stored.payload == json.dumps(
        {"a": "x", "image": IMAGE_REF, "z": 1}, sort_keys=True, separators=(",", ":")
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"prompt": "p", "first_frame_image_url": "data:image/png;base64,iVBORw0KGgo="},
        {"prompt": "p", "image_urls": ["https://example.com/a.png", "data:image/jpeg;base64,/9j/"]},
        {"prompt": "p", "nested": {"promptImage": "DATA:image/png;base64,AAAA"}},
    ],
    ids=["top-level", "in-a-list", "nested-upper-case"],
)
def test_enqueue_refuses_data_uris_and_stores_nothing(
    store: Store, payload: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="data URI"):
        store.enqueue("demo", [new_job("fine"), new_job("inline", payload=payload)])

    assert store.list_jobs() == []
    assert store.events() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "ABC"}, "64 lowercase hex"),
        ({"output_path": "../escape.mp4"}, "inside the output root"),
        ({"output_path": "/abs/x.mp4"}, "inside the output root"),
        ({"max_attempts": 0}, "at least 1"),
        ({"payload": {"image": b"raw bytes"}}, "not JSON"),
    ],
    ids=["bad-key", "dotdot-path", "absolute-path", "no-attempts", "bytes"],
)
def test_enqueue_refuses_invalid_jobs(store: Store, change: dict[str, Any], message: str) -> None:
    invalid = replace(new_job("beach"), **change)

    with pytest.raises(ValueError, match=message):
        store.enqueue("demo", [invalid])

    assert store.list_jobs() == []


def test_an_edited_job_is_added_beside_the_old_one_under_a_tagged_name(store: Store) -> None:
    original = new_job("beach", prompt="slow dolly-in")
    edited = new_job("beach", prompt="slow dolly-out")
    store.enqueue("demo", [original])
    set_state(store, "beach", JobState.SUCCEEDED, sha256="cd" * 32)

    result = store.enqueue("demo", [edited])

    tag = edited.key[:8]
    assert (result.added, result.existing) == (1, 0)
    assert result.renamed == (("beach", f"beach-{tag}"),)
    old, new = store.list_jobs("demo")
    assert (old.id, old.key, old.state, old.output_path) == (
        "beach",
        original.key,
        JobState.SUCCEEDED,
        original.output_path,
    )
    assert (new.id, new.key, new.state) == (f"beach-{tag}", edited.key, JobState.PENDING)
    assert new.output_path == original.output_path.replace("beach.mp4", f"beach-{tag}.mp4")
    assert store.events(job_id=new.row_id)[0].detail == {"renamed_from": "beach"}
    # Enqueueing the edited manifest again changes nothing.
    assert store.enqueue("demo", [edited]).added == 0


@pytest.mark.slow
def test_enqueue_of_20000_jobs(store: Store) -> None:
    models = ["m/one", "m/two"]
    jobs = [new_job(f"job{i:05d}", model=models[i % 2]) for i in range(20_000)]

    result = store.enqueue("demo", jobs)
    again = store.enqueue("demo", jobs)

    assert (result.added, result.existing) == (20_000, 0)
    assert (again.added, again.existing) == (0, 20_000)
    states = store.states_by_key("demo")
    assert states == {job.key: JobState.PENDING for job in jobs}
    assert store.counts_by_model("demo")["m/one"]["pending"] == 10_000
    assert len(store.events("demo")) == 20_000
    assert [j.id for j in store.list_jobs("demo", limit=2, offset=19_998)] == [
        "job19998",
        "job19999",
    ]


# --- batches and queries ------------------------------------------------------------------


def test_ensure_batch_refreshes_settings_and_keeps_paths(db_path: Path) -> None:
    moments = iter([NOW, NOW + timedelta(hours=1)])
    with Store.open(str(db_path), clock=lambda: next(moments)) as store:
        store.ensure_batch("b1", manifest_path="a.yaml", output_root="out", settings={"x": 1})
        store.ensure_batch("b1", manifest_path="b.yaml", output_root="elsewhere", settings={})

        (batch,) = store.batches()

    assert (batch.name, batch.manifest_path, batch.output_root) == ("b1", "a.yaml", "out")
    assert batch.settings == {}
    assert (batch.created_at, batch.updated_at) == (NOW, NOW + timedelta(hours=1))
    assert batch.job_count == 0


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "spring campaign", "ü"])
def test_batch_names_must_be_safe_folder_names(store: Store, name: str) -> None:
    with pytest.raises(ValueError, match="invalid batch name"):
        store.ensure_batch(name, manifest_path="m.yaml", output_root="out", settings={})


def test_counts_and_list_jobs_filter_by_batch_state_and_model(store: Store) -> None:
    store.ensure_batch("other", manifest_path="o.yaml", output_root="out", settings={})
    store.enqueue("demo", [new_job("a"), new_job("b"), new_job("c", model="runway/gen4")])
    store.enqueue("other", [new_job("a")])
    set_state(store, "b", JobState.SUBMITTED, request_id="req-b")
    set_state(store, "c", JobState.FAILED, error="boom")

    assert store.counts("demo") == {s.value: 0 for s in JobState} | {
        "pending": 1,
        "submitted": 1,
        "failed": 1,
    }
    assert store.counts()["pending"] == 2
    assert [j.id for j in store.list_jobs("demo", state="submitted")] == ["b"]
    assert [j.id for j in store.list_jobs(model="runway/gen4")] == ["c"]
    assert [(j.batch, j.id) for j in store.list_jobs(state="pending")] == [
        ("demo", "a"),
        ("other", "a"),
    ]
    assert [j.id for j in store.list_jobs("demo", limit=1, offset=1)] == ["b"]
    assert store.list_jobs("demo", state="failed")[0].error == "boom"
    with pytest.raises(ValueError, match="not a valid JobState"):
        store.list_jobs(state="no-such-state")


def test_counts_by_model(store: Store) -> None:
    store.enqueue("demo", [new_job("a"), new_job("b", model="runway/gen4")])
    set_state(store, "b", JobState.SUCCEEDED)

    by_model = store.counts_by_model("demo")

    assert list(by_model) == ["bytedance/seedance-1-0/lite/image-to-video", "runway/gen4"]
    assert by_model["runway/gen4"]["succeeded"] == 1
    assert by_model["runway/gen4"]["pending"] == 0


def test_spend_sums_recorded_costs(store: Store) -> None:
    store.enqueue("demo", [new_job("a"), new_job("b"), new_job("c")])
    assert store.spend("demo") == 0.0

    set_state(store, "a", JobState.SUCCEEDED, cost_usd=0.25)
    set_state(store, "b", JobState.FAILED, cost_usd=0.5)

    assert store.spend("demo") == pytest.approx(0.75)
    assert store.batches()[0].job_count == 3


def test_a_batch_is_looked_up_by_name(store: Store) -> None:
    store.enqueue("demo", [new_job("a"), new_job("b")])
    found = store.batch("demo")
    assert found is not None
    assert found == store.batches()[0]
    assert (found.name, found.job_count) == ("demo", 2)
    assert store.batch("nope") is None


def test_payloads_are_the_stored_json_by_row_id(store: Store) -> None:
    store.enqueue("demo", [new_job("a", prompt="waves")])
    (view,) = store.list_jobs("demo")
    payloads = store.payloads("demo")
    assert list(payloads) == [view.row_id]
    assert json.loads(payloads[view.row_id])["prompt"] == "waves"
    assert store.payloads("nope") == {}


def test_job_views_serialise_to_the_jobs_json_contract(store: Store) -> None:
    store.enqueue("demo", [new_job("beach")])
    set_state(store, "beach", JobState.SUCCEEDED, sha256="ef" * 32, cost_usd=0.3)

    (view,) = store.list_jobs()
    data = json.loads(json.dumps(view.as_dict()))

    assert {
        "id",
        "key",
        "model",
        "state",
        "request_id",
        "output_path",
        "sha256",
        "cost",
        "error",
    } <= set(data)
    assert (data["id"], data["state"], data["cost"]) == ("beach", "succeeded", 0.3)
    assert data["created_at"] == "2026-03-01T23:00:00+00:00"


def test_timestamps_are_aware_utc_and_naive_ones_are_refused(store: Store) -> None:
    store.enqueue("demo", [new_job("beach")])
    later = datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    set_state(store, "beach", JobState.RETRY_WAIT, next_attempt_at=later)

    (view,) = store.list_jobs()

    assert view.created_at == NOW
    assert view.created_at.tzinfo is UTC
    assert view.next_attempt_at == later
    assert view.next_attempt_at.tzinfo is UTC
    with pytest.raises(exc.StatementError, match="naive datetime"):
        set_state(store, "beach", JobState.RETRY_WAIT, next_attempt_at=datetime(2026, 1, 1))


def test_record_event_appends_to_the_log(store: Store) -> None:
    store.record_event("run_started", batch="demo", detail={"workers": 4})

    (logged,) = store.events("demo")
    assert (logged.kind, logged.at, logged.detail) == ("run_started", NOW, {"workers": 4})


def test_state_sets() -> None:
    assert JobState.TERMINAL == TERMINAL == {"succeeded", "failed", "cancelled"}
    assert JobState.IN_FLIGHT == IN_FLIGHT == {"submitting", "submitted", "downloading"}
    assert JobState.NEEDS_RECONCILE not in IN_FLIGHT | TERMINAL
    assert {"downloading", "fetch_wait", "fetch_paused"} == TO_FETCH
    assert {"needs_reconcile", "fetch_paused"} == PARKED
    assert not (TO_FETCH | PARKED) & TERMINAL  # paid work never ends by itself
    assert len(JobState) == 11


# --- durability across processes ----------------------------------------------------------


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (a separate process) and return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_reopened_store_in_another_process_keeps_everything(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        store.ensure_batch("demo", manifest_path="m.yaml", output_root="out", settings={})
        store.enqueue("demo", [new_job("a"), new_job("b")])
        set_state(store, "b", JobState.SUBMITTED, request_id="req-123")

    output = run_python(
        f"""
        import json
        from orchestrator.store import NewJob, Store
        with Store.open({str(db_path)!r}) as store:
            jobs = {{j.id: j.request_id for j in store.list_jobs("demo")}}
            counts = store.counts("demo")
            store.enqueue("demo", [NewJob(key="f" * 64, name="c", model_id="m",
                payload={{"prompt": "x"}}, output_path="c.mp4", max_attempts=1,
                estimated_cost_usd=None)])
        print(json.dumps({{"jobs": jobs, "counts": counts}}))
        """
    )

    seen = json.loads(output)
    assert seen["jobs"] == {"a": None, "b": "req-123"}
    assert (seen["counts"]["pending"], seen["counts"]["submitted"]) == (1, 1)
    with Store.open(str(db_path)) as store:
        assert store.counts("demo")["pending"] == 2
        assert len(store.events("demo")) == 3
