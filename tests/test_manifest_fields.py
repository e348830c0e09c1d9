"""A job's fields and images checked against its model: every problem named where it was written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY

from orchestrator.manifest import Expansion, ImageRef, load_manifest
from orchestrator.media import ImageInfo, ImageUnreadable
from orchestrator.problems import InputError, Problem

Load = Callable[..., Expansion]
ProblemsOf = Callable[..., list[Problem]]
MakeImage = Callable[..., Path]


@pytest.fixture(autouse=True)
def images(make_image: MakeImage, tmp_path: Path) -> Path:
    make_image("beach.jpg", (1280, 720))
    make_image("city.png", (720, 1280))
    make_image("small.png", (200, 200))
    make_image("wide.png", (3000, 500))
    (tmp_path / "fake.png").write_text("not an image at all", encoding="utf-8")
    (tmp_path / "folder.png").mkdir()
    return tmp_path


def sized(message: str) -> str:
    """The message with its file size (which depends on Pillow's encoder) replaced by N."""
    return re.sub(r"\b\d+\.\d\d MB\b", "N MB", message)


def one_job(model: str, job: str) -> str:
    """A manifest with one job written on line 4 (``id: a``) and its fields below it."""
    body = "\n".join("    " + line for line in job.strip().splitlines())
    return f"batch: demo\nmodel: {model}\njobs:\n  - id: a\n{body}\n"


def only_problem(problems_of: ProblemsOf, model: str, job: str) -> Problem:
    [problem] = problems_of(one_job(model, job))
    return problem


# -- fields ----------------------------------------------------------------------------------


def test_a_missing_prompt(problems_of: ProblemsOf, manifest_path: Path) -> None:
    problem = only_problem(problems_of, LITE, "image: beach.jpg")
    assert problem == Problem(
        "is required by this model",
        file=str(manifest_path),
        line=4,
        job="a",
        field="prompt",
        model=LITE,
    )
    assert str(problem) == (
        f"{manifest_path}:4: job 'a': model {LITE}: field 'prompt': is required by this model"
    )


@pytest.mark.parametrize(
    ("model", "native"),
    [(LITE, "first_frame_image_url"), (DREAMINA, "image_urls"), (RUNWAY, "promptImage")],
    ids=["lite", "dreamina", "runway"],
)
def test_a_missing_image(problems_of: ProblemsOf, model: str, native: str) -> None:
    problem = only_problem(problems_of, model, "prompt: hi")
    assert (problem.line, problem.job, problem.field, problem.model) == (4, "a", "image", model)
    assert problem.message == f"is required by this model (native name {native!r})"


def test_runway_needs_no_prompt(load: Load) -> None:
    [job] = load(one_job(RUNWAY, "image: beach.jpg")).jobs
    assert job.payload == {"promptImage": "beach.jpg"}
    assert set(job.images) == {"promptImage"}


@pytest.mark.parametrize(
    ("model", "extra", "line", "field", "message"),
    [
        pytest.param(
            LITE,
            "resolution: 4k",
            7,
            "resolution",
            "'4k' is not allowed; allowed: 480p, 720p, 1080p",
            id="enum-resolution",
        ),
        pytest.param(
            "bytedance/seedance-v1.5-pro/image-to-video",
            "resolution: 1080p",
            7,
            "resolution",
            "'1080p' is not allowed; allowed: 480p, 720p",
            id="enum-v15-resolution",
        ),
        pytest.param(
            LITE, "duration: 7", 7, "duration", "7 is not allowed; allowed: 5, 10", id="enum-lite"
        ),
        pytest.param(
            DREAMINA,
            "duration: 7",
            7,
            "duration",
            "7 is not available for this model; allowed: 5, 10",
            id="dreamina-duration",
        ),
        pytest.param(
            RUNWAY,
            "ratio: adaptive",
            7,
            "ratio",
            "'adaptive' is not available for this model; allowed: 16:9, 9:16, 1:1, 4:3, 3:4,",
            id="runway-ratio",
        ),
        pytest.param(
            RUNWAY,
            "seed: -5",
            7,
            "seed",
            "-5 is below the minimum 0",
            id="runway-seed-min",
        ),
        pytest.param(
            LITE,
            "duration: true",
            7,
            "duration",
            "true is not a whole number",
            id="bool-is-not-an-integer",
        ),
        pytest.param(
            PRO,
            "last_image: city.png",
            7,
            "last_image",
            "this model has no 'last_image' input; it takes: prompt, resolution, "
            "image (first_frame_image_url), ratio, duration",
            id="no-last-image-on-pro",
        ),
        pytest.param(
            DREAMINA,
            "resolution: 720p",
            7,
            "resolution",
            "this model has no 'resolution' input",
            id="dreamina-resolution",
        ),
    ],
)
def test_a_value_the_model_cannot_take(
    problems_of: ProblemsOf, model: str, extra: str, line: int, field: str, message: str
) -> None:
    problem = only_problem(problems_of, model, f"prompt: hi\nimage: beach.jpg\n{extra}")
    assert (problem.line, problem.job, problem.field, problem.model) == (line, "a", field, model)
    assert problem.message.startswith(message)


@pytest.mark.parametrize(
    ("model", "field", "limit"),
    [(LITE, "prompt", 1900), (DREAMINA, "prompt", 800), (RUNWAY, "promptText", 1000)],
    ids=["lite", "dreamina", "runway"],
)
def test_a_prompt_over_max_length(
    problems_of: ProblemsOf, load: Load, model: str, field: str, limit: int
) -> None:
    long = "x" * (limit + 1)
    problem = only_problem(problems_of, model, f"image: beach.jpg\n{field}: {long}")
    assert (problem.line, problem.job, problem.field) == (6, "a", field)
    assert problem.message.startswith(
        f"is {limit + 1:,} characters long; at most {limit:,} allowed"
    )
    [job] = load(one_job(model, f"image: beach.jpg\n{field}: {'x' * limit}")).jobs
    assert len(job.payload[field]) == limit


def test_runway_prompt_over_max_length_under_its_universal_name(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, RUNWAY, f"image: beach.jpg\nprompt: {'x' * 1001}")
    assert problem.field == "prompt"
    assert problem.message == "is 1,001 characters long; at most 1,000 allowed (as 'promptText')"


def test_an_unknown_field_suggests_a_name(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, LITE, "prompt: hi\nimage: beach.jpg\nduraton: 5")
    assert (problem.line, problem.field, problem.hint) == (7, "duraton", "did you mean 'duration'?")
    assert problem.message.startswith("is not an input of this model; it takes: prompt, image")


def test_a_native_list_field_needs_a_list(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, DREAMINA, "prompt: hi\nimage_urls: beach.jpg")
    assert (problem.line, problem.field, problem.model) == (6, "image_urls", DREAMINA)
    assert (problem.message, problem.hint) == ("'beach.jpg' is not a list", "write [ ... ]")


def test_a_universal_and_native_name_together(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, RUNWAY, "prompt: hi\npromptText: ho\nimage: beach.jpg")
    assert (problem.line, problem.field) == (6, "promptText")
    assert problem.message == (
        "sets the same input as 'prompt' (native field 'promptText'); keep one of them"
    )


def test_a_job_without_any_model(problems_of: ProblemsOf, manifest_path: Path) -> None:
    [problem] = problems_of("batch: demo\njobs:\n  - {id: a, prompt: hi, image: beach.jpg}\n")
    assert problem == Problem(
        "no model: set 'model:' at the top of the manifest, in defaults or on the job",
        file=str(manifest_path),
        line=3,
        job="a",
        field="model",
    )


def test_universal_names_map_per_model(load: Load) -> None:
    text = """\
batch: demo
jobs:
  - {id: r, model: MODEL_R, prompt: hi, image: beach.jpg, ratio: "16:9", duration: 10}
  - {id: d, model: MODEL_D, prompt: hi, image: beach.jpg, duration: 10, seed: 7}
  - {id: l, model: MODEL_L, prompt: hi, image: beach.jpg, last_image: city.png}
"""
    text = text.replace("MODEL_R", RUNWAY).replace("MODEL_D", DREAMINA).replace("MODEL_L", LITE)
    jobs = {job.id: job for job in load(text).jobs}
    assert jobs["r"].payload == {
        "promptText": "hi",
        "promptImage": "beach.jpg",
        "ratio": "1280:720",
        "duration": 10,
    }
    assert jobs["d"].payload == {
        "prompt": "hi",
        "image_urls": ["beach.jpg"],
        "frames": 241,
        "seed": 7,
    }
    assert jobs["l"].payload == {
        "prompt": "hi",
        "first_frame_image_url": "beach.jpg",
        "last_frame_image_url": "city.png",
    }
    assert set(jobs["l"].images) == {"first_frame_image_url", "last_frame_image_url"}


# -- local images ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "image", "message", "hint"),
    [
        pytest.param(LITE, "nothere.png", "image nothere.png: file not found", None, id="missing"),
        pytest.param(
            LITE,
            "fake.png",
            "image fake.png: not an image (Pillow could not identify the format)",
            None,
            id="not-an-image",
        ),
        pytest.param(
            LITE,
            "folder.png",
            "image folder.png: is a directory, not a regular file",
            "an image path must name a regular file",
            id="directory",
        ),
        pytest.param(
            LITE,
            "small.png",
            "image small.png (200x200, N MB) breaks the model's rules: "
            "The uploaded image width and height must not be less than 300 pixels.",
            "rules width_pixels>300, height_pixels>300; set image_fit: resize, pad or crop "
            "to adapt it",
            id="too-small-seedance",
        ),
        pytest.param(
            DREAMINA,
            "small.png",
            "image small.png (200x200, N MB) breaks the model's rules: "
            "The shortest side must be at least 320 pixels.",
            "rules width_pixels>320, height_pixels>320; set image_fit: resize, pad or crop "
            "to adapt it",
            id="too-small-dreamina",
        ),
        pytest.param(
            LITE,
            "wide.png",
            "image wide.png (3000x500, N MB) breaks the model's rules: "
            "The aspect ratio range should be between 0.4 and 2.5.",
            "rules width/height<2.5; set image_fit: resize, pad or crop to adapt it",
            id="bad-aspect-seedance",
        ),
        pytest.param(
            RUNWAY,
            "wide.png",
            "image wide.png (3000x500, N MB) breaks the model's rules: "
            "The aspect ratio range should be 1:2 to 2:1.",
            "rules width/height<2; set image_fit: resize, pad or crop to adapt it",
            id="bad-aspect-runway",
        ),
    ],
)
def test_image_problems_name_the_rule(
    problems_of: ProblemsOf, model: str, image: str, message: str, hint: str | None
) -> None:
    problem = only_problem(problems_of, model, f"prompt: hi\nimage: {image}")
    assert (problem.line, problem.job, problem.field, problem.model) == (6, "a", "image", model)
    assert (sized(problem.message), problem.hint) == (message, hint)


