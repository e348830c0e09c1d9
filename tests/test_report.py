"""The review report: a real batch from the simulator, rendered, parsed and opened in Chromium."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from orchestrator.catalog import Catalog, builtin_catalog
from orchestrator.cli import main
from orchestrator.outputs import report as report_module
from orchestrator.outputs import report_clips, report_html
from orchestrator.outputs.atomicwrite import atomic_file
from orchestrator.outputs.report import ReportError, ReportResult, split_id, write_report
from orchestrator.outputs.report_clips import POSTER_DIR, ensure_poster
from orchestrator.outputs.report_html import Clip, render
from orchestrator.simulator import Faults, SimulatorServer, load_profile
from orchestrator.store import Store
from orchestrator.store.records import JobView
from orchestrator.store.states import JobState
from orchestrator.store.tables import BATCHES, JOBS

REPO = Path(__file__).resolve().parent.parent
TOKEN = "report-secret-token-value"
BATCH = "model-comparison"
CHROMIUM = Path("/usr/bin/chromium")
XSS_PROMPT = "<script>alert('owned')</script> & a lighthouse at night"
FAILURE_REASON = "the model failed to generate a video for this input"
MODELS = ("Seedance 1.0 Pro", "Seedance 1.0 Lite", "Dreamina 3.0 Pro", "Seedance 1.5 Pro")
FAILING_MANIFEST = """\
batch: model-comparison
model: runwayml/runway-gen-4/turbo/image-to-video
jobs:
  - id: doomed
    prompt: a storm that never renders
    image: images/forest.jpg
    duration: 5
output:
  dir: ../outputs
  pattern: "{batch}/{model_slug}/{id}.mp4"
retry: {max_attempts: 1}
"""
VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "track"}


@dataclass(frozen=True)
class Produced:
    db: Path
    out: Path
    result: ReportResult
    html: str


def _run(manifest: Path, db: Path, out: Path, server: SimulatorServer) -> None:
    text = io.StringIO()
    code = main(
        [
            "run",
            str(manifest),
            "--db",
            str(db),
            "--out",
            str(out),
            "--api-base",
            server.api_base,
            "--trust-host",
            "localhost",
            "--poll-min",
            "0.01",
            "--poll-max",
            "0.2",
        ],
        out=text,
    )
    assert code in (0, 1), text.getvalue()


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Produced:
    """One real batch: every model x (beach, forest, a prompt with <script>), plus one job
    of the same batch run against a simulator where every generation fails."""
    tmp = tmp_path_factory.mktemp("report")
    shutil.copytree(REPO / "manifests", tmp / "manifests")
    manifest = tmp / "manifests/matrix-all-models.yaml"
    xss_job = f'  - id: xss\n    prompt: "{XSS_PROMPT}"\n    image: images/beach.jpg\n'
    manifest.write_text(manifest.read_text().replace("jobs:\n", "jobs:\n" + xss_job, 1))
    failing = tmp / "manifests/failing.yaml"
    failing.write_text(FAILING_MANIFEST)
    db, out = tmp / "store.db", tmp / "videos"
    calm = load_profile("calm").with_overrides(time_scale=0.002)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
        with SimulatorServer(calm, token=TOKEN) as server:
            _run(manifest, db, out, server)
        with SimulatorServer(calm.with_overrides(faults=Faults(job_failed=1.0)), token=TOKEN) as s:
            _run(failing, db, out, s)
    with Store.open(str(db)) as store:
        assert store.counts(BATCH)["succeeded"] == 15
        assert store.counts(BATCH)["failed"] == 1
        result = write_report(store, BATCH)
    return Produced(db=db, out=out, result=result, html=result.path.read_text(encoding="utf-8"))


class Page(HTMLParser):
    """Tags with their attributes, the visible text, and a check that tags balance."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def classed(self, css_class: str) -> int:
        return sum(1 for _, a in self.tags if css_class in (a.get("class") or "").split())


