"""Reading a manifest: safe YAML with lines, the top-level vocabulary, batch-wide settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from model_ids import LITE

from orchestrator.manifest import (
    BatchSettings,
    Expansion,
    Limits,
    OutputSpec,
    RetryPolicy,
    load_manifest,
)
from orchestrator.manifest.yamlsafe import LocatedDict, LocatedList, load_yaml
from orchestrator.problems import InputError, Problem

if TYPE_CHECKING:
    from pathlib import Path

JOBS = """\
jobs:
  - id: beach
    prompt: slow dolly-in over the beach
    image: beach.jpg
"""
Load = Callable[..., Expansion]
ProblemsOf = Callable[..., list[Problem]]


@pytest.fixture(autouse=True)
def beach(make_image: Callable[..., Path]) -> Path:
    return make_image("beach.jpg", (1280, 720))


def manifest(head: str = "", jobs: str = JOBS) -> str:
    """A valid manifest whose first lines are ``head`` (so line numbers stay readable)."""
    return f"batch: demo\nmodel: {LITE}\n{head}{jobs}"


def test_a_minimal_manifest(load: Load, manifest_path: Path) -> None:
    expansion = load(manifest())
    assert expansion.settings == BatchSettings(batch="demo", manifest_path=str(manifest_path))
    assert expansion.warnings == []
    [job] = expansion.jobs
    assert (job.id, job.base_id, job.variant, job.model_id) == ("beach", "beach", "", LITE)
    assert job.payload == {
        "prompt": "slow dolly-in over the beach",
        "first_frame_image_url": "beach.jpg",
    }
    assert job.output_path == "demo/seedance-1-0-lite/beach.mp4"
    assert (job.source_file, job.source_line) == (str(manifest_path), 4)
    assert (job.replicate, job.image_fit, job.known_model) == (0, None, True)
    assert job.estimated_cost_usd is None
    assert len(job.key) == 64
    assert expansion.by_model() == {LITE: [job]}


def test_default_settings() -> None:
    settings = BatchSettings(batch="b", manifest_path="m.yaml")
    assert settings.output == OutputSpec("outputs", "{batch}/{model_slug}/{id}{variant}.mp4")
    assert settings.limits == Limits(8, None, None, 4, None)
    assert settings.retry == RetryPolicy(3, 2.0, 300.0)


def test_batch_wide_settings_are_read(load: Load) -> None:
    head = """\
description: a test batch
output: {dir: renders, pattern: "{batch}/{job}-{key}.mp4"}
limits:
  max_in_flight: 2
  max_in_flight_per_model: 1
  submits_per_second: 0.5
  max_downloads: 3
  max_spend: 12.5