def test_an_image_too_large_in_pixels_for_dreamina(
    problems_of: ProblemsOf, make_image: MakeImage, load: Load
) -> None:
    make_image("tall.png", (4100, 1400))
    problem = only_problem(problems_of, DREAMINA, "prompt: hi\nimage: tall.png")
    assert (problem.line, problem.job, problem.field) == (6, "a", "image")
    assert sized(problem.message) == (
        "image tall.png (4100x1400, N MB) breaks the model's rules: "
        "Maximum resolution is 4096x4096."
    )
    assert (
        problem.hint == "rules width_pixels<=4096; set image_fit: resize, pad or crop to adapt it"
    )
    # resize brings it within 4096 pixels
    [job] = load(one_job(DREAMINA, "prompt: hi\nimage: tall.png\nimage_fit: resize")).jobs
    assert job.image_fit == "resize"


def test_an_image_too_large_in_pixels_for_seedance(
    problems_of: ProblemsOf, make_image: MakeImage
) -> None:
    make_image("huge.png", (6000, 2500))
    problem = only_problem(problems_of, LITE, "prompt: hi\nimage: huge.png")
    assert problem.message.startswith("image huge.png (6000x2500, ")
    assert problem.message.endswith(
        "breaks the model's rules: The uploaded image width and height must not exceed 6000 pixels."
    )
    assert problem.hint is not None
    assert problem.hint.startswith("rules width_pixels<6000;")