def _copy(produced: Produced, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the store and the videos, safe to change."""
    db, out = tmp_path / "store.db", tmp_path / "videos"
    shutil.copy(produced.db, db)
    shutil.copytree(produced.out, out)
    with Store.open(str(db)) as store, store.write() as connection:
        connection.execute(update(BATCHES).values(output_root=str(out)))
    return db, out


def _linked(page: Page, base: Path) -> list[Path]:
    paths = []
    for attrs in page.all("video"):
        for name in ("src", "poster"):
            value = attrs.get(name)
            assert value, f"<video> without {name}"
            paths.append(base / value)
    return paths


# --- the real batch ---------------------------------------------------------------------------


def test_report_is_written_beside_the_outputs(produced: Produced) -> None:
    assert produced.result.path == produced.out / BATCH / "report.html"
    assert produced.result.videos == 15
    assert produced.result.failures == 1
    assert not list(produced.result.path.parent.glob(".report.html*"))


def test_page_parses_with_one_video_per_succeeded_job(produced: Produced) -> None:
    page = Page(produced.html)
    assert page.stack == [], "unclosed tags"
    videos = page.all("video")
    assert len(videos) == 15
    for attrs in videos:
        assert "controls" in attrs
        assert attrs["preload"] == "none"


def test_every_video_and_poster_path_is_relative_and_exists(produced: Produced) -> None:
    page = Page(produced.html)
    report_dir = produced.result.path.parent
    for path in _linked(page, report_dir):
        assert not path.is_absolute() or path.is_relative_to(report_dir)
        assert path.is_file(), path
    posters = sorted((report_dir / POSTER_DIR).iterdir())
    assert len(posters) == 15
    with Image.open(posters[0]) as image:
        assert image.format == "JPEG"
        assert max(image.size) <= 640


def test_the_folder_can_be_moved(produced: Produced, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(produced.out / BATCH, moved)
    page = Page((moved / "report.html").read_text(encoding="utf-8"))
    assert all(p.is_file() for p in _linked(page, moved))
    hrefs = [str(a.get("href")) for a in page.all("a")]
    files = [h for h in hrefs if not h.startswith("#")]
    assert files
    assert all((moved / h).is_file() for h in files)


def test_summary_models_and_matrix_layout(produced: Produced) -> None:
    page = Page(produced.html)
    text = " ".join(page.text)
    assert "$6.70" in text  # 3 x (0.60 + 0.30 + 0.50 + 0.50 + 0.25) + 0.25 for the failure
    assert "succeeded 15" in text
    assert "failed 1" in text
    for name in (*MODELS, "Runway Gen-4 Turbo"):
        assert name in text
    assert "By model" in text
    assert page.classed("colhead") == 6  # "job" + five models
    heads = [data.strip() for data in page.text if data.strip() in ("xss", "beach", "forest")]
    assert heads[:3] == ["xss", "beach", "forest"]
    assert "Wall time" in text
    # The run priced its jobs from the simulator's catalog, which bills what it publishes.
    costs = _section(text, "Estimate vs actual", "By model")
    assert costs.count("0.0%") == 5
    assert "no estimate" not in costs
    assert "4 of 4 $1.00 $1.00" in costs  # Runway: 4 x $0.25


def _section(text: str, start: str, end: str) -> str:
    """The page's text from the heading ``start`` to the next heading ``end``."""
    assert start in text, f"no {start!r} section"
    return text.split(start, 1)[1].split(end, 1)[0]


def _cost_rows(html: str) -> dict[str, list[str]]:
    """The estimate-vs-actual table: model name -> [model id, billed, estimated, actual,
    difference, the difference cell's class]."""
    table = html.split("<h2>Estimate vs actual", 1)[1].split("</table>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr><td>(.*?)</tr>", table):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + row)
        name, model_id = Page(cells[0]).text
        values = [" ".join(Page(cell).text) for cell in cells[1:]]
        css = re.findall(r'<td class="([^"]*)">', row)[-1]
        rows[name] = [model_id, *values, css]
    return rows


def test_failures_list_the_reason(produced: Produced) -> None:
    text = " ".join(Page(produced.html).text)
    failures = text.split("Failures", 1)[1]
    assert "doomed" in failures
    assert FAILURE_REASON in failures
    assert "a storm that never renders" in failures


def test_user_text_is_escaped(produced: Produced) -> None:
    assert "<script>alert" not in produced.html
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; a lighthouse" in (
        produced.html
    )
    page = Page(produced.html)
    assert len(page.all("script")) == 1  # the page's own few lines
    assert XSS_PROMPT in " ".join(page.text)