retry: {max_attempts: 5, base_delay: 0, max_delay: 60}
"""
    expansion = load(manifest(head))
    settings = expansion.settings
    assert settings.output == OutputSpec("renders", "{batch}/{job}-{key}.mp4")
    assert settings.limits == Limits(2, 1, 0.5, 3, 12.5)
    assert settings.retry == RetryPolicy(5, 0, 60)
    assert settings.as_dict() == {
        "output": {"dir": "renders", "pattern": "{batch}/{job}-{key}.mp4"},
        "limits": {
            "max_in_flight": 2,
            "max_in_flight_per_model": 1,
            "submits_per_second": 0.5,
            "max_downloads": 3,
            "max_spend": 12.5,
        },
        "retry": {"max_attempts": 5, "base_delay": 0, "max_delay": 60},
    }
    [job] = expansion.jobs
    assert job.output_path == f"demo/beach-{job.key[:12]}.mp4"


# -- the file and its YAML -------------------------------------------------------------------


def test_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_manifest(tmp_path / "nope.yaml")
    assert caught.value.problems == [
        Problem("manifest file not found", file=str(tmp_path / "nope.yaml"))
    ]


def test_a_manifest_that_is_not_utf8(manifest_path: Path) -> None:
    manifest_path.write_bytes(b"batch: \xff\xfe\n")
    with pytest.raises(InputError) as caught:
        load_manifest(manifest_path)
    [problem] = caught.value.problems
    assert problem.file == str(manifest_path)
    assert problem.message.startswith("cannot read the manifest")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param(
            "batch: demo\njobs:\n  - prompt: a\n   image: b\n",
            4,
            ["malformed YAML", "expected <block end>"],
            id="bad-indentation",
        ),
        pytest.param(
            "batch: demo\njobs:\n  - prompt: a: b\n",
            3,
            ["malformed YAML", "mapping values are not allowed here"],
            id="colon-in-value",
        ),
        pytest.param(
            "batch: demo\njobs:\n\t- prompt: a\n",
            3,
            ["malformed YAML", "'\\t' that cannot start any token"],
            id="tab",
        ),
        pytest.param(
            'batch: demo\njobs:\n  - prompt: "unclosed\n    image: x\n',
            5,
            ["malformed YAML", "unexpected end of stream", "quoted scalar on line 3"],
            id="unclosed-quote-names-where-it-began",
        ),
        pytest.param(
            "batch: demo\njobs:\n  - {prompt: a, image: b\n  - {prompt: c}\n",
            4,
            ["malformed YAML", "flow mapping on line 3"],
            id="unclosed-brace",
        ),
        pytest.param(
            "batch: demo\n---\nbatch: other\n", 2, ["another document"], id="two-documents"
        ),
    ],
)
def test_malformed_yaml_names_the_line(
    problems_of: ProblemsOf, manifest_path: Path, text: str, line: int, words: list[str]
) -> None:
    [problem] = problems_of(text)
    assert (problem.file, problem.line) == (str(manifest_path), line)
    for word in words:
        assert word in problem.message
    assert str(problem).startswith(f"{manifest_path}:{line}: malformed YAML: ")


@pytest.mark.parametrize(
    "tag",
    [
        '!!python/object/apply:os.system ["touch MARKER"]',
        "!!python/name:os.system",
        "!!python/object:pathlib.Path {}",
        "!include other.yaml",
    ],
    ids=["object-apply", "name", "object", "custom"],
)
def test_tags_that_construct_objects_are_refused(
    problems_of: ProblemsOf, manifest_path: Path, tmp_path: Path, tag: str
) -> None:
    marker = tmp_path / "pwned"
    [problem] = problems_of(f"batch: demo\nmodel: {tag.replace('MARKER', str(marker))}\n")
    assert (problem.file, problem.line) == (str(manifest_path), 2)
    assert problem.message.startswith(
        "not allowed in a manifest: could not determine a constructor"
    )
    assert problem.hint == "tags that construct objects are refused; write plain values"
    assert not marker.exists()


def test_a_key_written_twice(problems_of: ProblemsOf, manifest_path: Path) -> None:
    [problem] = problems_of(f"batch: demo\nmodel: {LITE}\nmodel: other\n{JOBS}")
    assert problem == Problem(
        "key 'model' is written twice in one mapping (first on line 2)",
        file=str(manifest_path),
        line=3,
        hint="YAML would silently keep only the last one",
    )


def test_a_key_written_twice_inside_a_job(problems_of: ProblemsOf) -> None:
    text = manifest(jobs="jobs:\n  - id: a\n    prompt: x\n    prompt: y\n    image: beach.jpg\n")
    [problem] = problems_of(text)
    assert (problem.line, problem.message) == (
        6,
        "key 'prompt' is written twice in one mapping (first on line 5)",
    )


def test_merge_keys_may_be_overridden(load: Load) -> None:
    jobs = """\
jobs:
  - &first {id: a, prompt: first take, image: beach.jpg}
  - <<: *first
    id: b
    prompt: second take
