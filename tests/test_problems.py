"""Problems as a user reads them: place, job, model, field, message and hint."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.problems import (
    SHOWN_CHARS,
    SHOWN_ITEMS,
    SHOWN_NAME_CHARS,
    InputError,
    Problem,
    clipped,
    closest,
    did_you_mean,
    show_value,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


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
        pytest.param(5, ["model"], None, id="a-number-key"),
        pytest.param(None, ["model"], None, id="a-null-key"),
        pytest.param("model" * 200_000, ["model"], None, id="a-megabyte-key"),
        pytest.param("modelmodelm", ["modelmodel"], "modelmodel", id="long-but-close"),
    ],
)
def test_closest_word(word: object, choices: list[str], expected: str | None) -> None:
    assert closest(word, iter(choices)) == expected


def test_did_you_mean_hint() -> None:
    assert did_you_mean("pattren", ("dir", "pattern")) == "did you mean 'pattern'?"
    assert did_you_mean("qqq", ("dir", "pattern")) is None


# -- show_value: any value, shown in bounded work -----------------------------------------------


class Counted(list[int]):
    """A list that counts how many of its items were looked at."""

    looked = 0

    def __iter__(self) -> Iterator[int]:
        for item in super().__iter__():
            Counted.looked += 1
            yield item


@pytest.mark.parametrize(
    "value",
    [
        "4k",
        "it's",
        5,
        -2.5,
        True,
        None,
        [1, "a", None],
        [],
        {},
        {"a": (1,), 2: [3.0]},
        (1,),
        (1, 2),
        (),
        {1},
        set(),
        frozenset({1}),
        b"\x00bytes",
        datetime.date(2026, 1, 2),
        [[[["deep"]]]],
    ],
    ids=repr,
)
def test_a_small_value_is_shown_as_repr_writes_it(value: Any) -> None:
    assert show_value(value) == repr(value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("x" * 10_000_000, "'" + "x" * (SHOWN_CHARS - 4) + "...", id="long-text"),
        pytest.param(
            list(range(1_000)), "[" + ", ".join(map(str, range(SHOWN_ITEMS))) + ", ...]", id="list"
        ),
        pytest.param(
            {i: i for i in range(50)},
            "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, ...}",
            id="mapping",
        ),
        pytest.param([[[[[[1]]]]]], "[[[[[...]]]]]", id="deep"),
        pytest.param(10**5000, "<a number too long to show>", id="number-python-refuses"),
    ],
)
def test_a_big_value_is_cut(value: Any, shown: str) -> None:
    assert show_value(value) == shown
    assert len(show_value(value)) <= SHOWN_CHARS


def test_an_alias_bomb_costs_a_few_items_of_work() -> None:
    # Nine levels of nine shared lists: 387 million items written out.
    level: Any = Counted([1] * 9)
    for _ in range(8):
        level = Counted([level] * 9)
    Counted.looked = 0
    text = show_value(level, 200)
    assert len(text) <= 200
    # Four levels, the last one's lists shown as [...]: 4 + 3 x 9 + 7 items, then the
    # characters run out and nothing more is looked at.
    assert Counted.looked == 38


class NoWholeRepr(str):
    def __repr__(self) -> str:
        raise AssertionError("the whole text was rendered")


def test_long_text_is_cut_before_it_is_rendered() -> None:
    assert show_value(NoWholeRepr("x" * 1_000_000)).startswith("'xxx")


def test_a_word_too_long_to_be_a_typo_is_not_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_difflib(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("difflib was asked")

    monkeypatch.setattr("orchestrator.problems.difflib.get_close_matches", no_difflib)
    assert closest("x" * 1_000_000, ["model", "matrix"]) is None
    assert closest("x" * 15, ["model", "matrix"]) is None  # 15 > 2.4 x 6: cannot be 0.6 alike


def test_a_megabyte_item_inside_a_list_is_cut_before_it_is_rendered() -> None:
    text = show_value(["x" * 1_000_000, 2])
    assert text.startswith("['xxx")
    assert text.endswith("...")
    assert len(text) == SHOWN_CHARS


def test_clipped() -> None:
    assert clipped("abc", 3) == "abc"
    assert clipped("abcd", 3) == "..."
    assert clipped("abcdef", 5) == "ab..."


def test_a_problem_shows_its_job_field_and_model_within_bounds() -> None:
    huge = "j" * 1_000_000
    problem = Problem("bad", file="m.yaml", line=1, job=huge, field=huge, model=huge)
    text = str(problem)
    assert len(text) <= 3 * SHOWN_NAME_CHARS + 50
    assert text.startswith("m.yaml:1: job 'jjj")
    assert text.endswith("...: bad")
    as_dict = problem.as_dict()
    assert all(len(str(as_dict[k])) <= SHOWN_NAME_CHARS for k in ("job", "field", "model"))
    assert str(Problem("bad", job="x" * 255)) == f"<input>: job '{'x' * 255}': bad"
    assert str(Problem("bad", field=5)) == "<input>: field 5: bad"  # type: ignore[arg-type]
