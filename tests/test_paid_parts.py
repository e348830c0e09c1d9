"""The parts behind paid work, one at a time: placing, sidecars, prices, re-run commands."""

from __future__ import annotations

import errno
import json
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from engine_helpers import (
    BATCH,
    by_name,
    fast_settings,
    make_profile,
    new_job,
    run_engine,
    seed_store,
    simulator,
)
from model_ids import PRO

from orchestrator.api import RunComfyError, TransientError
from orchestrator.api.responses import ModelInfo
from orchestrator.catalog import builtin_catalog
from orchestrator.cli.hints import rerun_command
from orchestrator.engine.core import EngineReport
from orchestrator.engine.download import Downloader
from orchestrator.engine.paidwork import FetchProblem, breaker_for_fetch
from orchestrator.engine.prices import price_unpriced
from orchestrator.outputs import atomicwrite, placing
from orchestrator.outputs.ownership import NoFreeName
from orchestrator.outputs.placing import place_video
from orchestrator.outputs.sidecar import sidecar_path, write_sidecar
from orchestrator.store import JobState, Store
from orchestrator.store.prices import PriceBook
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from pathlib import Path

# -- sidecars that claim a name ------------------------------------------------------------


def test_an_exclusive_sidecar_never_replaces_one(tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    assert write_sidecar(video, {"n": 1}, exclusive=True)
    assert not write_sidecar(video, {"n": 2}, exclusive=True)
    assert json.loads(sidecar_path(video).read_text())["n"] == 1
    assert write_sidecar(video, {"n": 3})  # a plain write replaces it
    assert json.loads(sidecar_path(video).read_text())["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary left


def test_without_hard_links_a_sidecar_is_created_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(_source: Any, _target: Any) -> None:
        raise OSError(errno.EPERM, "hard links are not supported here")

    monkeypatch.setattr(atomicwrite.os, "link", no_links)
    video = tmp_path / "a.mp4"
    assert write_sidecar(video, {"n": 1}, exclusive=True)
    assert not write_sidecar(video, {"n": 2}, exclusive=True)
    assert json.loads(sidecar_path(video).read_text())["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


# -- placing a video ---------------------------------------------------------------------


def temp_video(folder: Path, body: bytes = b"video") -> Path:
    temp = folder / ".a.mp4.0a1b2c3d.part"
    temp.write_bytes(body)
    return temp


def test_a_name_claimed_between_the_look_and_the_claim_is_looked_at_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.mp4"
    real = placing.write_sidecar
    raced: list[Path] = []

    def another_writer_first(video: Path, record: Any, *, exclusive: bool = False) -> bool:
        if exclusive and not raced:
            raced.append(video)  # someone else's video lands here just before our claim
            video.write_bytes(b"theirs")
            return False
        return real(video, record, exclusive=exclusive)

    monkeypatch.setattr(placing, "write_sidecar", another_writer_first)
    record = lambda p: {"f": p.name}  # noqa: E731
    placed = place_video(temp_video(tmp_path), target, record, is_ours=lambda p: False)
    assert raced == [target]
    assert placed.name == "a-1.mp4"
    assert target.read_bytes() == b"theirs"
    assert placed.read_bytes() == b"video"


def test_a_name_this_store_holds_is_reused(tmp_path: Path) -> None:
    target = tmp_path / "a.mp4"
    target.write_bytes(b"our older video")
    write_sidecar(target, {"mine": True})
    placed = place_video(temp_video(tmp_path), target, lambda p: {"mine": 2}, is_ours=bool)
    assert placed == target
    assert target.read_bytes() == b"video"
    assert json.loads(sidecar_path(target).read_text())["mine"] == 2


def test_no_free_name_left_is_an_error_not_an_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(placing, "MAX_FREE_NAME_TRIES", 2)
    for name in ("a.mp4", "a-1.mp4", "a-2.mp4"):
        (tmp_path / name).write_bytes(b"taken")
    with pytest.raises(NoFreeName):
        place_video(temp_video(tmp_path), tmp_path / "a.mp4", dict, is_ours=lambda p: False)
    assert all((tmp_path / n).read_bytes() == b"taken" for n in ("a.mp4", "a-1.mp4", "a-2.mp4"))


# -- an unexpected error while downloading -------------------------------------------------


class _Exploding(Downloader):
    async def fetch(self, url: str, target: Path, place: Any = None) -> Any:
        raise RuntimeError("a bug in a download")


def test_a_crash_inside_a_download_makes_the_paid_job_wait_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine_helpers

    store = seed_store(tmp_path, 1)
    monkeypatch.setattr(engine_helpers, "Downloader", _Exploding)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings())
    job = by_name(store)["job0"]
    assert job.state == JobState.FETCH_PAUSED
    assert "download crashed: RuntimeError('a bug in a download')" in (job.error or "")
    assert run.report.submitted == 1


# -- prices for a spend cap -------------------------------------------------------------


class _Catalog:
    """An API stand-in for ``model_info`` only."""

    def __init__(self, answers: dict[str, ModelInfo | Exception]) -> None:
        self.answers = answers

    async def model_info(self, model_id: str) -> ModelInfo:
        answer = self.answers[model_id]
        if isinstance(answer, Exception):
            raise answer
        return answer


def info(usd: float | None, unit: str | None = "second") -> ModelInfo:
    return ModelInfo(model_id=PRO, base_price_usd=usd, price_unit=unit, input_schema=None)


def test_prices_come_from_the_api_then_from_costs_billed_before(tmp_path: Path) -> None:
    other = "vendor/unknown-model/image-to-video"
    jobs = [new_job("a"), new_job("b", model=other), new_job("c", model="vendor/x/y")]
    store = seed_store(tmp_path, jobs)
    book = PriceBook(WorkQueue(store))
    # RunComfy once billed $0.80 for a job of `other`; it has never billed vendor/x/y.
    with store.write() as connection:
        from orchestrator.store.tables import ATTEMPTS

        row_id = by_name(store)["b"].row_id
        connection.execute(
            ATTEMPTS.insert().values(
                job_id=row_id, number=1, kind="submit", cost_usd=0.8, outcome="succeeded"
            )
        )
    api = _Catalog(
        {
            PRO: info(0.1),
            other: TransientError("HTTP 503"),
            "vendor/x/y": info(None),
        }
    )
    pricing = anyio.run(price_unpriced, book, api, builtin_catalog(), BATCH)
    assert pricing.unpriced == ["vendor/x/y"]
    assert pricing.sources[PRO] == "$0.1 per second (RunComfy's catalog)"
    assert "the most RunComfy has billed" in pricing.sources[other]
    estimates = {j.id: j.estimated_cost for j in store.list_jobs(batch=BATCH)}
    assert estimates == {"a": pytest.approx(0.5), "b": pytest.approx(0.8), "c": None}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(info(2.0, "output"), 2.0), (info(-1.0), None), (info(1.0, "frame"), None)],
)
def test_a_published_price_is_used_only_when_it_makes_sense(
    tmp_path: Path, answer: ModelInfo, expected: float | None
) -> None:
    store = seed_store(tmp_path, 1)
    book = PriceBook(WorkQueue(store))
    pricing = anyio.run(price_unpriced, book, _Catalog({PRO: answer}), builtin_catalog(), BATCH)
    assert pricing.unpriced == ([] if expected is not None else [PRO])
    assert by_name(store)["job0"].estimated_cost == expected