def test_page_is_self_contained(produced: Produced) -> None:
    html = produced.html
    for needle in ("http://", "https://", "data:", "//cdn", "@import", "url(", "<link", "<iframe"):
        assert needle not in html.lower()
    assert TOKEN not in html
    assert "Content-Security-Policy" in html


# --- changes to a copy ----------------------------------------------------------------------


def test_reconcile_and_missing_files_show_as_placeholders(
    produced: Produced, tmp_path: Path
) -> None:
    db, out = _copy(produced, tmp_path)
    with Store.open(str(db)) as store:
        with store.write() as connection:
            connection.execute(
                update(JOBS)
                .where(JOBS.c.name == "beach_model-dreamina-3-0-pro")
                .values(state=JobState.NEEDS_RECONCILE.value, error=None)
            )
            connection.execute(
                update(JOBS)
                .where(JOBS.c.name == "xss_model-dreamina-3-0-pro")
                .values(state=JobState.NEEDS_RECONCILE.value, error="submit timed out")
            )
            connection.execute(
                update(JOBS)
                .where(JOBS.c.name == "forest_model-seedance-1-0-pro")
                .values(attempts=2, payload="not json")
            )
        (out / BATCH / "seedance-1-0-lite/forest.mp4").unlink()
        (out / BATCH / "runway-gen-4-turbo/beach.json").unlink()
        result = write_report(store, BATCH, tmp_path / "elsewhere" / "review.html")
    html = result.path.read_text(encoding="utf-8")
    assert (result.videos, result.failures) == (12, 3)
    page = Page(html)
    assert len(page.all("video")) == 12
    assert all(p.is_file() for p in _linked(page, result.path.parent))
    assert all(str(a["src"]).startswith("../videos/") for a in page.all("video"))
    text = " ".join(page.text)
    assert "video file missing" in text
    assert "needs reconcile" in text
    failures = text.split("Failures", 1)[1]
    assert "orchestrator reconcile" in failures
    assert "submit timed out (" in failures
    assert "2 attempts" in text
    runway_beach = next(a for a in page.all("video") if "runway-gen-4-turbo/beach" in str(a["src"]))
    assert "width" not in runway_beach  # no sidecar: no probe facts, still playable


def test_estimate_vs_actual_per_model(produced: Produced, tmp_path: Path) -> None:
    db, _out = _copy(produced, tmp_path)
    pro, lite = "bytedance/seedance-1-0/pro/image-to-video", "bytedance/seedance-1-0/lite/%"
    with Store.open(str(db)) as store:
        with store.write() as connection:
            # Seedance 1.0 Pro billed a quarter more than estimated, Lite half its estimate.
            # The others had no price. (The quoted estimate is the one compared.)
            connection.execute(update(JOBS).values(estimated_cost_usd=None, quoted_cost_usd=None))
            quoted = JOBS.c.cost_usd / 1.25
            connection.execute(
                update(JOBS)
                .where(JOBS.c.model_id == pro)
                .values(estimated_cost_usd=quoted, quoted_cost_usd=quoted)
            )
            connection.execute(
                update(JOBS)
                .where(JOBS.c.model_id.like(lite))
                .values(estimated_cost_usd=JOBS.c.cost_usd * 2, quoted_cost_usd=JOBS.c.cost_usd * 2)
            )
        html = write_report(store, BATCH, tmp_path / "review.html").path.read_text("utf-8")
    assert Page(html).stack == []
    rows = _cost_rows(html)
    # Pro: 3 x $0.60 billed against 3 x $0.48; Lite: 3 x $0.30 against 3 x $0.60.
    assert rows["Seedance 1.0 Pro"] == [pro, "3 of 3", "$1.44", "$1.80", "+25.0%", "n over"]
    assert rows["Seedance 1.0 Lite"][1:] == ["3 of 3", "$1.80", "$0.90", "-50.0%", "n"]
    assert rows["Runway Gen-4 Turbo"][1:] == ["4 of 4", "—", "$1.00", "no estimate", "n"]
    assert len(rows) == 5
    assert sum(r[4] == "no estimate" for r in rows.values()) == 3


