"""Where a manifest's jobs come from: its ``jobs:`` list and ``jobs_from:`` CSV/JSONL files.

Every job, whatever its source, becomes a :class:`RawJob` that remembers its file and line,
so a problem in row 812 of a CSV file is reported as ``prompts.csv:813``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.manifest.yamlsafe import LocatedDict, LocatedList
from orchestrator.problems import Problem


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
                    f"job #{index + 1} must be a mapping of fields, got {item!r}",
                    file=file,
                    line=item_line,
                    field="jobs",
                )
            )
            continue
        lines = dict(item.key_lines) if isinstance(item, LocatedDict) else {}
        out.append(
            RawJob(
                fields=item,
                file=file,
                line=item_line,
                label=f"#{index + 1}",
                field_lines=lines,
            )
        )
    return out


def jobs_from_files(
    value: Any, base_dir: Path, file: str, line: int | None, problems: list[Problem]
) -> list[RawJob]:
    """Jobs from every file ``jobs_from:`` names (one path or a list of paths)."""
    if value is None:
        return []
    paths = value if isinstance(value, list) else [value]
    out: list[RawJob] = []
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
                    f"{entry!r} is neither .csv nor .jsonl",
                    file=file,
                    line=line,
                    field="jobs_from",
                )
            )
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            problems.append(
                Problem(f"file not found: {entry}", file=file, line=line, field="jobs_from")
            )
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(
                Problem(f"cannot read {entry}: {exc}", file=file, line=line, field="jobs_from")
            )
            continue
        shown = str(Path(file).parent / entry) if file else entry
        reader = _csv_rows if suffix == ".csv" else _jsonl_rows
        out.extend(reader(text, shown, problems))
    return out


def _csv_rows(text: str, file: str, problems: list[Problem]) -> Iterator[RawJob]:
    # newline="" keeps line breaks inside quoted cells (multi-line prompts) and lets
    # ``line_num`` count physical lines, so rows after such a cell keep their true line.
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
    except StopIteration:
        problems.append(Problem("the CSV file is empty (it needs a header row)", file=file, line=1))
        return
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or "" in header:
        problems.append(
            Problem(
                "the header row needs distinct, non-empty column names",
                file=file,
                line=1,
                hint=f"got {header}",
            )
        )
        return
    end = rows.line_num
    for index, row in enumerate(rows, start=1):
        number, end = end + 1, rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        label = f"row {index}"
        if len(row) != len(header):
            missing = header[len(row) :] if len(row) < len(header) else []
            what = (
                f"missing column(s) {', '.join(missing)}"
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


def _jsonl_rows(text: str, file: str, problems: list[Problem]) -> Iterator[RawJob]:
    # Split on line feeds only: str.splitlines() would also split inside a JSON string
    # holding U+2028 or other Unicode line separators, which JSON allows unescaped.
    for number, raw_line in enumerate(text.split("\n"), start=1):
        if not raw_line.strip():
            continue
        label = f"line {number}"
        try:
            item = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    f"not valid JSON: {exc.msg} (column {exc.colno})",
                    file=file,
                    line=number,
                    job=label,
                )
            )
            continue
        if not isinstance(item, dict):
            problems.append(
                Problem("each line must be a JSON object", file=file, line=number, job=label)
            )
            continue
        yield RawJob(fields=item, file=file, line=number, label=label)