def test_an_image_over_dreamina_file_size(
    problems_of: ProblemsOf, make_image: MakeImage, load: Load
) -> None:
    big = make_image("big.png", (1300, 1300), compress_level=0)
    assert big.stat().st_size > 4_700_000
    problem = only_problem(problems_of, DREAMINA, "prompt: hi\nimage: big.png")
    # Refused from its size alone: a file over the rule is never read (so its pixel size
    # is not known), unless image_fit may shrink it.
    assert problem.message == (
        "image big.png (5.07 MB) breaks the model's rules: File size must be less than 4.7 MB."
    )
    assert problem.hint is not None
    assert problem.hint.startswith("rules file_size_mb<4.7;")
    # Seedance allows 30 MB.
    [job] = load(one_job(LITE, "prompt: hi\nimage: big.png")).jobs
    assert job.images["first_frame_image_url"].size_bytes == big.stat().st_size


def test_several_broken_rules_are_listed_once_each(
    problems_of: ProblemsOf, make_image: MakeImage
) -> None:
    make_image("sliver.png", (1000, 100))
    problem = only_problem(problems_of, LITE, "prompt: hi\nimage: sliver.png")
    assert problem.message.endswith(
        "breaks the model's rules: The uploaded image width and height must not be less than "
        "300 pixels.; The aspect ratio range should be between 0.4 and 2.5."
    )
    assert problem.hint is not None
    assert problem.hint.startswith("rules height_pixels>300, width/height<2.5;")