def test_posters_are_made_only_when_missing_or_stale(produced: Produced, tmp_path: Path) -> None:
    db, out = _copy(produced, tmp_path)
    posters = out / BATCH / POSTER_DIR
    poster = posters / "beach_model-seedance-1-0-pro.jpg"
    video = out / BATCH / "seedance-1-0-pro/beach.mp4"
    now = datetime.now(UTC).timestamp()
    os.utime(video, (now - 100, now - 100))
    os.utime(poster, (now - 50, now - 50))
    with Store.open(str(db)) as store:
        write_report(store, BATCH)
        assert poster.stat().st_mtime == pytest.approx(now - 50)  # fresh enough: kept
        os.utime(poster, (now - 200, now - 200))
        other = posters / "forest_model-seedance-1-0-pro.jpg"
        other.unlink()
        write_report(store, BATCH)
    assert poster.stat().st_mtime > now - 100  # older than its video: made again
    assert other.is_file()


def test_an_undecodable_video_gets_no_poster(tmp_path: Path) -> None:
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    assert ensure_poster(video, tmp_path / ".posters/broken.jpg") is None
    assert not (tmp_path / ".posters").exists()


def test_models_are_named_from_the_catalog_the_caller_passes(
    produced: Produced, tmp_path: Path
) -> None:
    renamed = Catalog(
        replace(spec, display_name=f"Our {spec.display_name}") for spec in builtin_catalog()
    )
    with Store.open(str(produced.db)) as store:
        ours = write_report(store, BATCH, dest=tmp_path / "ours.html", catalog=renamed)
        bare = write_report(store, BATCH, dest=tmp_path / "bare.html", catalog=Catalog())
    text = " ".join(Page(ours.path.read_text(encoding="utf-8")).text)
    assert all(f"Our {name}" in text for name in MODELS)
    text = " ".join(Page(bare.path.read_text(encoding="utf-8")).text)
    assert "seedance-1-0-pro" in text
    assert MODELS[0] not in text


def test_unknown_batch(produced: Produced) -> None:
    with Store.open(str(produced.db)) as store, pytest.raises(ReportError, match="no batch"):
        write_report(store, "nope")


def test_a_failed_write_leaves_the_old_report(produced: Produced, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --- grouping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        ("beach_model-seedance-1-0-pro", ("beach", (("model", "seedance-1-0-pro"),))),
        ("shot_seed-3", ("shot", (("seed", "3"),))),
        ("pier_ratio-16x9_seed-2_r3", ("pier", (("ratio", "16x9"), ("seed", "2"), ("take", "3")))),
        ("city-1a2b3c4d_model-x", ("city-1a2b3c4d", (("model", "x"),))),
        ("my_shot", ("my_shot", ())),
        ("r2", ("r2", ())),
    ],
)
def test_split_id(job_id: str, expected: tuple[str, tuple[tuple[str, str], ...]]) -> None:
    assert split_id(job_id) == expected


def _view(job_id: str, state: JobState = JobState.SUCCEEDED) -> JobView:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return JobView(
        id=job_id,
        key="0" * 64,
        batch="b",
        model="acme/wonder/image-to-video",
        state=state,
        request_id=None,
        output_path=f"b/{job_id}.mp4",
        sha256=None,
        cost=None,
        error=None,
        attempts=1,
        max_attempts=3,
        remote_status=None,
        queue_position=None,
        estimated_cost=None,
        size_bytes=None,
        next_attempt_at=None,
        created_at=moment,
        updated_at=moment,
        submitted_at=None,
        started_at=None,
        finished_at=None,
        downloaded_at=None,
        row_id=0,
    )


def test_one_model_with_a_seed_axis_is_laid_out_by_seed() -> None:
    ids = ["shot_seed-1", "shot_seed-2", "pier_seed-1", "pier_seed-2", "odd_name-x"]
    jobs = [_view(i) for i in ids] + [_view("pier_seed-3", JobState.FAILED)]
    clips = {
        j.id: Clip(
            job_id=j.id,
            model="Wonder",
            state=j.state.value,
            prompt=None,
            params=(),
            inputs=(),
            facts=(),
            video_src=f"{j.id}.mp4" if j.state is JobState.SUCCEEDED else None,
        )
        for j in jobs
    }
    sheets, loose = report_module._arrange(jobs, clips)
    assert len(sheets) == 1
    sheet = sheets[0]
    assert (sheet.axis, sheet.columns) == ("seed", ("1", "2", "3"))
    assert [r.title for r in sheet.rows] == ["shot", "pier"]
    assert sheet.rows[0].cells[2] is None
    assert sheet.rows[1].cells[2] is clips["pier_seed-3"]
    assert [c.job_id for c in loose] == ["odd_name-x"]  # an id that only looks like an axis


