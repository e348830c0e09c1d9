"""Problems found in user input, each pinned to the place a user has to fix.

A :class:`Problem` names the file and line, the job and the field, says what is wrong and,
where it can, what is allowed. Validation collects every problem it can find before it
stops, so a user fixes a manifest in one pass instead of one error per run.

>>> print(Problem("prompt is required", file="m.yaml", line=4, job="beach", field="prompt"))
m.yaml:4: job 'beach': field 'prompt': prompt is required

Every value a message shows goes through :func:`show_value`: input may hold a value of any size
(a megabyte of text, a list of a million items) and the message about it must stay short.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: Characters of one value shown in a message (longer ones end in ``...``).
SHOWN_CHARS = 80
#: A job's name or a field's name may be longer: it is how the user finds the job (a file
#: name of 255 bytes still fits).
SHOWN_NAME_CHARS = 300
#: Items of one list or mapping, and levels of nesting, looked at before ``...``.
SHOWN_ITEMS = 10
SHOWN_DEPTH = 4


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
            parts.append(f"job {show_value(self.job, SHOWN_NAME_CHARS)}")
        if self.model is not None:
            parts.append(f"model {clipped(self.model, SHOWN_NAME_CHARS)}")
        if self.field is not None:
            parts.append(f"field {show_value(self.field, SHOWN_NAME_CHARS)}")
        text = ": ".join(parts) + f": {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form for ``--json`` output."""
        return {
            "file": self.file,
            "line": self.line,
            "job": None if self.job is None else clipped(self.job, SHOWN_NAME_CHARS),
            "model": None if self.model is None else clipped(self.model, SHOWN_NAME_CHARS),
            "field": None if self.field is None else clipped(self.field, SHOWN_NAME_CHARS),
            "message": self.message,
            "hint": self.hint,
        }


class InputError(Exception):
    """User input that cannot be used; carries every :class:`Problem` found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The most similar known word, for "did you mean" hints.

    >>> closest("modle", ["model", "matrix", "jobs"])
    'model'
    """
    if not isinstance(word, str):  # a YAML key may be a number, a date, null ...
        return None
    options = list(choices)
    # A word over 2.4 times the longest choice cannot reach difflib's 0.6 ratio; saying so
    # up front keeps a megabyte-long key from costing a megabyte of work per job.
    if not options or len(word) > 2.4 * max(len(option) for option in options):
        return None
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: object, choices: Iterable[str]) -> str | None:
    """A ``did you mean 'x'?`` hint, or ``None`` when nothing is close."""
    match = closest(word, choices)
    return f"did you mean {show_value(match)}?" if match else None


def clipped(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when it was cut.

    >>> clipped("abcdefghij", 8)
    'abcde...'
    """
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def show_value(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters long.

    Small values read exactly as ``repr`` writes them. A long one is cut, and a list or
    mapping is walked for at most :data:`SHOWN_ITEMS` items and :data:`SHOWN_DEPTH` levels,
    so showing a value costs about ``limit`` characters of work however big it is (a YAML
    alias bomb, a million-item list, a 10 MB string, a 4,000-digit number).

    >>> show_value("4k"), show_value([1, "a", None]), show_value({"a": (1,)})
    ("'4k'", "[1, 'a', None]", "{'a': (1,)}")
    >>> show_value("x" * 1_000_000, 12)
    "'xxxxxxxx..."
    >>> show_value(list(range(10**6)))
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]'
    >>> show_value([[[[[[1]]]]]])
    '[[[[[...]]]]]'
    """
    parts: list[str] = []
    _render(value, parts, [limit + 1], SHOWN_DEPTH)
    return clipped("".join(parts), limit)


def _render(value: object, out: list[str], budget: list[int], depth: int) -> None:
    """Append pieces of ``repr(value)`` to ``out`` until ``budget[0]`` characters are used."""
    if budget[0] <= 0:
        return
    if isinstance(value, dict | list | tuple | set | frozenset):
        _render_items(value, out, budget, depth)
        return
    if isinstance(value, str | bytes | bytearray):
        # Cut before repr: repr of a 10 MB string would build 10 MB first.
        text = repr(value[: budget[0]])
    else:
        try:
            text = repr(value)
        except ValueError:  # an int with more digits than Python converts to text
            text = "<a number too long to show>"
    out.append(text)
    budget[0] -= len(text)


def _render_items(
    value: dict[object, object]
    | list[object]
    | tuple[object, ...]
    | set[object]
    | frozenset[object],
    out: list[str],
    budget: list[int],
    depth: int,
) -> None:
    if isinstance(value, dict):
        opening, closing = "{", "}"
    elif isinstance(value, list):
        opening, closing = "[", "]"
    elif isinstance(value, tuple):
        opening, closing = "(", ",)" if len(value) == 1 else ")"
    elif not value:
        out.append(f"{type(value).__name__}()")
        budget[0] -= len(out[-1])
        return
    else:
        opening = "{" if isinstance(value, set) else "frozenset({"
        closing = "}" if isinstance(value, set) else "})"
    out.append(opening)
    budget[0] -= len(opening)
    if value and depth <= 0:
        out.append("...")
        budget[0] -= 3
    elif value:
        for index, item in enumerate(value):
            if budget[0] <= 0:
                return
            if index:
                out.append(", ")
                budget[0] -= 2
            if index == SHOWN_ITEMS:
                out.append("...")
                budget[0] -= 3
                break
            if isinstance(value, dict):
                _render(item, out, budget, depth - 1)
                out.append(": ")
                budget[0] -= 2
                item = value[item]
            _render(item, out, budget, depth - 1)
    out.append(closing)
    budget[0] -= len(closing)
