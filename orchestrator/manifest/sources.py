"""Where a manifest's jobs come from: its ``jobs:`` list and ``jobs_from:`` CSV/JSONL files.

Every job, whatever its source, becomes a :class:`RawJob` that remembers its file and line,
so a problem in row 812 of a CSV file is reported as ``prompts.csv:813``.

A data file is bounded like the manifest (:mod:`orchestrator.manifest.yamlbounds`): it must
be a regular file (a named pipe would block ``validate`` forever) of at most
:data:`MAX_DATA_FILE_BYTES`, holding at most :data:`MAX_DATA_VALUES` values (CSV cells or
JSON values, which cost memory once read); a JSONL line is at most
:data:`MAX_JSONL_LINE_BYTES` and nests at most ``MAX_DEPTH`` levels, and a whole number has
at most ``MAX_NUMBER_DIGITS`` digits.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.inputfiles import FileMissing, FileRefused, format_bytes, read_head
from orchestrator.manifest.yamlbounds import MAX_DEPTH, MAX_NUMBER_DIGITS, SPLIT_HINT
from orchestrator.manifest.yamlsafe import LocatedDict, LocatedList
from orchestrator.problems import Problem, clipped, show_value

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

MAX_DATA_FILE_BYTES = 32 * 1024 * 1024
MAX_DATA_VALUES = 1_000_000
MAX_JSONL_LINE_BYTES = 1024 * 1024


class _Budget:
    """Values left for the data files of one manifest, counted as rows are read."""

    def __init__(self) -> None:
        self.left = MAX_DATA_VALUES

    def take(self, count: int) -> bool:
        """Spend ``count`` values; False once the budget is gone."""
        self.left -= count
        return self.left >= 0


class _Refused(Exception):
    """A data file refused as a whole, with the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _TooDeep(Exception):
    pass


class _LongNumber(Exception):
    pass


@dataclass
class RawJob:
    """One job as written, before defaults, matrix and model mapping."""

    fields: Mapping[str, Any]
    file: str
    line: int | None
    label: str
    #: Values are text that still needs converting to the schema's types (CSV cells).
    from_text: bool = False
    field_lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, name: str) -> int | None:
        return self.field_lines.get(name, self.line)


def inline_jobs(jobs: Any, file: str, line: int | None, problems: list[Problem]) -> list[RawJob]:
    """The ``jobs:`` list of a manifest."""
    if jobs is None:
        return []
    if not isinstance(jobs, list):
        problems.append(
            Problem("'jobs' must be a list of jobs", file=file, line=line, field="jobs")
        )
        return []
    out = []
    for index, item in enumerate(jobs):
        item_line = jobs.line_of(index) if isinstance(jobs, LocatedList) else line
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    f"job #{index + 1} must be a mapping of fields, got {show_value(item)}",
                    file=file,
                    line=item_line,
                    field="jobs",
                )
            )
            continue
        lines = dict(item.key_lines) if isinstance(item, LocatedDict) else {}
        own_id = item.get("id")
        label = own_id if isinstance(own_id, str) else f"#{index + 1}"
        named = _text_keys(item, file, lines.get, item_line, problems, label)
        if named is None:
            continue
        out.append(
            RawJob(
                fields=named,
                file=file,
                line=item_line,
                label=f"#{index + 1}",
                field_lines=lines,
            )
        )
    return out


def _text_keys(
    mapping: Mapping[Any, Any],
    file: str,
    line_of: Callable[[Any], int | None],
    line: int | None,
    problems: list[Problem],
    job: str,
) -> Mapping[str, Any] | None:
    """``mapping`` when every key is text (a field name), else ``None`` with the problems."""
    bad = [key for key in mapping if not isinstance(key, str)]
    problems.extend(
        Problem(
            f"a field name must be text, got {show_value(key)}",
            file=file,
            line=line_of(key) or line,
            job=job,
            hint="quote it",
        )
        for key in bad
    )
    return None if bad else mapping


def jobs_from_files(
    value: Any, base_dir: Path, file: str, line: int | None, problems: list[Problem]
) -> list[RawJob]:
    """Jobs from every file ``jobs_from:`` names (one path or a list of paths)."""
    if value is None:
        return []
    paths = value if isinstance(value, list) else [value]
    out: list[RawJob] = []
    budget = _Budget()
    for entry in paths:
        if not isinstance(entry, str) or not entry:
            problems.append(
                Problem("must be a CSV or JSONL file path", file=file, line=line, field="jobs_from")
            )
            continue
        path = base_dir / entry
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson"):
            problems.append(
                Problem(
                    f"{show_value(entry)} is neither .csv nor .jsonl",
                    file=file,
                    line=line,
                    field="jobs_from",
                )
            )
            continue
        where = str(Path(file).parent / entry) if file else entry
        try:
            text = _read_data_file(path, where)
        except FileMissing:
            problem = Problem(f"file not found: {entry}", file=file, line=line, field="jobs_from")
            problems.append(problem)
            continue
        except FileRefused as exc:
            problems.append(
                Problem(
                    f"cannot read {entry}: it {exc.reason}", file=file, line=line, field="jobs_from"
                )
            )
            continue
        except _Refused as exc:
            problems.append(exc.problem)
            continue
        reader = _csv_rows if suffix == ".csv" else _jsonl_rows
        out.extend(reader(text, where, problems, budget))
    return out


