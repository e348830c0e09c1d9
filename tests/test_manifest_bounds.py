"""A manifest and its jobs_from files are bounded while they are read: each bound refused
with the file, the line, the job and the field, and a document just inside it accepted."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from model_ids import LITE, RUNWAY

from orchestrator.catalog import builtin_catalog
from orchestrator.manifest import Expansion, load_manifest, yamlbounds, yamlsafe
from orchestrator.manifest import sources as sources_module
from orchestrator.manifest.inputs import to_native
from orchestrator.manifest.yamlsafe import load_yaml, read_manifest
from orchestrator.problems import SHOWN_CHARS, InputError, Problem

Load = Callable[..., Expansion]
ProblemsOf = Callable[..., list[Problem]]


@pytest.fixture(autouse=True)
def beach(make_image: Callable[..., Path]) -> Path:
    return make_image("beach.jpg", (1280, 720))


def job(extra: str = "", prompt: str = "slow pan") -> str:
    """A valid one-job manifest; ``extra`` lines go into the job (line 6 on)."""
    return (
        f"batch: demo\nmodel: {LITE}\njobs:\n  - id: beach\n    image: beach.jpg\n"
        f"    prompt: {prompt}\n{extra}"
    )


def refused(text: str) -> Problem:
    with pytest.raises(InputError) as caught:
        load_yaml(text, "m.yaml")
    [problem] = caught.value.problems
    return problem


def chain(levels: int, width: int) -> str:
    """``width`` aliases of ``width`` aliases ... of ``width`` words, as one flow list."""
    parts = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


# -- depth --------------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_is_read_and_one_more_level_is_refused() -> None:
    # The job's prompt is at depth 4 (root, jobs, the job, the prompt).
    inside = yamlbounds.MAX_DEPTH - 3
    data = load_yaml(job(prompt="[" * inside + "]" * inside), "m.yaml")
    assert isinstance(data["jobs"][0]["prompt"], list)
    problem = refused(job(prompt="[" * (inside + 1) + "]" * (inside + 1)))
    assert (problem.file, problem.line, problem.job) == ("m.yaml", 6, "beach")
    assert problem.field is not None
    assert problem.field.startswith("prompt[0][0]")
    assert problem.message == "values are nested more than 64 levels deep"


def test_50000_levels_cost_64_levels_of_work() -> None:
    problem = refused(job(prompt="[" * 50_000 + "]" * 50_000))
    assert (problem.line, problem.job) == (6, "beach")
    assert problem.field is not None
    assert problem.field.endswith("...")


def test_aliases_count_towards_the_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each anchored list is 10 levels deep; an alias of it inside another adds its height.
    # Written, nothing is deeper than 11 levels; with *b written out, c is 21 deep.
    monkeypatch.setattr(yamlbounds, "MAX_DEPTH", 20)
    text = f"a: &a {'[' * 9}{']' * 9}\nb: &b {'[' * 8}*a{']' * 8}\n"
    assert load_yaml(text + "c: [[*b]]\n", "m.yaml")
    problem = refused(text + "c: [[[*b]]]\n")
    assert problem.message == "alias *b nests values more than 20 levels deep"
    assert (problem.line, problem.field) == (3, "c[0][0][0]")


# -- nodes and aliases -------------------------------------------------------------------------


def test_the_node_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlbounds, "MAX_NODES", 9)
    assert load_yaml("a: [1, 2, 3, 4]\nb: 5\n", "m.yaml")  # root, 2 keys, a list, 5 numbers
    problem = refused("a: [1, 2, 3, 4]\nb: [5]\n")
    assert problem.message == "the manifest holds more than 9 values (YAML nodes)"
    assert (problem.line, problem.field) == (2, "b[0]")
    assert problem.hint is not None
    assert "jobs_from" in problem.hint


def test_the_alias_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlbounds, "MAX_ALIASES", 3)
    assert load_yaml("a: &a 1\nb: [*a, *a, *a]\n", "m.yaml")["b"] == [1, 1, 1]
    problem = refused("a: &a 1\nb: [*a, *a,\n  *a, *a]\n")
    assert problem.message == "the manifest uses more than 3 aliases (*name)"
    assert (problem.line, problem.field) == (3, "b[3]")


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit() -> None:
    # 9**9 = 387 million words once written out, from 300 bytes of YAML.
    problem = refused(job(prompt=chain(9, 9)))
    assert (problem.file, problem.line, problem.job, problem.field) == (
        "m.yaml",
        6,
        "beach",
        "prompt[6][0]",
    )
    assert problem.message == (
        "with its aliases written out the manifest would hold more than 1,000,000 values "
        "(alias *l5 crosses the limit)"
    )


def test_a_small_expansion_is_fine_and_shares_its_objects() -> None:
    data = load_yaml(f"x: {chain(4, 9)}\n", "m.yaml")  # 9**4 = 6,561 words written out
    levels = data["x"]
    assert levels[3][0] is levels[2]


def test_merge_keys_count_what_they_bring_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlbounds, "MAX_EXPANDED_NODES", 30)
    base = "base: &base {a: 1, b: 2, c: 3}\n"  # 7 nodes
    jobs = "".join(f"j{i}: {{<<: *base}}\n" for i in range(2))
    assert load_yaml(base + jobs, "m.yaml")["j1"] == {"a": 1, "b": 2, "c": 3}
    problem = refused(base + "".join(f"j{i}: {{<<: *base}}\n" for i in range(3)))
    assert "would hold more than 30 values (alias *base crosses the limit)" in problem.message
    assert problem.line == 4


def test_aliases_of_long_text_are_counted_by_their_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yamlbounds, "MAX_EXPANDED_TEXT", 1_000)
    text = "a: &long " + "x" * 300 + "\n"
    assert load_yaml(text + "b: [*long, *long]\n", "m.yaml")
    problem = refused(text + "b: [*long, *long, *long]\n")
    assert problem.message == (
        "with its aliases written out the manifest would hold more than 1,000 bytes of text "
        "(alias *long crosses the limit)"
    )
    assert (problem.line, problem.field) == (2, "b[2]")


def test_an_alias_inside_the_value_it_names_is_refused() -> None:
    problem = refused("a: &loop [1, [2, *loop]]\n")
    assert problem.message == "alias *loop is used inside the value it names (a cycle)"
    assert (problem.line, problem.field) == (1, "a[1][1]")


def test_an_undefined_alias_is_still_malformed_yaml() -> None:
    assert refused("a: *nowhere\n").message.startswith("malformed YAML: found undefined alias")


# -- numbers, size, where --------------------------------------------------------------------


def test_a_whole_number_over_100_digits_is_refused_and_100_are_read() -> None:
    assert load_yaml(job(f"    seed: {'9' * 100}\n"), "m.yaml")["jobs"][0]["seed"] == 10**100 - 1
    for number in ("9" * 101, "1" + ":1" * 60):  # base 60 grows without limit too
        problem = refused(job(f"    seed: {number}\n"))
        assert (problem.line, problem.job, problem.field) == (7, "beach", "seed")
        assert problem.message.startswith("a whole number may have at most 100 digits")
    assert load_yaml(job(f"    seed: '{'9' * 5000}'\n"), "m.yaml")  # quoted: text


def test_a_job_is_named_by_its_id_only_when_the_id_came_first() -> None:
    late = "batch: demo\njobs:\n  - prompt: [[[x]]]\n    id: beach\n  - prompt: *nowhere\n"
    problem = refused(late.replace("[[[x]]]", "[" * 70 + "]" * 70))
    assert (problem.job, problem.field) == ("#1", "prompt[0][0][0][0][0][0][0]...")
    outside = refused("batch: demo\nmatrix:\n  seed: " + "[" * 70 + "]" * 70 + "\n")
    assert (outside.job, outside.field) == (None, "matrix.seed[0][0][0][0][0][0]...")


def test_a_document_over_the_size_limit_is_refused_at_the_line_it_crosses(
    monkeypatch: pytest.MonkeyPatch, manifest_path: Path
) -> None:
    monkeypatch.setattr(yamlsafe, "MAX_MANIFEST_BYTES", 100)
    manifest_path.write_text("# 9 bytes\n" * 10, encoding="utf-8")  # 100 bytes: fits
    assert read_manifest(manifest_path, "m.yaml") == "# 9 bytes\n" * 10
    manifest_path.write_text("# 9 bytes\n" * 10 + "x", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_manifest(manifest_path, "m.yaml")
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == ("m.yaml", 11)
    assert problem.message == (
        "a manifest may hold at most 100 bytes; this one is 101 bytes "
        "(the limit is crossed on this line)"
    )
    with pytest.raises(InputError) as caught:
        load_yaml("# 9 bytes\n" * 10 + "x", "m.yaml")  # text given directly: the same bound
    assert caught.value.problems == [problem]


def test_a_manifest_may_come_from_a_pipe_but_not_a_directory(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"batch: demo\n")
    os.close(write_end)
    try:
        assert read_manifest(Path(f"/dev/fd/{read_end}"), "<(gen)") == "batch: demo\n"
    finally:
        os.close(read_end)
    with pytest.raises(InputError) as caught:
        load_manifest(tmp_path)
    [problem] = caught.value.problems
    assert problem.message == "cannot read the manifest: is a directory, not a regular file"


def test_an_endless_manifest_is_read_only_up_to_the_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(yamlsafe, "MAX_MANIFEST_BYTES", 1_000)
    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)

    def write_forever() -> None:
        try:
            with open(fifo, "wb") as fh:
                while True:
                    fh.write(b"# more\n" * 100)
        except BrokenPipeError:  # the reader stopped at the limit and closed the pipe
            pass

    writer = threading.Thread(target=write_forever)
    writer.start()
    try:
        with pytest.raises(InputError) as caught:
            read_manifest(fifo, "m.yaml")
    finally:
        # Had the reader never opened the pipe, this open and close would release the
        # writer (which then finds no reader), so the test cannot hang.
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join()
    [problem] = caught.value.problems
    assert problem.message.startswith("a manifest may hold at most 1,000 bytes; this one holds")


# -- jobs_from data files -----------------------------------------------------------------------


def from_file(name: str) -> str:
    return f"batch: demo\nmodel: {LITE}\njobs_from: {name}\n"


def test_a_data_file_over_its_size_limit_is_refused_at_the_line_it_crosses(
    problems_of: ProblemsOf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources_module, "MAX_DATA_FILE_BYTES", 60)
    rows = tmp_path / "rows.csv"
    rows.write_text("id,image,prompt\n" + "a,beach.jpg,x\n" * 4, encoding="utf-8")  # 72 bytes
    [problem] = problems_of(from_file("rows.csv"))
    assert (problem.file, problem.line) == (str(rows), 5)  # bytes 58 and 59 are on line 5
    assert problem.message.startswith("a jobs_from file may hold at most 60 bytes")


def test_data_files_share_one_budget_of_values(
    problems_of: ProblemsOf, load: Load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources_module, "MAX_DATA_VALUES", 9)
    (tmp_path / "a.csv").write_text("id,image,prompt\na,beach.jpg,x\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"id": "b", "image": "beach.jpg"}\n', encoding="utf-8")
    assert len(load(f"batch: demo\nmodel: {LITE}\njobs_from: [a.csv]\n").jobs) == 1
    # 6 CSV cells + 5 JSON values (the object, 2 keys, 2 values) = 11 > 9.
    problems = problems_of(f"batch: demo\nmodel: {LITE}\njobs_from: [a.csv, b.jsonl]\n")
    over = [p for p in problems if "values" in p.message]
    assert [(p.file, p.line) for p in over] == [(str(tmp_path / "b.jsonl"), 1)]
    assert over[0].message.startswith("the jobs_from files hold more than 9 values")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "values are nested more than 64 levels deep",
            id="deep",
        ),
        pytest.param(
            '{"prompt": ' + "[" * 64 + "]" * 64 + "}",
            "values are nested more than 64 levels deep",
            id="one-level-too-deep",
        ),
        pytest.param(
            '{"seed": ' + "9" * 101 + "}",
            "a whole number may have at most 100 digits",
            id="long-number",
        ),
        pytest.param(
            '{"seed": ' + "9" * 5_000 + "}",
            "a whole number may have at most 100 digits",
            id="number-python-refuses",
        ),
    ],
)
def test_a_hostile_jsonl_line_is_a_problem_at_its_line(
    problems_of: ProblemsOf, tmp_path: Path, line: str, message: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "image": "beach.jpg", "prompt": "x"}\n' + line + "\n")
    [problem] = problems_of(from_file("rows.jsonl"))
    assert (problem.file, problem.line, problem.job, problem.message) == (
        str(rows),
        2,
        "line 2",
        message,
    )


def test_jsonl_inside_the_bounds_is_read(load: Load, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"id": "a", "image": "beach.jpg", "prompt": "x", "n": ' + "9" * 100 + "}\n"
        '{"id": "b", "image": "beach.jpg", "prompt": "y", "x": ' + "[" * 63 + "]" * 63 + "}\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as caught:  # "n" and "x" are no inputs, but were read
        load(from_file("rows.jsonl"))
    problems = caught.value.problems
    assert [(p.line, p.job, p.field) for p in problems] == [(1, "a", "n"), (2, "b", "x")]


def test_a_jsonl_line_over_its_length_limit(
    problems_of: ProblemsOf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources_module, "MAX_JSONL_LINE_BYTES", 50)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "image": "beach.jpg", "prompt": "a long prompt"}\n')
    [problem] = problems_of(from_file("rows.jsonl"))
    assert (problem.line, problem.message) == (1, "a JSONL line may hold at most 50 bytes")


def test_a_csv_cell_over_the_csv_modules_limit(problems_of: ProblemsOf, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,image,prompt\na,beach.jpg,x\nb,beach.jpg," + "x" * 200_000 + "\n")
    [problem] = problems_of(from_file("rows.csv"))
    assert (problem.file, problem.line) == (str(rows), 3)
    assert problem.message == (
        "the CSV file cannot be read from this line on: field larger than field limit (131072)"
    )


def test_a_csv_number_python_would_refuse_stays_text(
    problems_of: ProblemsOf, tmp_path: Path
) -> None:
    rows = "id,image,prompt,duration\na,beach.jpg,x," + "9" * 5000 + "\n"
    (tmp_path / "rows.csv").write_text(rows)
    [problem] = problems_of(from_file("rows.csv"))
    assert problem.field == "duration"
    assert problem.message.startswith("'99999")
    assert "is not a whole number" in problem.message
    assert len(str(problem)) < 400


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_data_file_must_be_a_regular_file(
    problems_of: ProblemsOf, manifest_path: Path, tmp_path: Path, kind: str
) -> None:
    rows = tmp_path / "rows.csv"
    if kind == "fifo":
        os.mkfifo(rows)
    elif kind == "directory":
        rows.mkdir()
    else:
        rows.symlink_to("/dev/zero")
    words = {
        "fifo": "a named pipe (FIFO)",
        "directory": "a directory",
        "device": "a character device",
    }
    [problem] = problems_of(from_file("rows.csv"))
    assert (problem.file, problem.line, problem.field) == (str(manifest_path), 3, "jobs_from")
    assert problem.message == f"cannot read rows.csv: it is {words[kind]}, not a regular file"


def test_a_data_file_that_is_not_utf8_names_its_line(
    problems_of: ProblemsOf, tmp_path: Path
) -> None:
    (tmp_path / "rows.csv").write_bytes(b"id,image,prompt\na,beach.jpg,caf\xe9\n")
    [problem] = problems_of(from_file("rows.csv"))
    assert problem.message.startswith("cannot read rows.csv: it is not UTF-8 text (")
    assert problem.message.endswith(" on its line 2)")


def test_crlf_data_files_read_as_before(load: Load, tmp_path: Path) -> None:
    # Line breaks inside a quoted cell become "\n", as reading the file as text always did.
    rows = b'id,image,prompt\r\na,beach.jpg,"two\r\nlines"\r\nb,beach.jpg,y\r\n'
    (tmp_path / "rows.csv").write_bytes(rows)
    jobs = load(from_file("rows.csv")).jobs
    assert [(j.id, j.payload["prompt"], j.source_line) for j in jobs] == [
        ("a", "two\nlines", 2),
        ("b", "y", 4),
    ]


# -- values shown in problems ------------------------------------------------------------------

BIG = chain(5, 9)  # 59,049 words once written out: inside the bounds, far too long to show
LONG = "x" * 100_000


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(job(prompt=BIG), "prompt", id="prompt"),
        pytest.param(job(f"    resolution: {BIG}\n"), "resolution", id="enum-with-a-value-table"),
        pytest.param(job(f"    duration: {BIG}\n"), "duration", id="enum-number"),
        pytest.param(job(f"    last_image: {BIG}\n"), "last_image", id="image"),
        pytest.param(job(f"    repeat: {BIG}\n"), "repeat", id="repeat"),
        pytest.param(job(f"    image_fit: {BIG}\n"), "image_fit", id="image-fit"),
        pytest.param(job().replace("id: beach", f"id: {BIG}"), "id", id="id"),
        pytest.param(job().replace("batch: demo", f"batch: {BIG}"), "batch", id="batch"),
        pytest.param(job(f"    model: {BIG}\n"), "model", id="model"),
        pytest.param(job() + f"matrix:\n  resolution: {BIG}\n", "resolution", id="matrix-value"),
        pytest.param(
            job() + f"limits:\n  max_in_flight: {BIG}\n", "limits.max_in_flight", id="limits"
        ),
        pytest.param(job() + f"  - {BIG}\n", "jobs", id="a-job-that-is-a-list"),
        pytest.param(job() + f"jobs_from: {BIG}\n", "jobs_from", id="jobs-from"),
        pytest.param(job() + f"jobs_from: {LONG}.txt\n", "jobs_from", id="jobs-from-name"),
        pytest.param(job(f"    model: acme/{LONG}\n"), "model", id="unknown-model"),
        pytest.param(
            job(f"    ratio: {BIG}\n").replace(LITE, RUNWAY).replace("    image: beach.jpg\n", ""),
            "ratio",
            id="universal-value-table",
        ),
    ],
)
def test_a_huge_value_is_shown_short_wherever_it_is_written(
    problems_of: ProblemsOf, text: str, field: str
) -> None:
    problems = problems_of(text)
    assert field in [p.field for p in problems]
    for problem in problems:
        assert len(str(problem)) < 700, str(problem)
        assert len(problem.job or "") <= SHOWN_CHARS  # JSON output shows it too


class NoStr(list[object]):
    """A list that must never be written out whole."""

    def __str__(self) -> str:
        raise AssertionError("str() of the whole list")

    __repr__ = __str__


def test_a_list_for_a_value_table_is_refused_without_being_written_out() -> None:
    runway = builtin_catalog().require(RUNWAY)
    _native, errors = to_native(
        runway, {"prompt": "x", "ratio": NoStr(["9:16"] * 1000)}, text_values=False
    )
    [error] = [e for e in errors if e.field == "ratio"]
    assert error.message.startswith("['9:16', '9:16'")
    assert "is not available for this model" in error.message