# --- a real browser -----------------------------------------------------------------------------


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=60, check=True
    )


def _console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "Content Security Policy" in line)
    ]


@pytest.mark.slow
def test_chromium_renders_the_page(produced: Produced, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (make test installs it)")
    url = produced.result.path.as_uri()
    dumped = _chromium(tmp_path, "--dump-dom", url)
    assert dumped.stdout.count("<video") == 15
    assert "&lt;script&gt;alert" in dumped.stdout
    assert _console_errors(dumped.stderr) == []
    shot = tmp_path / "shot.png"
    taken = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", url)
    assert _console_errors(taken.stderr) == []
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None
    assert len(colors) > 500


# --- small pieces -------------------------------------------------------------------------------


def test_describe_payload() -> None:
    prompt, params, inputs = report_clips.describe_payload(
        {
            "prompt": "a photo like ref.png",
            "negative_prompt": "blur",
            "image_urls": [
                "https://cdn.example/a/first.jpg?sig=1",
                {"$image": {"path": "/x/b.png"}},
            ],
            "camera_fixed": True,
            "extra": {"k": [1, 2]},
            "note": "n" * 100,
        }
    )
    assert prompt == "a photo like ref.png"
    assert inputs == ("first.jpg", "b.png")  # never the URL itself
    assert params[0] == ("negative_prompt", "blur")
    assert ("camera_fixed", "yes") in params
    assert ("extra", '{"k":[1,2]}') in params
    assert dict(params)["note"].endswith("…")
    assert len(dict(params)["note"]) == 80


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (42.4, "42 s"), (725, "12 min 5 s"), (11_520, "3 h 12 min"), (-1, "0.0 s")],
)
def test_duration(seconds: float, text: str) -> None:
    assert report_clips.duration_text(seconds) == text


def test_size() -> None:
    assert (report_clips.size_text(300), report_clips.size_text(48_201)) == ("1 KB", "48 KB")
    assert report_clips.size_text(12_345_678) == "12.3 MB"


def test_render_loose_videos_and_an_empty_batch() -> None:
    clip = Clip(
        job_id="solo",
        model="Wonder <1>",
        state="succeeded",
        prompt="a <b>bold</b> move",
        params=(("duration", "5"),),
        inputs=("in.jpg",),
        facts=("5.0 s",),
        video_src="v/solo.mp4",
    )
    page = report_html.Page(
        batch="b",
        manifest="m.yaml",
        generated="2026-01-01 00:00 UTC",
        total=2,
        counts=(("pending", 1), ("succeeded", 1)),
        spend=0.0,
        wall="—",
        wall_span="no video downloaded yet",
        models=(),
        sheets=(),
        loose=(clip,),
        failures=(),
        videos=1,
        costs=(
            report_html.CostLine(
                model_id="acme/<wonder>",
                name="Wonder <1>",
                billed=1,
                jobs=2,
                estimate=None,
                actual=0.5,
                difference="no estimate",
                over=False,
            ),
        ),
    )
    html = render(page)
    assert "acme/&lt;wonder&gt;" in html
    parsed = Page(html)
    assert parsed.stack == []
    assert [a.get("src") for a in parsed.all("video")] == ["v/solo.mp4"]
    assert "poster" not in parsed.all("video")[0]
    text = " ".join(parsed.text)
    assert "Wonder <1>" in text
    assert "from in.jpg" in text
    assert "a <b>bold</b> move" in text
    assert "still queued or running" in text
    assert "None: every finished job" in text
    assert _cost_rows(html) == {
        "Wonder <1>": ["acme/<wonder>", "1 of 2", "—", "$0.50", "no estimate", "n"]
    }
    empty = " ".join(Page(render(replace(page, loose=(), videos=0, costs=()))).text)
    assert "No video has been downloaded yet" in empty
    assert "Estimate vs actual" not in empty
