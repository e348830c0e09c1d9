"""Expanding a manifest: jobs_from, matrix, globs, repeat, ids, duplicates, unknown models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY, V15

from orchestrator.catalog import builtin_catalog
from orchestrator.manifest import Expansion
from orchestrator.problems import Problem

Load = Callable[..., Expansion]
ProblemsOf = Callable[..., list[Problem]]
MakeImage = Callable[..., Path]


@pytest.fixture(autouse=True)
def images(make_image: MakeImage, tmp_path: Path) -> Path:
    make_image("beach.jpg", (1280, 720))
    make_image("city.png", (720, 1280))
    return tmp_path


def head(model: str = LITE, extra: str = "") -> str:
    return f"batch: demo\nmodel: {model}\n{extra}"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- jobs_from: CSV --------------------------------------------------------------------------


def test_csv_rows_become_jobs_with_typed_values(load: Load, tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "prompts.csv",
        "id,prompt,image,duration,camera_fixed\n"
        "beach,sunset waves,beach.jpg,5,true\n"
        "city,neon rain,city.png,10,no\n",
    )
    jobs = load(head(V15, "jobs_from: prompts.csv\n")).jobs
    assert [(j.id, j.source_file, j.source_line) for j in jobs] == [
        ("beach", str(csv_path), 2),
        ("city", str(csv_path), 3),
    ]
    assert jobs[0].payload == {
        "prompt": "sunset waves",
        "first_frame_image_url": "beach.jpg",
        "duration": 5,
        "camera_fixed": True,
    }
    assert (jobs[1].payload["duration"], jobs[1].payload["camera_fixed"]) == (10, False)


def test_csv_text_becomes_the_native_value_through_a_universal_name(
    load: Load, tmp_path: Path
) -> None:
    write(tmp_path / "p.csv", "prompt,image,duration,seed\nwaves,beach.jpg,10,42\n")
    [job] = load(head(DREAMINA, "jobs_from: p.csv\n")).jobs
    assert job.payload == {
        "prompt": "waves",
        "image_urls": ["beach.jpg"],
        "frames": 241,
        "seed": 42,
    }


def test_empty_csv_cells_leave_the_default(load: Load, tmp_path: Path) -> None:
    write(tmp_path / "p.csv", "prompt,image,duration\na,beach.jpg,\nb,beach.jpg,5\n")
    jobs = load(head(LITE, "defaults: {duration: 10}\njobs_from: p.csv\n")).jobs
    assert [j.payload["duration"] for j in jobs] == [10, 5]


def test_a_csv_row_with_a_missing_column(problems_of: ProblemsOf, tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "p.csv", "id,prompt,image,duration\na,x,beach.jpg,5\nb,y\nc,z,beach.jpg,5,9\n"
    )
    problems = problems_of(head(LITE, "jobs_from: p.csv\n"))
    assert problems == [
        Problem(
            "row 2 has 2 cells but the header has 4: missing column(s) image, duration",
            file=str(csv_path),
            line=3,
            job="row 2",
        ),
        Problem(
            "row 3 has 5 cells but the header has 4: 1 more cell(s) than the header has",
            file=str(csv_path),
            line=4,
            job="row 3",
        ),
    ]


def test_a_bad_value_in_a_csv_row_names_the_csv_line(
    problems_of: ProblemsOf, tmp_path: Path
) -> None:
    csv_path = write(tmp_path / "p.csv", "prompt,image,duration\na,beach.jpg,5\nb,city.png,seven\n")
    [problem] = problems_of(head(LITE, "jobs_from: p.csv\n"))
    assert problem == Problem(
        "'seven' is not a whole number",
        file=str(csv_path),
        line=3,
        job="row 2",
        field="duration",
        model=LITE,
        hint="allowed: 5, 10",
    )


def test_a_multi_line_csv_cell_keeps_its_line_break_and_later_lines(
    problems_of: ProblemsOf, load: Load, tmp_path: Path
) -> None:
    csv_path = write(
        tmp_path / "p.csv",
        'id,prompt,image\nwaves,"slow pan\nover the sea",beach.jpg\n\nbroken,x\n',
    )
    [problem] = problems_of(head(LITE, "jobs_from: p.csv\n"))
    assert (problem.file, problem.line, problem.job) == (str(csv_path), 5, "row 3")
    write(csv_path, 'id,prompt,image\nwaves,"slow pan\nover the sea",beach.jpg\ncity,x,city.png\n')
    jobs = load(head(LITE, "jobs_from: p.csv\n")).jobs
    assert jobs[0].payload["prompt"] == "slow pan\nover the sea"
    assert [j.source_line for j in jobs] == [2, 4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the CSV file is empty (it needs a header row)"),
        ("prompt,prompt\na,b\n", "the header row needs distinct, non-empty column names"),
        ("prompt,,image\na,b,c\n", "the header row needs distinct, non-empty column names"),
    ],
    ids=["empty", "repeated-column", "blank-column"],
)
def test_a_bad_csv_header(problems_of: ProblemsOf, tmp_path: Path, text: str, message: str) -> None:
    csv_path = write(tmp_path / "p.csv", text)
    [problem] = problems_of(head(LITE, "jobs_from: p.csv\n"))
    assert (problem.file, problem.line, problem.message) == (str(csv_path), 1, message)


def test_a_csv_file_with_a_byte_order_mark(load: Load, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(b"\xef\xbb\xbfprompt,image\nwaves,beach.jpg\n")
    [job] = load(head(LITE, "jobs_from: p.csv\n")).jobs
    assert job.payload["prompt"] == "waves"


# -- jobs_from: JSONL ------------------------------------------------------------------------


def test_jsonl_lines_become_jobs(load: Load, tmp_path: Path) -> None:
    lines = [
        {"id": "a", "prompt": "waves\u2028and wind", "image": "beach.jpg", "duration": 10},
        {"prompt": "neon", "image": "city.png", "camera_fixed": False},
    ]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    jsonl = write(tmp_path / "jobs.jsonl", text.replace("\n", "\n\n") + "\n")
    jobs = load(head(V15, "jobs_from: [jobs.jsonl]\n")).jobs
    assert [(j.id, j.source_file, j.source_line) for j in jobs] == [
        ("a", str(jsonl), 1),
        ("city", str(jsonl), 3),
    ]
    assert jobs[0].payload["prompt"] == "waves\u2028and wind"
    assert jobs[1].payload["camera_fixed"] is False


def test_bad_jsonl_lines(problems_of: ProblemsOf, tmp_path: Path) -> None:
    jsonl = write(
        tmp_path / "jobs.ndjson",
        '{"prompt": "a", "image": "beach.jpg"}\n{"prompt": oops}\n[1, 2]\n'
        '{"prompt": "b", "image": "city.png", "duration": "5"}\n',
    )
    problems = problems_of(head(LITE, "jobs_from: jobs.ndjson\n"))
    assert [(p.file, p.line, p.job, p.field) for p in problems] == [
        (str(jsonl), 2, "line 2", None),
        (str(jsonl), 3, "line 3", None),
        (str(jsonl), 4, "line 4", "duration"),
    ]
    assert problems[0].message.startswith("not valid JSON: Expecting value")
    assert problems[1].message == "each line must be a JSON object"
    assert problems[2].message == "'5' is not a whole number"  # JSON has types: no coercion


def test_jobs_from_several_files_and_inline_jobs_together(load: Load, tmp_path: Path) -> None:
    # Image paths in a jobs_from file are relative to the manifest, like every other path.
    write(tmp_path / "data" / "a.csv", "prompt,image\nfrom csv,beach.jpg\n")
    write(tmp_path / "data" / "b.jsonl", '{"prompt": "from jsonl", "image": "city.png"}\n')
    text = head(LITE, "jobs_from: [data/a.csv, data/b.jsonl]\n")
    text += "jobs:\n  - {id: inline, prompt: inline, image: beach.jpg}\n"
    jobs = load(text).jobs
    assert [j.payload["prompt"] for j in jobs] == ["inline", "from csv", "from jsonl"]


# -- matrix ----------------------------------------------------------------------------------


def test_a_matrix_over_seed(load: Load) -> None:
    text = head(DREAMINA, "matrix:\n  seed: [1, 2, 3]\n")
    text += "jobs:\n  - {id: beach, prompt: waves, image: beach.jpg}\n"
    jobs = load(text).jobs
    assert [(j.id, j.base_id, j.variant, j.payload["seed"]) for j in jobs] == [
        ("beach_seed-1", "beach", "_seed-1", 1),
        ("beach_seed-2", "beach", "_seed-2", 2),
        ("beach_seed-3", "beach", "_seed-3", 3),
    ]
    assert [j.output_path for j in jobs] == [
        f"demo/dreamina-3-0-pro/beach_seed-{n}.mp4" for n in (1, 2, 3)
    ]
    assert len({j.key for j in jobs}) == 3


def test_a_matrix_over_model(load: Load) -> None:
    text = f"batch: demo\nmatrix:\n  model: [{PRO}, {RUNWAY}, {DREAMINA}]\n"
    text += "jobs:\n  - {id: beach, prompt: waves, image: beach.jpg}\n"
    jobs = load(text).jobs
    assert [(j.id, j.model_id) for j in jobs] == [
        ("beach_model-seedance-1-0-pro", PRO),
        ("beach_model-runway-gen-4-turbo", RUNWAY),
        ("beach_model-dreamina-3-0-pro", DREAMINA),
    ]
    assert [j.output_path for j in jobs] == [
        "demo/seedance-1-0-pro/beach_model-seedance-1-0-pro.mp4",
        "demo/runway-gen-4-turbo/beach_model-runway-gen-4-turbo.mp4",
        "demo/dreamina-3-0-pro/beach_model-dreamina-3-0-pro.mp4",
    ]
    assert jobs[1].payload == {"promptText": "waves", "promptImage": "beach.jpg"}
    assert len({j.id for j in jobs}) == len({j.key for j in jobs}) == 3


def test_a_two_axis_matrix_is_a_cartesian_product(load: Load) -> None:
    text = f"batch: demo\nmatrix:\n  model: [{LITE}, {V15}]\n  duration: [5, 10]\n"
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n"
    text += "  - {prompt: neon, image: city.png}\n"
    jobs = load(text).jobs
    assert len(jobs) == 8
    assert len({j.id for j in jobs}) == len({j.key for j in jobs}) == 8
    assert jobs[0].id == "a_model-seedance-1-0-lite_duration-5"
    assert jobs[-1].id == "city_model-seedance-v1-5-pro_duration-10"


def test_matrix_values_that_are_not_file_names_are_numbered(load: Load) -> None:
    text = head(LITE, 'matrix:\n  prompt: ["a calm sea", "storm!"]\n')
    text += "jobs:\n  - {id: a, image: beach.jpg}\n"
    assert [j.id for j in load(text).jobs] == ["a_prompt-1", "a_prompt-2"]


def test_a_matrix_over_images_is_labelled_by_file_name(load: Load) -> None:
    text = head(LITE, "matrix:\n  image: [beach.jpg, city.png]\n")
    text += "jobs:\n  - {id: a, prompt: waves}\n"
    assert [j.id for j in load(text).jobs] == ["a_image-beach", "a_image-city"]


def test_a_matrix_axis_also_set_on_a_job(problems_of: ProblemsOf, manifest_path: Path) -> None:
    text = head(DREAMINA, "matrix:\n  seed: [1, 2]\n")
    text += "jobs:\n  - id: a\n    prompt: waves\n    image: beach.jpg\n    seed: 7\n"
    assert problems_of(text) == [
        Problem(
            "'seed' is also a matrix axis; set it in one place only",
            file=str(manifest_path),
            line=9,
            job="a",
            field="seed",
        )
    ]


@pytest.mark.parametrize(
    ("matrix", "field", "message"),
    [
        ("seed: []", "matrix.seed", "a matrix axis needs a non-empty list"),
        ("seed: 3", "matrix.seed", "a matrix axis needs a non-empty list"),
        ("seed: [1, 2, 1]", "matrix.seed", "a matrix axis lists a value twice"),
        ("id: [a, b]", "matrix.id", "'id' cannot be a matrix axis"),
        ("repeat: [1, 2]", "matrix.repeat", "'repeat' cannot be a matrix axis"),
    ],
    ids=["empty", "not-a-list", "twice", "id", "repeat"],
)
def test_bad_matrix_axes(
    problems_of: ProblemsOf, manifest_path: Path, matrix: str, field: str, message: str
) -> None:
    text = head(DREAMINA, f"matrix:\n  {matrix}\n")
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n"
    assert problems_of(text) == [Problem(message, file=str(manifest_path), line=4, field=field)]


def test_a_bad_matrix_value_is_reported_once_for_all_jobs(
    problems_of: ProblemsOf, manifest_path: Path
) -> None:
    text = head(RUNWAY, "matrix:\n  seed: [1, -1]\n  duration: [5, 10]\n")
    text += "jobs:\n  - {id: a, image: beach.jpg}\n  - {id: b, image: city.png}\n"
    assert problems_of(text) == [
        Problem(
            "-1 is below the minimum 0",
            file=str(manifest_path),
            line=4,
            field="seed",
            model=RUNWAY,
        )
    ]


def test_a_job_problem_repeated_by_a_matrix_is_reported_once(problems_of: ProblemsOf) -> None:
    text = head(DREAMINA, "matrix:\n  seed: [1, 2, 3]\n  duration: [5, 10]\n")
    text += f"jobs:\n  - id: a\n    image: beach.jpg\n    prompt: {'x' * 801}\n"
    [problem] = problems_of(text)
    assert (problem.line, problem.job, problem.field) == (9, "a", "prompt")
    assert problem.message == "is 801 characters long; at most 800 allowed"


def test_a_matrix_over_models_checks_each_model_s_own_image_rules(
    tmp_path: Path, make_image: MakeImage, load: Load, problems_of: ProblemsOf
) -> None:
    """Two models may name their image field alike and still have different rules."""
    entry = json.loads(json.dumps(builtin_catalog().require(LITE).raw))
    entry["model_id"] = "acme/narrow/image-to-video"
    entry["slug"] = "narrow"
    for rule in entry["input_schema"]["properties"]["first_frame_image_url"]["validations"]:
        if rule["validation_rule"] == "width_pixels<":
            rule["validation_value"] = 1000
            rule["validation_error"] = "Width must be under 1000 pixels."
    write(tmp_path / "models" / "narrow.json", json.dumps(entry))
    catalog = builtin_catalog().with_directory(tmp_path / "models")
    for axis in (f"[{LITE}, acme/narrow/image-to-video]", f"[acme/narrow/image-to-video, {LITE}]"):
        text = f"batch: demo\nmatrix:\n  model: {axis}\n"
        text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n"
        [problem] = problems_of(text, catalog=catalog)
        assert problem.model == "acme/narrow/image-to-video"
        assert problem.message.endswith("Width must be under 1000 pixels.")
    make_image("narrow.jpg", (900, 600))
    text = f"batch: demo\nmatrix:\n  model: [{LITE}, acme/narrow/image-to-video]\n"
    text += "jobs:\n  - {id: a, prompt: waves, image: narrow.jpg}\n"
    assert [j.id for j in load(text, catalog=catalog).jobs] == [
        "a_model-seedance-1-0-lite",
        "a_model-narrow",
    ]


# -- defaults --------------------------------------------------------------------------------


def test_defaults_are_merged_and_a_job_overrides_them(load: Load) -> None:
    text = head(LITE, "defaults: {resolution: 720p, duration: 10, prompt: default prompt}\n")
    text += "jobs:\n  - {id: a, image: beach.jpg}\n"
    text += "  - {id: b, image: city.png, duration: 5, prompt: own}\n"
    jobs = load(text).jobs
    assert jobs[0].payload == {
        "resolution": "720p",
        "duration": 10,
        "prompt": "default prompt",
        "first_frame_image_url": "beach.jpg",
    }
    assert (jobs[1].payload["duration"], jobs[1].payload["prompt"]) == (5, "own")


def test_a_job_overrides_a_default_under_its_native_name(load: Load) -> None:
    text = head(DREAMINA, "defaults: {duration: 5, prompt: waves}\n")
    text += "jobs:\n  - {id: a, image: beach.jpg}\n"
    text += "  - {id: b, image: beach.jpg, frames: 241}\n"
    text += f"  - {{id: c, image: beach.jpg, model: {RUNWAY}, promptText: own}}\n"
    jobs = {j.id: j for j in load(text).jobs}
    assert jobs["a"].payload["frames"] == 121
    assert jobs["b"].payload["frames"] == 241
    assert jobs["c"].payload == {"promptText": "own", "promptImage": "beach.jpg", "duration": 5}


def test_a_bad_default_is_reported_once_at_its_line(
    problems_of: ProblemsOf, manifest_path: Path
) -> None:
    text = head(LITE, "defaults:\n  resolution: 4k\n  image_fit: squash\n  repeat: 0\n")
    text += "jobs:\n  - {id: a, prompt: x, image: beach.jpg}\n"
    text += "  - {id: b, prompt: y, image: city.png}\n"
    file = str(manifest_path)
    assert problems_of(text) == [
        Problem(
            "'squash' is not an image_fit mode; allowed: none, resize, pad, crop",
            file=file,
            line=5,
            field="image_fit",
        ),
        Problem("'repeat' must be a whole number >= 1, got 0", file=file, line=6, field="repeat"),
        Problem(
            "'4k' is not allowed; allowed: 480p, 720p, 1080p",
            file=file,
            line=4,
            field="resolution",
            model=LITE,
        ),
    ]


def test_a_job_level_model_overrides_the_manifest_model(load: Load) -> None:
    text = head(LITE, "jobs:\n")
    text += f"  - {{id: a, prompt: x, image: beach.jpg, model: {RUNWAY}}}\n"
    [job] = load(text).jobs
    assert (job.model_id, job.model_slug) == (RUNWAY, "runway-gen-4-turbo")


# -- image globs -----------------------------------------------------------------------------


def test_a_glob_that_matches_nothing(problems_of: ProblemsOf, manifest_path: Path) -> None:
    text = head(LITE, "jobs:\n  - prompt: waves\n    image: frames/*.png\n")
    assert problems_of(text) == [
        Problem(
            "the pattern 'frames/*.png' matches no file "
            f"(relative to {manifest_path.parent.name}/)",
            file=str(manifest_path),
            line=5,
            job="#1",
            field="image",
        )
    ]


def test_a_glob_that_matches_three_files_makes_three_jobs(
    load: Load, make_image: MakeImage, tmp_path: Path
) -> None:
    for index, name in enumerate(["c", "a", "b"]):
        make_image(f"frames/{name}.png", (640, 480), color=(index, 0, 0))
    (tmp_path / "frames" / "dir.png").mkdir()
    text = head(LITE, "jobs:\n  - prompt: waves\n    image: frames/*.png\n")
    text += "  - {id: set, prompt: rain, image: 'frames/[ab].png'}\n"
    jobs = load(text).jobs
    assert [j.id for j in jobs] == ["a", "b", "c", "set-a", "set-b"]
    assert [j.output_path for j in jobs[:3]] == [
        "demo/seedance-1-0-lite/a.mp4",
        "demo/seedance-1-0-lite/b.mp4",
        "demo/seedance-1-0-lite/c.mp4",
    ]
    paths = [j.images["first_frame_image_url"].path for j in jobs[:3]]
    assert paths == [str((tmp_path / "frames" / f"{n}.png").resolve()) for n in "abc"]
    assert len({j.key for j in jobs}) == 5
    assert all(j.source_line == 4 for j in jobs[:3])


def test_a_recursive_glob(load: Load, make_image: MakeImage) -> None:
    make_image("shots/day/one.png", (640, 480), color=(1, 1, 1))
    make_image("shots/night/two.png", (640, 480), color=(2, 2, 2))
    text = head(LITE, "jobs:\n  - {prompt: waves, image: 'shots/**/*.png'}\n")
    assert [j.id for j in load(text).jobs] == ["one", "two"]


def test_glob_characters_in_a_prompt_are_just_text(load: Load) -> None:
    text = head(
        LITE, "jobs:\n  - {id: a, prompt: 'What now? A *bold* [wide] shot', image: beach.jpg}\n"
    )
    [job] = load(text).jobs
    assert job.payload["prompt"] == "What now? A *bold* [wide] shot"


def test_only_one_glob_per_job(problems_of: ProblemsOf, make_image: MakeImage) -> None:
    make_image("f/a.png", (640, 480))
    text = head(LITE, "jobs:\n  - {id: a, prompt: x, image: 'f/*.png', last_image: 'f/?.png'}\n")
    [problem] = problems_of(text)
    assert (problem.line, problem.job, problem.field) == (4, "a", "last_image")
    assert problem.message == "only one field per job may be a glob pattern"


# -- repeat ----------------------------------------------------------------------------------


def test_repeat_makes_takes_with_distinct_keys(load: Load) -> None:
    text = head(LITE, "jobs:\n  - {id: a, prompt: waves, image: beach.jpg, repeat: 3}\n")
    jobs = load(text).jobs
    assert [(j.id, j.variant, j.replicate) for j in jobs] == [
        ("a_r1", "_r1", 0),
        ("a_r2", "_r2", 1),
        ("a_r3", "_r3", 2),
    ]
    assert len({j.key for j in jobs}) == 3
    assert len({j.output_path for j in jobs}) == 3
    assert all(j.payload == jobs[0].payload for j in jobs)


def test_repeat_for_the_whole_manifest_with_a_matrix(load: Load) -> None:
    text = head(DREAMINA, "repeat: 2\nmatrix:\n  seed: [1, 2]\n")
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n"
    assert [j.id for j in load(text).jobs] == [
        "a_seed-1_r1",
        "a_seed-1_r2",
        "a_seed-2_r1",
        "a_seed-2_r2",
    ]


@pytest.mark.parametrize("value", ["0", "-2", "many", "true", "1.5"])
def test_a_bad_repeat_on_a_job(problems_of: ProblemsOf, manifest_path: Path, value: str) -> None:
    text = head(
        LITE, f"jobs:\n  - id: a\n    prompt: x\n    image: beach.jpg\n    repeat: {value}\n"
    )
    [problem] = problems_of(text)
    assert (problem.file, problem.line, problem.job, problem.field) == (
        str(manifest_path),
        7,
        "a",
        "repeat",
    )
    assert problem.message.startswith("'repeat' must be a whole number >= 1, got ")


# -- identical jobs --------------------------------------------------------------------------


def test_two_identical_jobs_suggest_repeat(problems_of: ProblemsOf, manifest_path: Path) -> None:
    text = head(LITE, "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n")
    text += "  - {id: b, prompt: waves, image: beach.jpg}\n"
    file = str(manifest_path)
    assert problems_of(text) == [
        Problem(
            f"is identical to job 'a' ({file}:4): same model and inputs",
            file=file,
            line=5,
            job="b",
            model=LITE,
            hint="change an input, or use 'repeat: N' for several takes of one job",
        )
    ]


def test_the_same_picture_under_another_name_is_the_same_input(
    problems_of: ProblemsOf, tmp_path: Path
) -> None:
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "beach.jpg").read_bytes())
    text = head(LITE, "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n")
    text += "  - {id: b, prompt: waves, image: copy.jpg}\n"
    [problem] = problems_of(text)
    assert (problem.job, problem.line) == ("b", 5)
    assert "is identical to job 'a'" in problem.message


def test_the_same_inputs_for_two_models_are_two_jobs(load: Load) -> None:
    text = head(LITE, "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n")
    text += f"  - {{id: b, prompt: waves, image: beach.jpg, model: {PRO}}}\n"
    assert len(load(text).jobs) == 2


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "job_id",
    ["../x", "a/b", "/abs", ".hidden", "-x", "a b", "'[1, 2]'", "'{a: 1}'", "1.5", "é"],
)
def test_ids_that_could_not_be_file_names(
    problems_of: ProblemsOf, manifest_path: Path, job_id: str
) -> None:
    text = head(LITE, f"jobs:\n  - id: {job_id}\n    prompt: x\n    image: beach.jpg\n")
    [problem] = problems_of(text)
    assert (problem.file, problem.line, problem.field) == (str(manifest_path), 4, "id")
    assert problem.message.startswith("id ")
    assert problem.message.endswith(
        "is not allowed: use letters, digits, '.', '_' and '-', starting with a letter or digit "
        "(ids become file names)"
    )


def test_numbers_are_fine_as_ids(load: Load) -> None:
    text = head(LITE, "jobs:\n  - {id: 7, prompt: x, image: beach.jpg}\n")
    assert load(text).jobs[0].id == "7"


def test_duplicate_ids_name_both_lines(problems_of: ProblemsOf, manifest_path: Path) -> None:
    text = head(LITE, "jobs:\n  - {id: a, prompt: x, image: beach.jpg}\n")
    text += "  - {id: b, prompt: y, image: beach.jpg}\n"
    text += "  - {id: a, prompt: z, image: beach.jpg}\n"
    file = str(manifest_path)
    assert problems_of(text) == [
        Problem(
            f"duplicate job id 'a' (first used at {file}:4)",
            file=file,
            line=6,
            job="a",
            field="id",
        )
    ]


def test_duplicate_ids_across_files(
    problems_of: ProblemsOf, manifest_path: Path, tmp_path: Path
) -> None:
    csv_path = write(tmp_path / "p.csv", "id,prompt,image\nb,y,beach.jpg\na,z,city.png\n")
    text = head(LITE, "jobs_from: p.csv\njobs:\n  - {id: a, prompt: x, image: beach.jpg}\n")
    assert problems_of(text) == [
        Problem(
            f"duplicate job id 'a' (first used at {manifest_path}:5)",
            file=str(csv_path),
            line=3,
            job="a",
            field="id",
        )
    ]


def test_jobs_without_an_id_are_named_after_their_image(load: Load, make_image: MakeImage) -> None:
    make_image("other/beach.jpg", (1280, 720), color=(9, 9, 9))
    text = head(LITE, "jobs:\n  - {prompt: waves, image: city.png}\n")
    text += "  - {prompt: one, image: beach.jpg}\n  - {prompt: two, image: other/beach.jpg}\n"
    text += "  - {prompt: url, image: 'https://example.com/x/pier.png?s=1'}\n"
    jobs = load(text).jobs
    assert jobs[0].id == "city"
    assert jobs[1].id == f"beach-{jobs[1].key[:8]}"
    assert jobs[2].id == f"beach-{jobs[2].key[:8]}"
    assert jobs[1].id != jobs[2].id
    assert jobs[3].id == "pier"


# -- models without a schema -----------------------------------------------------------------


def test_an_allowed_unknown_model_warns_and_passes_fields_through(
    load: Load, manifest_path: Path, tmp_path: Path
) -> None:
    text = "batch: demo\nmodel: acme/wonder-video/v2/image-to-video\njobs:\n"
    text += "  - {id: a, prompt: hi, image: beach.jpg, wobble: 3}\n"
    text += "  - {id: b, prompt: ho, start_image: city.png, style: [x, y]}\n"
    expansion = load(text, allow_unknown_model=True)
    [warning] = expansion.warnings
    assert (warning.file, warning.line, warning.field) == (str(manifest_path), 2, "model")
    assert warning.message == (
        "model 'acme/wonder-video/v2/image-to-video' has no schema in the catalog: its inputs "
        "are sent as written, without validation (--allow-unknown-model)"
    )
    a, b = expansion.jobs
    assert a.payload == {"prompt": "hi", "image": "beach.jpg", "wobble": 3}
    assert (a.known_model, a.model_slug, a.output_path) == (
        False,
        "wonder-video-v2",
        "demo/wonder-video-v2/a.mp4",
    )
    assert b.payload["style"] == ["x", "y"]
    marker = b.stored_payload()["start_image"]["$image"]
    assert marker["path"] == str((tmp_path / "city.png").resolve())
    assert a.estimated_cost_usd is None


def test_a_misspelt_model_id_is_refused_with_the_closest(
    problems_of: ProblemsOf, manifest_path: Path
) -> None:
    text = (
        f"batch: demo\nmodel: {LITE[:-2]}oe\njobs:\n  - {{id: a, prompt: hi, image: beach.jpg}}\n"
    )
    [problem] = problems_of(text)
    assert (problem.file, problem.line, problem.field) == (str(manifest_path), 2, "model")
    assert problem.message == (
        f"unknown model {LITE[:-2] + 'oe'!r}; nothing was submitted (--allow-unknown-model "
        "sends it as written)"
    )
    assert problem.hint is not None
    assert problem.hint.startswith(f"did you mean {LITE!r}")


def test_an_unknown_model_is_said_once_however_many_jobs_name_it(
    problems_of: ProblemsOf,
) -> None:
    text = "batch: demo\nmodel: acme/nothing-like-it\njobs:\n"
    text += "".join(f"  - {{id: j{n}, prompt: hi {n}, image: beach.jpg}}\n" for n in range(3))
    [problem] = problems_of(text)
    assert problem.hint == "see 'orchestrator models --remote' for the ids RunComfy offers"


def test_an_unknown_model_still_needs_its_local_images(problems_of: ProblemsOf) -> None:
    text = "batch: demo\nmodel: acme/x\njobs:\n  - {id: a, prompt: hi, image: nothere.png}\n"
    [problem] = problems_of(text, allow_unknown_model=True)
    assert (problem.line, problem.field, problem.model, problem.message) == (
        4,
        "image",
        None,
        "image nothere.png: file not found",
    )


# -- every problem at once -------------------------------------------------------------------


def test_every_problem_of_a_manifest_is_reported_at_once(
    problems_of: ProblemsOf, manifest_path: Path
) -> None:
    text = f"""\