def test_an_api_error_on_the_price_is_no_price(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    api = _Catalog({PRO: RunComfyError("HTTP 400")})
    pricing = anyio.run(price_unpriced, PriceBook(WorkQueue(store)), api, builtin_catalog(), None)
    assert pricing.unpriced == [PRO]


# -- the command that fetches what is still to fetch ------------------------------------------


def rerun_options(**values: Any) -> dict[str, Any]:
    base = {
        "db": "night.db",
        "simulate": False,
        "api_base": "https://model-api.runcomfy.net",
        "trust_host": None,
        "batch": None,
    }
    return {**base, **values}


@pytest.mark.parametrize(
    ("values", "manifest", "breaker_host", "expected"),
    [
        ({}, "m.yaml", None, "orchestrator run m.yaml --db night.db"),
        ({"batch": "b"}, None, None, "orchestrator work --batch b --db night.db"),
        ({}, None, None, "orchestrator work --db night.db"),
        ({"simulate": True}, "m.yaml", None, "orchestrator run m.yaml --db night.db --simulate"),
        (
            {"api_base": "http://127.0.0.1:8188", "trust_host": "cdn.example"},
            "my night.yaml",
            "localhost",
            "orchestrator run 'my night.yaml' --db night.db --api-base http://127.0.0.1:8188 "
            "--trust-host cdn.example,localhost",
        ),
        (
            {"trust_host": "localhost"},
            "m.yaml",
            "localhost",
            "orchestrator run m.yaml --db night.db --trust-host localhost",
        ),
    ],
)
def test_the_rerun_command_has_what_it_needs(
    values: dict[str, Any], manifest: str | None, breaker_host: str | None, expected: str
) -> None:
    report = EngineReport()
    if breaker_host is not None:
        report.breaker = breaker_for_fetch(
            FetchProblem.HOST_NOT_ALLOWED, "not allowed", host=breaker_host, folder="out"
        )
    assert rerun_command(report, manifest=manifest, **rerun_options(**values)) == expected


def test_status_shows_the_money_and_the_cap(tmp_path: Path) -> None:
    from io import StringIO

    from orchestrator.cli import main

    store = seed_store(tmp_path, 2, cost=0.5)
    store.ensure_batch(
        BATCH,
        manifest_path="m.yaml",
        output_root=str(tmp_path / "out"),
        settings={"limits": {"max_spend": 3.0}},
    )
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings(max_spend=3.0))
    store.close()
    out = StringIO()
    assert main(["status", "--batch", BATCH, "--db", str(tmp_path / "store.db")], out=out) == 0
    text = out.getvalue()
    assert "paid and delivered       2  $1.00" in text
    assert "cap $3.00" in text
    out = StringIO()
    main(["status", "--batch", BATCH, "--db", str(tmp_path / "store.db"), "--json"], out=out)
    money = json.loads(out.getvalue())["money"]
    assert money["delivered"] == {"jobs": 2, "usd": 1.0}
    assert money["cap_usd"] == 3.0
    with Store.open(str(tmp_path / "store.db")) as again:
        assert again.counts(BATCH)["succeeded"] == 2