def test_resize_makes_a_too_small_image_acceptable(load: Load) -> None:
    [job] = load(one_job(LITE, "prompt: hi\nimage: small.png\nimage_fit: resize")).jobs
    assert job.image_fit == "resize"
    marker = job.stored_payload()["first_frame_image_url"]["$image"]
    assert marker["fit"] == "resize"


def test_resize_cannot_fix_an_aspect_ratio(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, LITE, "prompt: hi\nimage: wide.png\nimage_fit: resize")
    assert (problem.line, problem.job, problem.field, problem.model) == (6, "a", "image", LITE)
    assert sized(problem.message) == (
        "image wide.png (3000x500, N MB): aspect ratio 6.00 is outside 0.4-2.5; "
        "use image_fit: pad or crop"
    )


@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_pad_and_crop_fix_an_aspect_ratio(load: Load, mode: str) -> None:
    [job] = load(one_job(LITE, f"prompt: hi\nimage: wide.png\nimage_fit: {mode}")).jobs
    assert job.image_fit == mode


def test_image_fit_set_for_the_whole_manifest(load: Load) -> None:
    text = f"batch: demo\nmodel: {LITE}\nimage_fit: pad\njobs:\n"
    text += "  - {id: a, prompt: hi, image: wide.png}\n"
    text += "  - {id: b, prompt: hi, image: beach.jpg, image_fit: none}\n"
    jobs = {job.id: job for job in load(text).jobs}
    assert (jobs["a"].image_fit, jobs["b"].image_fit) == ("pad", None)


def test_a_bad_image_fit_on_a_job(problems_of: ProblemsOf, manifest_path: Path) -> None:
    problems = problems_of(one_job(LITE, "prompt: hi\nimage: beach.jpg\nimage_fit: stretch"))
    assert problems == [
        Problem(
            "'stretch' is not an image_fit mode; allowed: none, resize, pad, crop",
            file=str(manifest_path),
            line=7,
            job="a",
            field="image_fit",
        )
    ]


def test_a_fit_mode_on_an_image_that_already_fits_is_kept(load: Load) -> None:
    [job] = load(one_job(LITE, "prompt: hi\nimage: beach.jpg\nimage_fit: crop")).jobs
    assert job.image_fit == "crop"


def test_images_are_found_relative_to_the_manifest(
    load: Load, make_image: MakeImage, tmp_path: Path
) -> None:
    make_image("project/in/frame.png", (640, 480))
    elsewhere = make_image("other/abs.png", (640, 480), color=(0, 0, 255))
    text = one_job(LITE, "prompt: hi\nimage: in/frame.png")
    text += f"  - {{id: b, prompt: hi, image: '{elsewhere}'}}\n"
    jobs = load(text, tmp_path / "project" / "m.yaml").jobs
    assert jobs[0].images["first_frame_image_url"].path == str(
        (tmp_path / "project" / "in" / "frame.png").resolve()
    )
    assert jobs[1].images["first_frame_image_url"].path == str(elsewhere.resolve())


def test_an_image_ref_records_what_was_probed(load: Load, tmp_path: Path) -> None:
    [job] = load(one_job(LITE, "prompt: hi\nimage: city.png")).jobs
    ref = job.images["first_frame_image_url"]
    assert (ref.width, ref.height, ref.format, ref.url) == (720, 1280, "PNG", None)
    assert ref.size_bytes == (tmp_path / "city.png").stat().st_size
    assert ref.sha256 is not None
    assert len(ref.sha256) == 64


def test_an_image_value_that_is_not_text(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, LITE, "prompt: hi\nimage: 5")
    assert (problem.field, problem.message) == (
        "image",
        "needs an image file path or https URL, got 5",
    )


