"""The command line over real files: example manifests, a real SQLite store, real images."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from model_ids import RUNWAY

from orchestrator.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (REPO / "manifests").glob("*.yaml") if not p.name.startswith("prices"))


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue()


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of manifests/ (manifests write outputs relative to themselves)."""
    target = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", target)
    return target


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_manifest_validates(manifest: Path) -> None:
    code, out = run("validate", str(manifest))
    assert code == 0, out
    assert out.startswith("ok: ")


def test_matrix_example_covers_all_five_models(examples: Path) -> None:
    code, out = run("validate", str(examples / "matrix-all-models.yaml"), "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report["models"]) == {
        "bytedance/seedance-1-0/pro/image-to-video",
        "bytedance/seedance-1-0/lite/image-to-video",
        "bytedance/dreamina-3-0/pro/image-to-video",
        "bytedance/seedance-v1.5-pro/image-to-video",
        "runwayml/runway-gen-4/turbo/image-to-video",
    }
    assert report["jobs"] == 10


def test_validate_lists_every_problem_and_stores_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "batch: b\n"
        "modle: x\n"
        "model: bytedance/seedance-1-0/lite/image-to-video\n"
        "jobs:\n"
        "  - id: a\n"
        "    prompt: hi\n"
        "    image: missing.png\n"
        "    resolution: 4k\n",
        encoding="utf-8",
    )
    db = tmp_path / "store.db"
    code, out = run("validate", str(manifest), "--db", str(db))
    assert code == 2
    assert "bad.yaml:2: field 'modle': unknown key 'modle'" in out
    assert "did you mean 'model'?" in out
    assert "bad.yaml:7: job 'a'" in out
    assert "file not found" in out
    assert "bad.yaml:8: job 'a'" in out
    assert "'4k' is not allowed; allowed: 480p, 720p, 1080p" in out
    assert "3 problems found; nothing was stored or submitted." in out
    assert not db.exists()
    # plan and enqueue refuse the same manifest without touching the store either.
    assert run("plan", str(manifest), "--db", str(db))[0] == 2
    assert run("enqueue", str(manifest), "--db", str(db))[0] == 2
    assert not db.exists()