# -- a worker that stops watching jobs someone else moved ----------------------------------


def test_forgetting_moved_jobs_never_drops_one_watched_while_it_reads(tmp_path: Path) -> None:
    """The soak's hang: a job a submit started watching during the lease read was dropped
    (never polled again, and the run never ended). Only what was read is compared."""
    from orchestrator.api import RunComfyClient
    from orchestrator.engine.pool import Engine

    store = seed_store(tmp_path, 3)
    queue = WorkQueue(store)
    moved, kept, fresh = queue.claim(BATCH, 3)
    # A user cancels `moved` (its lease moves on); `kept` is untouched.
    assert queue.user_action(BATCH, [moved.name], [JobState.SUBMITTING], JobState.CANCELLED, "x")

    async def main() -> dict[int, Any]:
        async with RunComfyClient("http://127.0.0.1:9", token="t") as api, Downloader() as files:
            engine = Engine(queue, api, files, builtin_catalog(), fast_settings())
            engine.ledger.watch(moved)
            engine.ledger.watch(kept)
            read = queue.leases

            def read_while_a_submit_lands(row_ids: list[int]) -> dict[int, tuple[str, int]]:
                engine.ledger.watch(fresh)  # accepted while the read runs
                return read(row_ids)

            queue.leases = read_while_a_submit_lands  # type: ignore[method-assign]
            await engine._forget_moved()
            return engine.ledger.all_watched()

    watched = anyio.run(main)
    assert set(watched) == {kept.row_id, fresh.row_id}