"""
    expansion = load(manifest(jobs=jobs))
    assert [(j.id, j.payload["prompt"]) for j in expansion.jobs] == [
        ("a", "first take"),
        ("b", "second take"),
    ]


def test_unhashable_keys_are_refused() -> None:
    with pytest.raises(InputError) as caught:
        load_yaml("batch: demo\n? [a, b]\n: 1\n", "m.yaml")
    assert caught.value.problems == [
        Problem("a mapping key must be plain text", file="m.yaml", line=2)
    ]


def test_located_values_remember_their_lines() -> None:
    data = load_yaml("batch: demo\njobs:\n  - prompt: hi\n    seed: 3\n  - x\n", "m.yaml")
    assert isinstance(data, LocatedDict)
    assert (data.line, data.key_lines) == (1, {"batch": 1, "jobs": 2})
    jobs = data["jobs"]
    assert isinstance(jobs, LocatedList)
    assert (jobs.line, jobs.item_lines) == (3, [3, 5])
    assert jobs[0].line_of("seed") == 4
    assert jobs[0].line_of("missing") == 3
    assert jobs.line_of(7) == 3


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "", "# only a comment\n"], ids=repr)
def test_a_manifest_must_be_a_mapping(
    problems_of: ProblemsOf, manifest_path: Path, text: str
) -> None:
    assert problems_of(text) == [
        Problem("a manifest is a YAML mapping (batch:, model:, jobs: ...)", file=str(manifest_path))
    ]


# -- the top-level vocabulary ----------------------------------------------------------------


def test_an_unknown_top_level_key_suggests_the_closest(
    problems_of: ProblemsOf, manifest_path: Path
) -> None:
    [problem] = problems_of(f"batch: demo\nmodle: {LITE}\nmodel: {LITE}\n{JOBS}")
    assert (problem.file, problem.line, problem.field) == (str(manifest_path), 2, "modle")
    assert problem.message.startswith("unknown key 'modle' in the manifest; known keys: batch,")
    assert problem.hint == "did you mean 'model'?"
    assert str(problem).endswith("(did you mean 'model'?)")


def test_an_unknown_key_far_from_every_known_one_has_no_hint(problems_of: ProblemsOf) -> None:
    [problem] = problems_of(manifest("xyzzy: 1\n"))
    assert (problem.line, problem.field, problem.hint) == (3, "xyzzy", None)


def test_a_missing_batch(problems_of: ProblemsOf, manifest_path: Path) -> None:
    [problem] = problems_of(f"model: {LITE}\n{JOBS}")
    assert (problem.file, problem.line, problem.field) == (str(manifest_path), 1, "batch")
    assert problem.message == "the manifest needs a 'batch' name ([A-Za-z0-9._-]+)"


@pytest.mark.parametrize(
    "name",
    ["spring campaign", "../up", "a/b", "-dash-first", ".hidden", "x" * 101, "5", "[a]", "''"],
    ids=["space", "dotdot", "slash", "dash-first", "dot-first", "too-long", "int", "list", "empty"],
)
def test_a_bad_batch_name(problems_of: ProblemsOf, name: str) -> None:
    [problem] = problems_of(f"model: {LITE}\nbatch: {name}\n{JOBS}")
    assert (problem.line, problem.field) == (2, "batch")
    assert problem.message.startswith("batch name ")
    assert "is not allowed: use letters, digits, '.', '_' and '-'" in problem.message


@pytest.mark.parametrize("name", ["a", "Spring_2025.v2-final", "9lives", "x" * 100])
def test_good_batch_names(load: Load, name: str) -> None:
    assert load(f"batch: {name}\nmodel: {LITE}\n{JOBS}").settings.batch == name


@pytest.mark.parametrize(
    ("head", "line", "field", "message", "hint"),
    [
        pytest.param(
            "limits: [1, 2]\n", 3, "limits", "'limits' must be a mapping", None, id="limits-list"
        ),
        pytest.param("retry: 3\n", 3, "retry", "'retry' must be a mapping", None, id="retry-int"),
        pytest.param(
            "output: out\n", 3, "output", "'output' must be a mapping", None, id="output-text"
        ),
        pytest.param(
            "limits: {max_in_flight: 0}\n",
            3,
            "limits.max_in_flight",
            "must be a whole number >= 1, got 0",
            None,
            id="in-flight-zero",
        ),
        pytest.param(
            "limits: {max_in_flight: 2.5}\n",
            3,
            "limits.max_in_flight",
            "must be a whole number >= 1, got 2.5",
            None,
            id="in-flight-float",
        ),
        pytest.param(
            "limits: {max_downloads: true}\n",
            3,
            "limits.max_downloads",
            "must be a whole number >= 1, got True",
            None,
            id="downloads-bool",
        ),
        pytest.param(
            "limits: {max_spend: cheap}\n",
            3,
            "limits.max_spend",
            "must be a number >= 0, got 'cheap'",
            None,
            id="spend-text",
        ),
        pytest.param(
            "limits: {max_spend: -1}\n",
            3,
            "limits.max_spend",
            "must be a number >= 0, got -1",
            None,
            id="spend-negative",
        ),
        pytest.param(
            "limits: {submits_per_second: 0}\n",
            3,
            "limits.submits_per_second",
            "must be a number >= 0.001, got 0",
            None,
            id="rate-zero",
        ),
        pytest.param(
            "limits:\n  max_inflight: 3\n",
            4,
            "limits.max_inflight",
            "unknown key 'max_inflight' in 'limits'; known keys: max_in_flight, "
            "max_in_flight_per_model, submits_per_second, max_downloads, max_spend",
            "did you mean 'max_in_flight'?",
            id="limits-unknown-key",
        ),
        pytest.param(
            "retry:\n  max_attempts: 1.5\n",
            4,
            "retry.max_attempts",
            "must be a whole number >= 1, got 1.5",
            None,
            id="attempts-float",
        ),
        pytest.param(
            "retry: {base_delay: -2}\n",
            3,
            "retry.base_delay",
            "must be a number >= 0, got -2",
            None,
            id="delay-negative",
        ),
        pytest.param(
            "retry: {max_attempt: 2}\n",
            3,
            "retry.max_attempt",
            "unknown key 'max_attempt' in 'retry'; known keys: max_attempts, base_delay, max_delay",
            "did you mean 'max_attempts'?",
            id="retry-unknown-key",
        ),
        pytest.param(
            "output:\n  patern: x\n",
            4,
            "output.patern",
            "unknown key 'patern' in 'output'; known keys: dir, pattern",
            "did you mean 'pattern'?",
            id="output-unknown-key",
        ),
        pytest.param(
            "output: {dir: ''}\n", 3, "output.dir", "must be a folder path", None, id="empty-dir"
        ),
        pytest.param(
            "output: {pattern: 5}\n",
            3,
            "output.pattern",
            "must be a path pattern",
            None,
            id="pattern-int",
        ),
        pytest.param(
            "image_fit: squash\n",
            3,
            "image_fit",
            "'squash' is not an image_fit mode; allowed: none, resize, pad, crop",
            None,
            id="image-fit",
        ),
        pytest.param(
            "repeat: 0\n",
            3,
            "repeat",
            "'repeat' must be a whole number >= 1, got 0",
            None,
            id="repeat-zero",
        ),
        pytest.param(
            "defaults: [a]\n", 3, "defaults", "'defaults' must be a mapping", None, id="defaults"
        ),
        pytest.param(
            "defaults: {id: x}\n",
            3,
            "defaults.id",
            "'id' cannot be a default; ids are per job",
            None,
            id="default-id",
        ),
        pytest.param(
            "matrix: [1, 2]\n",
            3,
            "matrix",
            "'matrix' must map field names to lists of values",
            None,
            id="matrix-list",
        ),
    ],
)
def test_settings_with_wrong_types_or_unknown_keys(
    problems_of: ProblemsOf,
    manifest_path: Path,
    head: str,
    line: int,
    field: str,
    message: str,
    hint: str | None,
) -> None:
    assert problems_of(manifest(head)) == [
        Problem(message, file=str(manifest_path), line=line, field=field, hint=hint)
    ]


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        pytest.param(
            "../{id}.mp4", ["leaves the output folder ('..' is not allowed)"], id="dotdot"
        ),
        pytest.param("{batch}/../../{id}.mp4", ["'..' is not allowed"], id="dotdot-inside"),
        pytest.param("/srv/{id}.mp4", ["is absolute"], id="absolute"),
        pytest.param(
            "{batch}/{name}.mp4", ["unknown placeholder {name}", "allowed: {batch}"], id="unknown"
        ),
        pytest.param(
            "{batch}/{model_slug}.mp4",
            ["pattern must contain {id}, {job} or {key} so every job gets its own file"],
            id="no-id",
        ),
        pytest.param("{id:>4}.mp4", ["without format specs"], id="format-spec"),
        pytest.param("{id.mp4", ["malformed"], id="unclosed"),
        pytest.param("{id}?.mp4", ["unsafe path component"], id="unsafe"),
    ],
)
def test_a_bad_output_pattern_is_reported_once_at_its_line(
    problems_of: ProblemsOf, manifest_path: Path, pattern: str, words: list[str]
) -> None:
    jobs = JOBS + "  - {id: city, prompt: neon city, image: beach.jpg}\n"
    [problem] = problems_of(manifest(f"output:\n  pattern: '{pattern}'\n", jobs))
    assert (problem.file, problem.line, problem.field, problem.job) == (
        str(manifest_path),
        4,
        "output.pattern",
        None,
    )
    for word in words:
        assert word in problem.message


@pytest.mark.parametrize(
    "pattern",
    ["{job}.mp4", "{key}.mp4", "videos/{batch}/{model}/{id}_{replicate}{variant}.mp4"],
)
def test_good_output_patterns(load: Load, pattern: str) -> None:
    [job] = load(manifest(f"output: {{pattern: '{pattern}'}}\n")).jobs
    values = {"job": "beach", "key": job.key[:12], "batch": "demo", "id": "beach"}
    values |= {"model": LITE.replace("/", "_"), "replicate": "1", "variant": ""}
    assert job.output_path == pattern.format(**values)


@pytest.mark.parametrize(
    ("jobs", "line", "field", "message"),
    [
        pytest.param(
            "", None, None, "the manifest has no jobs: add 'jobs:' or 'jobs_from:'", id="none"
        ),
        pytest.param(
            "jobs: []\n",
            None,
            None,
            "the manifest has no jobs: add 'jobs:' or 'jobs_from:'",
            id="empty-list",
        ),
        pytest.param("jobs: {a: 1}\n", 3, "jobs", "'jobs' must be a list of jobs", id="mapping"),
        pytest.param(
            "jobs:\n  - just a prompt\n",
            4,
            "jobs",
            "job #1 must be a mapping of fields, got 'just a prompt'",
            id="job-text",
        ),
        pytest.param(
            "jobs_from: 5\n", 3, "jobs_from", "must be a CSV or JSONL file path", id="from-int"
        ),
        pytest.param(
            "jobs_from: prompts.txt\n",
            3,
            "jobs_from",
            "'prompts.txt' is neither .csv nor .jsonl",
            id="from-txt",
        ),
        pytest.param(
            "jobs_from: missing.csv\n",
            3,
            "jobs_from",
            "file not found: missing.csv",
            id="from-missing",
        ),
    ],
)
def test_where_jobs_come_from(
    problems_of: ProblemsOf,
    manifest_path: Path,
    jobs: str,
    line: int | None,
    field: str | None,
    message: str,
) -> None:
    assert problems_of(manifest(jobs=jobs)) == [
        Problem(message, file=str(manifest_path), line=line, field=field)
    ]
