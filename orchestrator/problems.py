"""Problems found in user input, each pinned to the place a user has to fix.

A :class:`Problem` names the file and line, the job and the field, says what is wrong and,
where it can, what is allowed. Validation collects every problem it can find before it
stops, so a user fixes a manifest in one pass instead of one error per run.

>>> print(Problem("prompt is required", file="m.yaml", line=4, job="beach", field="prompt"))
m.yaml:4: job 'beach': field 'prompt': prompt is required
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a manifest, a CSV/JSONL row, an image or a price table."""

    message: str
    file: str | None = None
    line: int | None = None
    job: str | None = None
    field: str | None = None
    model: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [where]
        if self.job is not None:
            parts.append(f"job {self.job!r}")
        if self.model is not None:
            parts.append(f"model {self.model}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        text = ": ".join(parts) + f": {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form for ``--json`` output."""
        return {
            "file": self.file,
            "line": self.line,
            "job": self.job,
            "model": self.model,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


class InputError(Exception):
    """User input that cannot be used; carries every :class:`Problem` found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most similar known word, for "did you mean" hints.

    >>> closest("modle", ["model", "matrix", "jobs"])
    'model'
    """
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A ``did you mean 'x'?`` hint, or ``None`` when nothing is close."""
    match = closest(word, choices)
    return f"did you mean {match!r}?" if match else None