def test_validate_json_reports_problems(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("batch: [oops\n", encoding="utf-8")
    code, out = run("validate", str(manifest), "--json")
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False
    assert report["problems"][0]["file"] == str(manifest)
    assert "malformed YAML" in report["problems"][0]["message"]


def test_plan_prices_and_store_diff(examples: Path, tmp_path: Path) -> None:
    manifest = examples / "matrix-all-models.yaml"
    db = str(tmp_path / "store.db")
    code, out = run("plan", str(manifest), "--db", db)
    assert code == 0
    assert "10 job(s): 10 new, 0 already stored, 0 done" in out
    assert "estimated cost: unknown - no price for" in out
    assert not Path(db).exists(), "plan must not create a store"

    prices = str(examples / "prices.example.yaml")
    code, out = run("plan", str(manifest), "--db", db, "--prices", prices, "--json")
    plan = json.loads(out)
    # 2 jobs x 5 s each: 0.12 + 0.06 + 0.10 + 0.10 + 0.05 USD per second.
    assert plan["estimate_new_usd"] == pytest.approx(2 * 5 * (0.12 + 0.06 + 0.10 + 0.10 + 0.05))
    assert plan["unpriced_models"] == []
    assert {job["status"] for job in plan["jobs"]} == {"new"}

    assert run("enqueue", str(manifest), "--db", db)[0] == 0
    text = manifest.read_text(encoding="utf-8").replace(
        "wind moves through a dense pine forest", "snow falls on a dense pine forest"
    )
    manifest.write_text(text, encoding="utf-8")
    code, out = run("plan", str(manifest), "--db", db, "--json")
    plan = json.loads(out)
    assert (plan["new"], plan["stored"], plan["done"]) == (5, 5, 0)
    assert plan["stored_not_in_manifest"] == 5


def test_enqueue_is_idempotent_and_status_jobs_read_the_store(
    examples: Path, tmp_path: Path
) -> None:
    manifest = str(examples / "runway-gen-4-turbo.yaml")
    db = str(tmp_path / "store.db")
    code, out = run("enqueue", manifest, "--db", db)
    assert code == 0
    assert out.splitlines()[0] == "batch 'runway-demo': 2 job(s) added, 0 already stored"
    assert out.splitlines()[1].startswith(f"catalog: {RUNWAY}: shipped schema file")
    code, out = run("enqueue", manifest, "--db", db, "--json", "--offline")
    assert json.loads(out) == {
        "batch": "runway-demo",
        "added": 0,
        "existing": 2,
        "renamed": [],
        "catalog": [
            {"model": RUNWAY, "source": "shipped", "fetched_at": None, "note": "--offline"}
        ],
    }

    code, out = run("status", "--db", db, "--json")
    status = json.loads(out)
    assert status["total"] == 2
    assert status["counts"]["pending"] == 2
    assert status["spend_usd"] == 0

    code, out = run("jobs", "--db", db, "--batch", "runway-demo", "--json")
    jobs = json.loads(out)
    assert [job["id"] for job in jobs] == ["city", "lake"]
    for field in ("id", "key", "model", "state", "request_id", "output_path", "sha256", "cost"):
        assert field in jobs[0]
    assert jobs[0]["output_path"] == "runway-demo/runway-gen-4-turbo/city.mp4"

    assert json.loads(run("jobs", "--db", db, "--state", "failed", "--json")[1]) == []
    code, out = run("status", "--db", db, "--batch", "runway-demo")
    assert "2 job(s)" in out
    assert "pending" in out
    code, out = run("jobs", "--db", db)
    assert "2 job(s)" in out


def test_status_without_a_store_says_so(tmp_path: Path) -> None:
    code, out = run("status", "--db", str(tmp_path / "none.db"), "--json")
    assert code == 2  # a usage error since issue 16 (was 1)
    assert "no store at" in json.loads(out)["error"]
    assert not (tmp_path / "none.db").exists()


def test_models_lists_the_catalog() -> None:
    code, out = run("models", "--json")
    models = {m["model_id"]: m for m in json.loads(out)}
    assert len(models) == 5
    dreamina = models["bytedance/dreamina-3-0/pro/image-to-video"]
    assert dreamina["universal"]["image"] == "image_urls"
    assert dreamina["universal"]["duration"] == "frames"
    code, out = run("models")
    assert code == 0
    assert "promptText [prompt]: string, optional; max 1000 chars" in out


def test_options_read_environment_variables(
    examples: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("ORCHESTRATOR_DB", str(db))
    monkeypatch.setenv("ORCHESTRATOR_JSON", "1")
    code, out = run("enqueue", str(examples / "dreamina-3-0-pro.yaml"))
    assert code == 0
    assert json.loads(out)["added"] == 2
    assert db.exists()
    assert main(["plan", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for env in ("ORCHESTRATOR_DB", "ORCHESTRATOR_PRICES", "ORCHESTRATOR_OUT", "ORCHESTRATOR_JSON"):
        assert f"env var: {env}" in help_text  # Click's wording


@pytest.mark.slow
def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("orchestrator ")


def test_partial_prices_show_the_known_subtotal(examples: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("runwayml/runway-gen-4/turbo/image-to-video: 0.05\n", encoding="utf-8")
    code, out = run(
        "plan",
        str(examples / "matrix-all-models.yaml"),
        "--db",
        str(tmp_path / "s.db"),
        "--prices",
        str(prices),
    )
    assert code == 0
    # Two Runway jobs of 5 s at $0.05/s; the four other models are unpriced.
    assert "estimated cost: unknown ($0.50 for the new jobs of the priced models)" in out


def test_a_batch_keeps_its_first_output_folder(
    examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(examples / "dreamina-3-0-pro.yaml")
    db = str(tmp_path / "s.db")
    assert run("enqueue", manifest, "--db", db, "--out", str(tmp_path / "first"))[0] == 0
    assert run("enqueue", manifest, "--db", db, "--out", str(tmp_path / "second"))[0] == 0
    note = " ".join(capsys.readouterr().err.split())
    assert f"keeps the output folder it was first enqueued with: {tmp_path / 'first'}" in note
    status = json.loads(run("status", "--db", db, "--json")[1])
    assert status["batches"][0]["output_root"] == str(tmp_path / "first")


def test_an_unknown_model_is_refused_with_suggestions_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes((REPO / "manifests/images/lake.png").read_bytes())
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "batch: b\nmodel: bytedance/seedance-1.0/pro/image-to-video\n"
        "jobs:\n  - {prompt: hi, image: a.png}\n",
        encoding="utf-8",
    )
    code, out = run("validate", str(manifest), "--offline")
    assert code == 2
    assert f"error: {manifest}:2" in out
    assert "unknown model 'bytedance/seedance-1.0/pro/image-to-video'" in out
    assert "did you mean 'bytedance/seedance-1-0/pro/image-to-video'" in out
    code, out = run("validate", str(manifest), "--offline", "--allow-unknown-model")
    assert code == 0
    assert "warning: " in out
    assert "has no schema in the catalog" in out
    assert "did you mean 'bytedance/seedance-1-0/pro/image-to-video'" in out