batch: demo
modle: typo
model: {LITE}
limits: {{max_in_flight: 0}}
jobs:
  - {{id: a, prompt: waves, image: missing.png}}
  - {{id: b, prompt: waves, image: beach.jpg, duration: 7}}
  - {{id: a, prompt: other, image: city.png}}
  - {{id: c, prompt: {"x" * 1901}, image: city.png}}
"""
    problems = problems_of(text)
    assert [(p.line, p.job, p.field) for p in problems] == [
        (2, None, "modle"),
        (4, None, "limits.max_in_flight"),
        (6, "a", "image"),
        (7, "b", "duration"),
        (8, "a", "id"),
        (9, "c", "prompt"),
    ]
    assert all(p.file == str(manifest_path) for p in problems)


# -- output paths and odd corners ------------------------------------------------------------


def test_two_jobs_writing_to_one_file(problems_of: ProblemsOf, manifest_path: Path) -> None:
    text = head(LITE, "output: {pattern: '{batch}/{id}.mp4'}\n")
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg, repeat: 2}\n"
    assert problems_of(text) == [
        Problem(
            "writes to demo/a.mp4, like job 'a_r1'",
            file=str(manifest_path),
            line=5,
            job="a_r2",
            field="output.pattern",
            hint="add {variant} or {job} to output.pattern",
        )
    ]


def test_a_value_that_makes_an_unsafe_path(problems_of: ProblemsOf, manifest_path: Path) -> None:
    text = head(DREAMINA, "output: {pattern: '{batch}/{seed}/{id}.mp4'}\n")
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg, seed: -1}\n"
    [problem] = problems_of(text)
    assert (problem.file, problem.line, problem.job, problem.field) == (
        str(manifest_path),
        5,
        "a",
        "output.pattern",
    )
    assert "has an unsafe path component '-1'" in problem.message


def test_the_seed_placeholder(load: Load) -> None:
    text = head(DREAMINA, "output: {pattern: '{batch}/{id}-seed{seed}.mp4'}\n")
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg, seed: 42}\n"
    text += f"  - {{id: b, prompt: waves, image: beach.jpg, model: {LITE}}}\n"
    assert [j.output_path for j in load(text).jobs] == ["demo/a-seed42.mp4", "demo/b-seed.mp4"]


def test_one_image_problem_named_by_each_job_s_own_field_name(problems_of: ProblemsOf) -> None:
    text = head(LITE, "jobs:\n  - {id: a, prompt: x, image: gone.png}\n")
    text += "  - {id: b, prompt: y, first_frame_image_url: gone.png}\n"
    problems = problems_of(text)
    assert [(p.job, p.field, p.message) for p in problems] == [
        ("a", "image", "image gone.png: file not found"),
        ("b", "first_frame_image_url", "image gone.png: file not found"),
    ]


@pytest.mark.parametrize("name", ["folder.csv", "latin1.csv"])
def test_a_jobs_from_file_that_cannot_be_read(
    problems_of: ProblemsOf, manifest_path: Path, tmp_path: Path, name: str
) -> None:
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "latin1.csv").write_bytes("prompt,image\ncaf\xe9,beach.jpg\n".encode("latin-1"))
    [problem] = problems_of(head(LITE, f"jobs_from: {name}\n"))
    assert (problem.file, problem.line, problem.field) == (str(manifest_path), 3, "jobs_from")
    assert problem.message.startswith(f"cannot read {name}: ")


def test_matrix_labels_for_booleans_and_plain_model_names(load: Load) -> None:
    text = head(V15, "matrix:\n  camera_fixed: [true, false]\n")
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n"
    assert [j.id for j in load(text).jobs] == ["a_camera_fixed-true", "a_camera_fixed-false"]
    text = "batch: demo\nmatrix:\n  model: [wonder, 'odd model']\n"
    text += "jobs:\n  - {id: a, prompt: waves, image: beach.jpg}\n"
    expansion = load(text, allow_unknown_model=True)
    assert [j.id for j in expansion.jobs] == ["a_model-wonder", "a_model-odd-model"]
    assert len(expansion.warnings) == 2
