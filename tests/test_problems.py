"""Problems as a user reads them: place, job, model, field, message and hint."""

from __future__ import annotations

import pytest

from orchestrator.problems import InputError, Problem, closest, did_you_mean


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        pytest.param(Problem("bad"), "<input>: bad", id="no-place"),
        pytest.param(Problem("bad", file="m.yaml"), "m.yaml: bad", id="file-only"),
        pytest.param(Problem("bad", line=3), "<input>:3: bad", id="line-without-file"),
        pytest.param(
            Problem("too long", file="m.yaml", line=7, job="beach", field="prompt"),
            "m.yaml:7: job 'beach': field 'prompt': too long",
            id="job-and-field",
        ),
        pytest.param(
            Problem("x", file="m.yaml", line=2, job="a", field="f", model="acme/m", hint="try y"),
            "m.yaml:2: job 'a': model acme/m: field 'f': x (try y)",
            id="everything",
        ),
        pytest.param(Problem("x", file="f", hint=""), "f: x", id="empty-hint-left-out"),
    ],
)
def test_problem_text_names_place_job_model_field(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_problem_as_dict_is_json_ready() -> None:
    problem = Problem("m", file="f.yaml", line=1, job="j", field="x", model="mo", hint="h")
    assert problem.as_dict() == {
        "file": "f.yaml",
        "line": 1,
        "job": "j",
        "model": "mo",
        "field": "x",
        "message": "m",
        "hint": "h",
    }


def test_problems_are_values_that_deduplicate() -> None:
    one = Problem("m", file="f", line=1)
    assert one == Problem("m", file="f", line=1)
    assert len({one, Problem("m", file="f", line=1), Problem("m", file="f", line=2)}) == 2


def test_input_error_keeps_every_problem_and_lists_them_one_per_line() -> None:
    problems = [Problem("first", file="a", line=1), Problem("second", file="b")]
    error = InputError(problems)
    assert error.problems == problems
    assert error.problems is not problems
    assert str(error) == "a:1: first\nb: second"


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        pytest.param("modle", ["model", "matrix", "jobs"], "model", id="typo"),
        pytest.param("jobs_form", ["jobs", "jobs_from"], "jobs_from", id="swap"),
        pytest.param("zzz", ["model", "jobs"], None, id="nothing-close"),
        pytest.param("x", [], None, id="no-choices"),
    ],
)
def test_closest_word(word: str, choices: list[str], expected: str | None) -> None:
    assert closest(word, iter(choices)) == expected


def test_did_you_mean_hint() -> None:
    assert did_you_mean("pattren", ("dir", "pattern")) == "did you mean 'pattern'?"
    assert did_you_mean("qqq", ("dir", "pattern")) is None