# -- image URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "message", "hint"),
    [
        pytest.param(
            "http://example.com/a.png",
            "image URLs must use https (RunComfy fetches them)",
            None,
            id="http",
        ),
        pytest.param(
            "HTTP://example.com/a.png",
            "image URLs must use https (RunComfy fetches them)",
            None,
            id="http-upper",
        ),
        pytest.param(
            "'data:image/png;base64,iVBORw0KGgo='",
            "inline data: URIs are not accepted in a manifest",
            "save the image to a file and give its path; it is encoded at submit time",
            id="data-uri",
        ),
        pytest.param(
            "ftp://example.com/a.png",
            "unsupported image URL scheme in 'ftp://example.com/a.png'; use https",
            None,
            id="ftp",
        ),
    ],
)
def test_image_urls_that_are_refused(
    problems_of: ProblemsOf, image: str, message: str, hint: str | None
) -> None:
    problem = only_problem(problems_of, LITE, f"prompt: hi\nimage: {image}")
    assert (problem.line, problem.job, problem.field) == (6, "a", "image")
    assert (problem.message, problem.hint) == (message, hint)


def test_an_https_url_is_passed_through_without_network(load: Load) -> None:
    url = "https://example.com/pics/beach.png?v=2"
    [job] = load(one_job(LITE, f"prompt: hi\nimage: '{url}'")).jobs
    assert job.images["first_frame_image_url"] == ImageRef(url=url)
    assert job.stored_payload()["first_frame_image_url"] == url
    assert job.id == "a"


def test_an_https_url_is_probed_only_when_asked(problems_of: ProblemsOf, load: Load) -> None:
    seen: list[str] = []

    def probe(url: str) -> ImageInfo:
        seen.append(url)
        return ImageInfo("tiny.png", "PNG", 100, 100, 900, "ab" * 32, 1, "RGB")

    url = "https://example.com/tiny.png"
    problem = only_problem_with(problems_of, f"prompt: hi\nimage: '{url}'", probe_url=probe)
    assert seen == [url]
    assert sized(problem.message).startswith(
        "image tiny.png (100x100, N MB) breaks the model's rules"
    )

    def fine(url: str) -> ImageInfo:
        return ImageInfo("ok.png", "PNG", 1280, 720, 900, "cd" * 32, 1, "RGB")

    [job] = load(one_job(LITE, f"prompt: hi\nimage: '{url}'"), probe_url=fine).jobs
    ref = job.images["first_frame_image_url"]
    assert (ref.url, ref.sha256, ref.width, ref.height) == (url, "cd" * 32, 1280, 720)
    assert job.stored_payload()["first_frame_image_url"] == url


def test_an_url_that_cannot_be_fetched(problems_of: ProblemsOf) -> None:
    def broken(url: str) -> ImageInfo:
        raise ImageUnreadable("download failed with HTTP 404", url)

    url = "https://example.com/gone.png"
    problem = only_problem_with(problems_of, f"prompt: hi\nimage: '{url}'", probe_url=broken)
    assert problem.message == f"image URL {url}: download failed with HTTP 404"


def only_problem_with(problems_of: ProblemsOf, job: str, **kwargs: object) -> Problem:
    [problem] = problems_of(one_job(LITE, job), **kwargs)
    return problem


def test_a_boolean_id_is_refused(problems_of: ProblemsOf) -> None:
    """``id: yes`` is YAML for True; it must not become a job named 'True'."""
    text = one_job(LITE, "prompt: x\nimage: beach.jpg").replace("id: a", "id: yes")
    [problem] = problems_of(text)
    assert (problem.line, problem.field) == (4, "id")
    assert "is not allowed" in problem.message


def test_a_dreamina_duration_lists_seconds_then_frames(problems_of: ProblemsOf) -> None:
    problem = only_problem(problems_of, DREAMINA, "prompt: x\nimage: beach.jpg\nduration: 7")
    assert problem.field == "duration"
    assert problem.message == "7 is not available for this model; allowed: 5, 10"
    assert problem.hint == "or the native 'frames' values: 121, 241"


def test_a_jobs_from_row_cannot_read_a_file_outside_the_manifest_folder(
    tmp_path: Path, make_image: MakeImage
) -> None:
    """A CSV row may hold anyone's text: it must not make the tool read and upload, say,
    a private picture elsewhere on disk. The manifest's own jobs may (the user wrote them)."""
    make_image("outside.jpg", (1280, 720))
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "rows.csv").write_text("id,prompt,image\nrow,x,../outside.jpg\n", encoding="utf-8")
    manifest = folder / "m.yaml"
    manifest.write_text(
        f"batch: b\nmodel: {LITE}\njobs_from: rows.csv\n"
        "jobs:\n  - {id: own, prompt: y, image: ../outside.jpg}\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as caught:
        load_manifest(manifest)
    [problem] = caught.value.problems
    assert (problem.job, problem.field) == ("row", "image")
    assert "leaves the manifest's folder" in problem.message