def _read_data_file(path: Path, where: str) -> str:
    """A data file's text, its line breaks made ``\n`` as reading in text mode would.

    Raises :class:`FileRefused` (not a regular file, unreadable, not UTF-8) or
    :class:`_Refused` (too big: said in the data file, at the line where the limit is crossed).
    """
    head = read_head(path, MAX_DATA_FILE_BYTES)
    if len(head) > MAX_DATA_FILE_BYTES:
        raise _Refused(
            Problem(
                f"a jobs_from file may hold at most {format_bytes(MAX_DATA_FILE_BYTES)} "
                "(the limit is crossed on this line)",
                file=where,
                line=head[:MAX_DATA_FILE_BYTES].count(b"\n") + 1,
                hint="split it into several files: jobs_from takes a list",
            )
        )
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise FileRefused(f"is not UTF-8 text ({exc.reason} on its line {line})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _out_of_values(file: str, line: int) -> Problem:
    return Problem(
        f"the jobs_from files hold more than {MAX_DATA_VALUES:,} values (the limit is "
        "crossed on this line)",
        file=file,
        line=line,
        hint=SPLIT_HINT.split(", or")[0] + " into several batches",
    )


def _csv_rows(text: str, file: str, problems: list[Problem], budget: _Budget) -> Iterator[RawJob]:
    # newline="" keeps line breaks inside quoted cells (multi-line prompts) and lets
    # ``line_num`` count physical lines, so rows after such a cell keep their true line.
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
    except StopIteration:
        problems.append(Problem("the CSV file is empty (it needs a header row)", file=file, line=1))
        return
    except csv.Error as exc:
        problems.append(_csv_error(exc, file, rows.line_num))
        return
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or "" in header:
        problems.append(
            Problem(
                "the header row needs distinct, non-empty column names",
                file=file,
                line=1,
                hint=f"got {show_value(header)}",
            )
        )
        return
    if not budget.take(len(header)):
        problems.append(_out_of_values(file, 1))
        return
    end = rows.line_num
    for index in itertools.count(1):
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(_csv_error(exc, file, rows.line_num))
            return
        number, end = end + 1, rows.line_num
        if not budget.take(len(row)):
            problems.append(_out_of_values(file, number))
            return
        if not any(cell.strip() for cell in row):
            continue
        label = f"row {index}"
        if len(row) != len(header):
            missing = header[len(row) :] if len(row) < len(header) else []
            what = (
                f"missing column(s) {clipped(', '.join(missing))}"
                if missing
                else f"{len(row) - len(header)} more cell(s) than the header has"
            )
            problems.append(
                Problem(
                    f"{label} has {len(row)} cells but the header has {len(header)}: {what}",
                    file=file,
                    line=number,
                    job=label,
                )
            )
            continue
        fields = {name: cell for name, cell in zip(header, row, strict=True) if cell.strip() != ""}
        yield RawJob(fields=fields, file=file, line=number, label=label, from_text=True)


def _csv_error(exc: csv.Error, file: str, line: int) -> Problem:
    """A row the csv module cannot read (a cell over its 131,072-character limit ...)."""
    return Problem(
        f"the CSV file cannot be read from this line on: {clipped(str(exc))}",
        file=file,
        line=line,
        hint="a cell may hold at most 131,072 characters; a prompt needs far fewer",
    )


def _jsonl_rows(text: str, file: str, problems: list[Problem], budget: _Budget) -> Iterator[RawJob]:
    # Split on line feeds only: str.splitlines() would also split inside a JSON string
    # holding U+2028 or other Unicode line separators, which JSON allows unescaped.
    for number, raw_line in enumerate(text.split("\n"), start=1):
        if not raw_line.strip():
            continue
        label = f"line {number}"
        problem = functools.partial(_line_problem, file=file, line=number)
        if len(raw_line) > MAX_JSONL_LINE_BYTES:  # characters: never fewer than its bytes
            problems.append(
                problem(f"a JSONL line may hold at most {format_bytes(MAX_JSONL_LINE_BYTES)}")
            )
            continue
        try:
            item = json.loads(raw_line, parse_int=_bounded_int)
            values = _count_values(item, MAX_DEPTH)
        except json.JSONDecodeError as exc:
            problems.append(problem(f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except _LongNumber:
            problems.append(
                problem(
                    f"a whole number may have at most {MAX_NUMBER_DIGITS} digits",
                    "quote it to make it text",
                )
            )
            continue
        except (_TooDeep, RecursionError):
            problems.append(
                problem(f"values are nested more than {MAX_DEPTH} levels deep", "write it flat")
            )
            continue
        if not budget.take(values):
            problems.append(_out_of_values(file, number))
            return
        if not isinstance(item, dict):
            problems.append(problem("each line must be a JSON object"))
            continue
        yield RawJob(fields=item, file=file, line=number, label=label)


def _line_problem(message: str, hint: str | None = None, *, file: str, line: int) -> Problem:
    return Problem(message, file=file, line=line, job=f"line {line}", hint=hint)


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _LongNumber
    return int(text)


def _count_values(value: Any, depth: int) -> int:
    """How many values ``value`` holds; raises :class:`_TooDeep` past ``depth`` levels."""
    if depth <= 0:
        raise _TooDeep
    if isinstance(value, dict):
        return 1 + sum(_count_values(v, depth - 1) + 1 for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_values(v, depth - 1) for v in value)
    return 1
