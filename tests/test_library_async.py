"""The Python API inside a running event loop (a notebook's case): ``run_async`` awaited
in the test's own loop (asyncio and anyio), and the sync functions called from a loop."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import anyio
import pytest
from model_ids import LITE

import orchestrator
from orchestrator import Batch, RunResult, Simulation

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import ImageFactory


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)


@pytest.fixture
def batch(tmp_path: Path, make_image: ImageFactory) -> Batch:
    make_image("in/a.png", (1280, 720))
    jobs = [{"id": f"j{n}", "prompt": f"shot {n}", "image": "in/a.png"} for n in range(3)]
    return Batch.from_rows(jobs, name="loop", model=LITE, base_dir=tmp_path)


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with orchestrator.simulate(time_scale=0.01) as running:
        yield running


def finished(result: RunResult) -> None:
    assert result.ok, result.report
    assert result.succeeded == 3


def test_run_async_is_awaited_in_an_asyncio_loop_that_keeps_serving(
    batch: Batch, sim: Simulation, tmp_path: Path
) -> None:
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> RunResult:
        stop = asyncio.Event()
        other = asyncio.create_task(ticker(stop))
        try:
            return await batch.run_async(db=tmp_path / "a.db", api=sim)
        finally:
            stop.set()
            await other

    finished(asyncio.run(main()))
    assert ticks > 1  # the loop ran another task while the batch ran


def test_run_async_under_anyio_run(batch: Batch, sim: Simulation, tmp_path: Path) -> None:
    async def main() -> RunResult:
        return await orchestrator.run_async(
            batch, db=str(tmp_path / "b.db"), api=sim, progress=shown
        )

    shown = io.StringIO()  # not a terminal: plain progress lines, no panel
    finished(anyio.run(main))


def test_the_sync_functions_work_inside_a_running_loop(
    batch: Batch, sim: Simulation, tmp_path: Path
) -> None:
    """Where ``anyio.run`` (the engine's and the live catalog's) would fail with "Already
    running asyncio in this thread", the sync calls run in a worker thread."""
    db = tmp_path / "c.db"

    async def main() -> RunResult:
        assert batch.validate(api=sim).ok  # asks the simulator's live catalog
        assert batch.plan(db=db, api=sim).new == 3
        assert batch.enqueue(db=db, api=sim).added == 3
        return orchestrator.run(batch, db=db, api=sim, stop_on_signals=True)

    result = asyncio.run(main())
    finished(result)
    assert (result.added, result.existing) == (0, 3)
    assert orchestrator.status(db, "loop").counts["succeeded"] == 3


def test_an_input_error_is_raised_in_the_awaiting_task(tmp_path: Path, sim: Simulation) -> None:
    bad = Batch.from_rows([{"prompt": "x", "image": "missing.png"}], name="bad", model=LITE)

    async def main() -> None:
        with pytest.raises(orchestrator.InputError, match=r"<rows>: job '#1'.*field 'image'"):
            await bad.run_async(db=tmp_path / "d.db", api=sim)

    anyio.run(main)
    assert not (tmp_path / "d.db").exists()
