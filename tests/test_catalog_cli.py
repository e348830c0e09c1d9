"""The live catalog from the command line, over sockets against the simulator's catalog.

Prices come from ``GET /v1/models/{id}``, the cache stands in offline, the TTL decides
when the API is asked again, a schema change on the server is followed, a mistyped model
costs nothing, and a model only the API knows runs end to end.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from engine_helpers import TOKEN, make_profile, simulator
from model_ids import ALL, PRO
from sqlalchemy import select

from orchestrator.cli import main
from orchestrator.store import Store
from orchestrator.store.runtimes import RunTimeBook
from orchestrator.store.tables import JOBS
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.simulator import SimulatorServer

REPO = Path(__file__).resolve().parent.parent
IMAGE = "https://images.example/frames/beach.jpg"
WONDER = "acme/wonder-video/v2/image-to-video"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
    monkeypatch.delenv("RUNCOMFY_API_BASE", raising=False)
    with simulator(make_profile()) as running:
        yield running


@pytest.fixture
def five_models(tmp_path: Path) -> Path:
    """The shipped manifest of all five models x two images (10 jobs of 5 s)."""
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    return tmp_path / "manifests" / "matrix-all-models.yaml"


def write(tmp_path: Path, model: str, jobs: list[dict[str, Any]], name: str = "m") -> Path:
    document = {"batch": name, "model": model, "jobs": jobs, "output": {"dir": "out"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def model_gets(server: SimulatorServer) -> int:
    calls = server.simulator.snapshot()["calls"]
    return int(calls.get("model", 0) + calls.get("models", 0))


def test_plan_prices_the_five_models_from_the_api(
    server: SimulatorServer, five_models: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "s.db")
    code, text = cli("plan", str(five_models), "--api-base", server.api_base, "--db", db)
    assert code == 0, text
    # 10 jobs of 5 s at the simulator's published $0.10 per second.
    assert "estimated cost of the 10 new job(s): $5.00" in text
    for model_id in ALL:
        assert f"catalog: {model_id}: RunComfy API (fetched now); $0.1 per second" in text
    code, text = cli("plan", str(five_models), "--api-base", server.api_base, "--json", "--db", db)
    plan = json.loads(text)
    assert plan["estimate_new_usd"] == 5.0
    assert plan["unpriced_models"] == []
    assert {s["model"]: s["source"] for s in plan["catalog"]} == dict.fromkeys(ALL, "api")


def test_without_a_token_the_shipped_files_are_used_and_said(
    five_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    code, text = cli("plan", str(five_models), "--db", str(five_models.parent / "none.db"))
    assert code == 0, text
    assert "estimated cost: unknown" in text
    assert f"catalog: {PRO}: shipped schema file; no API token" in text
    assert not (five_models.parent / "none.db").exists()  # plan never creates a store


def test_the_enqueued_estimate_is_the_plans_and_the_caps(
    server: SimulatorServer, five_models: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "s.db")
    code, text = cli("enqueue", str(five_models), "--api-base", server.api_base, "--db", db)
    assert code == 0, text
    with Store.open(db) as store:
        estimates = [job.estimated_cost for job in store.list_jobs(batch="model-comparison")]
    assert estimates == [0.5] * 10


def test_offline_the_cache_is_used_and_its_age_shown(
    server: SimulatorServer, five_models: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "s.db")
    assert cli("enqueue", str(five_models), "--api-base", server.api_base, "--db", db)[0] == 0
    asked = model_gets(server)

    def plan(*options: str) -> tuple[float, list[dict[str, Any]]]:
        code, text = cli("plan", str(five_models), "--db", db, "--json", *options)
        assert code == 0, text
        data = json.loads(text)
        return sum(m["estimate_total_usd"] for m in data["models"]), data["catalog"]

    # Within the TTL the cache answers; the API is not asked.
    total, sources = plan("--api-base", server.api_base)
    assert total == 5.0
    assert {s["source"] for s in sources} == {"cache"}
    assert model_gets(server) == asked
    text = cli("plan", str(five_models), "--api-base", server.api_base, "--db", db)[1]
    assert f"catalog: {PRO}: cache (fetched " in text
    # The API unreachable (same host, a dead port) and the TTL forcing a fetch: the cache
    # stands in, however old, and the output says why.
    total, sources = plan("--api-base", UNREACHABLE, "--catalog-ttl", "0")
    assert total == 5.0
    assert {s["source"] for s in sources} == {"cache"}
    assert all("could not be asked" in s["note"] for s in sources)
    total, sources = plan("--offline", "--api-base", server.api_base)
    assert total == 5.0
    assert {(s["source"], s["note"]) for s in sources} == {("cache", None)}


def test_a_schema_change_is_followed_once_the_ttl_runs_out(
    server: SimulatorServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "s.db")
    path = write(tmp_path, PRO, [{"id": "a", "prompt": "p", "image": IMAGE, "duration": 5}])
    assert cli("enqueue", str(path), "--api-base", server.api_base, "--db", db)[0] == 0
    server.simulator.change_field(PRO, "duration", enum=[10, 15])
    # The cached schema is a day fresh: still valid by it.
    code, text = cli("validate", str(path), "--api-base", server.api_base, "--db", db)
    assert code == 0, text
    assert "cache (fetched" in text, text
    # Past the TTL the live schema decides, with the validator's own message.
    code, text = cli(
        "plan", str(path), "--api-base", server.api_base, "--db", db, "--catalog-ttl", "0"
    )
    assert code == 2
    assert "field 'duration': 5 is not allowed; allowed: 10, 15" in text
    # And a value the shipped file never allowed is accepted, and priced, by the live one.
    longer = write(tmp_path, PRO, [{"id": "a", "prompt": "p", "image": IMAGE, "duration": 15}])
    code, text = cli("plan", str(longer), "--api-base", server.api_base, "--db", db, "--json")
    assert code == 0, text
    assert json.loads(text)["estimate_new_usd"] == 1.5


def test_a_mistyped_model_is_refused_before_anything_is_sent(
    server: SimulatorServer, tmp_path: Path
) -> None:
    typo = "bytedance/seedance-1-0/por/image-to-video"
    path = write(tmp_path, typo, [{"id": "a", "prompt": "p", "image": IMAGE}])
    db = tmp_path / "s.db"
    code, text = cli(
        "run",
        str(path),
        "--api-base",
        server.api_base,
        "--db",
        str(db),
        "--trust-host",
        "localhost",
    )
    assert code == 2
    assert f"{path}:2" in text
    assert f"unknown model {typo!r}" in text
    assert f"did you mean {PRO!r}" in text
    assert "nothing was submitted" in text
    ledger = server.simulator.snapshot()
    assert ledger["submissions"] == {}
    assert ledger["jobs"] == {}
    # Offline it is refused the same way, from the files alone; --allow-unknown-model
    # sends it as written.
    code, text = cli("validate", str(path), "--offline", "--db", str(db))
    assert code == 2
    assert f"unknown model {typo!r}" in text
    code, text = cli("validate", str(path), "--offline", "--allow-unknown-model", "--db", str(db))
    assert code == 0
    assert "sent as written" in text


def test_a_model_only_the_api_knows_runs_end_to_end_by_its_native_names(
    server: SimulatorServer, tmp_path: Path
) -> None:
    jobs = [
        {"id": "native", "text_prompt": "a paper boat", "start_frame": IMAGE, "clip_seconds": 8},
        {"id": "universal", "prompt": "a paper plane", "image": IMAGE, "duration": 4},
    ]
    path = write(tmp_path, WONDER, jobs, name="sixth")
    db = str(tmp_path / "s.db")
    code, text = cli("plan", str(path), "--api-base", server.api_base, "--json", "--db", db)
    assert code == 0, text
    plan = json.loads(text)
    assert plan["estimate_new_usd"] == pytest.approx(0.07 * 8 + 0.07 * 4)
    code, text = cli(
        "run",
        str(path),
        "--api-base",
        server.api_base,
        "--db",
        db,
        "--trust-host",
        "localhost",
        "--poll-min",
        "0.01",
        "--poll-max",
        "0.2",
        "--quiet",
    )
    assert code == 0, text
    assert f"catalog: {WONDER}: RunComfy API (fetched now)" in text
    ledger = server.simulator.snapshot()
    assert [job["model_id"] for job in ledger["jobs"].values()] == [WONDER, WONDER]
    assert sorted(job["cost"] for job in ledger["jobs"].values()) == pytest.approx([0.28, 0.56])
    with Store.open(db) as store:
        done = store.list_jobs(batch="sixth")
        with store.read() as connection:
            payloads = [json.loads(p) for (p,) in connection.execute(select(JOBS.c.payload))]
    # Universal names were sent as the model's native ones.
    assert sorted(p["text_prompt"] for p in payloads) == ["a paper boat", "a paper plane"]
    assert all("prompt" not in p and "image" not in p for p in payloads)
    assert {job.state.value for job in done} == {"succeeded"}
    for job in done:
        assert (tmp_path / "out" / job.output_path).read_bytes()[4:8] == b"ftyp"


def test_models_remote_lists_the_api_and_refresh_fills_the_cache(
    server: SimulatorServer, tmp_path: Path
) -> None:
    code, text = cli("models", "--remote", "--api-base", server.api_base, "--json")
    assert code == 0, text
    listed = {m["model_id"] for m in json.loads(text)}
    assert WONDER in listed
    assert set(ALL) <= listed
    code, text = cli("models", "--remote", "--search", "wonder", "--api-base", server.api_base)
    assert code == 0
    assert WONDER in text
    assert PRO not in text
    db = str(tmp_path / "s.db")
    code, text = cli("models", "--refresh", "--api-base", server.api_base, "--db", db, "--json")
    assert code == 0, text
    assert {m["source"]["source"] for m in json.loads(text)} == {"api"}
    code, text = cli("models", "--offline", "--api-base", server.api_base, "--db", db)
    assert code == 0
    assert "source: cache (fetched" in text


def test_listing_the_catalog_never_creates_a_store(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    code, text = cli("models", "--offline", "--db", str(db))
    assert code == 0
    assert f"{PRO}  (" in text
    assert "source: shipped schema file" in text
    assert not db.exists()


def test_remote_listing_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    assert cli("models", "--remote")[0] == 2


def test_a_bad_ttl_is_a_usage_error(five_models: Path) -> None:
    db = str(five_models.parent / "none.db")
    assert cli("validate", str(five_models), "--catalog-ttl", "soon", "--db", db)[0] == 2
    assert cli("validate", str(five_models), "--catalog-ttl", "-1", "--db", db)[0] == 2


def test_work_drains_a_new_model_from_the_cache_without_asking_again(
    server: SimulatorServer, tmp_path: Path
) -> None:
    path = write(tmp_path, WONDER, [{"id": "a", "prompt": "a kite", "image": IMAGE}], "later")
    db = str(tmp_path / "s.db")
    assert cli("enqueue", str(path), "--api-base", server.api_base, "--db", db)[0] == 0
    asked = model_gets(server)
    code, text = cli(
        "work", "--batch", "later", "--api-base", server.api_base, "--db", db, "--trust-host",
        "localhost", "--poll-min", "0.01", "--poll-max", "0.2", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    assert model_gets(server) == asked  # the cached entry was enough
    with Store.open(db) as store:
        [job] = store.list_jobs(batch="later")
        learned = list(RunTimeBook(WorkQueue(store)).load())
    assert job.state.value == "succeeded"
    assert job.cost == pytest.approx(0.28)
    # The engine knew the model's schema: its clip length (the schema's default, 4 s)
    # keys the run time it learned.
    assert learned == [f"{WONDER}|4s|-"]
