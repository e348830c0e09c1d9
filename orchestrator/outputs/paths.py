"""Output paths: a manifest pattern rendered per job, never outside the output root.

>>> render_output_path("{batch}/{model_slug}/{id}{variant}.mp4",
...                    {"batch": "b", "model_slug": "m", "id": "beach", "variant": "_seed-1"})
'b/m/beach_seed-1.mp4'
>>> try:
...     render_output_path("../{id}.mp4", {"id": "x"})
... except OutputPathError as exc:
...     print(exc)
pattern '../{id}.mp4' gives '../x.mp4', which leaves the output folder ('..' is not allowed)
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

#: Placeholders a pattern may use.
PATTERN_FIELDS = (
    "batch",
    "model_slug",
    "model",
    "id",
    "variant",
    "job",
    "replicate",
    "seed",
    "key",
)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._ -]+$")
_DRIVE = re.compile(r"^[A-Za-z]:")
#: The longest file name (UTF-8 bytes) nearly every file system allows, and the length of the
#: random tag in a temporary download name (``secrets.token_hex(4)``).
NAME_MAX = 255
PART_TAG_LENGTH = 8
_PART_SUFFIX = ".part"
#: A hashed prefix's hex digits: 128 bits, so two targets in one folder never share one.
_HASHED_PREFIX_LENGTH = 32


class OutputPathError(ValueError):
    """A pattern or a rendered path that cannot be used."""


def pattern_fields(pattern: str) -> list[str]:
    """The placeholders a pattern uses; raise :class:`OutputPathError` if it is malformed."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise OutputPathError(f"pattern {pattern!r} is malformed: {exc}") from exc
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            raise OutputPathError(
                f"pattern {pattern!r}: write plain {{{name}}} placeholders, without format specs"
            )
        if name not in PATTERN_FIELDS:
            raise OutputPathError(
                f"pattern {pattern!r} uses unknown placeholder {{{name}}}; "
                f"allowed: {', '.join('{' + f + '}' for f in PATTERN_FIELDS)}"
            )
        names.append(name)
    return names


def render_output_path(pattern: str, values: Mapping[str, object]) -> str:
    """The relative output path of one job; raise :class:`OutputPathError` if it escapes."""
    _checked_pattern(pattern)
    rendered = pattern.format_map({k: "" if v is None else v for k, v in values.items()})
    try:
        return check_relative(rendered)
    except OutputPathError as exc:
        reason = str(exc).removeprefix(f"path {rendered!r} ")
        raise OutputPathError(f"pattern {pattern!r} gives {rendered!r}, which {reason}") from None


@functools.lru_cache(maxsize=64)
def _checked_pattern(pattern: str) -> None:
    """Parse a pattern once; a 100,000-job batch renders the same one for every job."""
    pattern_fields(pattern)


def check_relative(path: str) -> str:
    """Normalise a relative path and refuse anything that could leave the output root."""
    if "\\" in path or "\x00" in path:
        raise OutputPathError(f"path {path!r} contains a backslash or NUL character")
    if path.startswith("/") or _DRIVE.match(path):
        raise OutputPathError(f"path {path!r} is absolute; paths are relative to the output folder")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise OutputPathError(f"path {path!r} is empty")
    for part in parts:
        if part == "..":
            raise OutputPathError(f"path {path!r} leaves the output folder ('..' is not allowed)")
        if not _SAFE_COMPONENT.match(part) or part.startswith(("-", " ")) or part.endswith(" "):
            raise OutputPathError(
                f"path {path!r} has an unsafe path component {part!r} "
                "(letters, digits, '.', '_', '-' and spaces only)"
            )
    return "/".join(parts)


def resolve_inside(root: Path, relative: str) -> Path:
    """The absolute path of ``relative`` under ``root``, proven not to leave it.

    Symlinks inside the root are resolved too, so a link pointing outside is refused.
    """
    base = root.resolve()
    target = (base / check_relative(relative)).resolve()
    if not target.is_relative_to(base):
        raise OutputPathError(f"path {relative!r} resolves outside the output folder {root}")
    return target


def part_prefix(name: str) -> str:
    """The start of every temporary name for the file ``name``: ``.<name>`` when the whole
    temporary name (``.<name>.<8 hex>.part``) fits in :data:`NAME_MAX` UTF-8 bytes, else
    ``.<first 32 hex digits of sha256(name)>``, which still names one target, always the same.

    A folder's temporary files can be indexed by ``prefix[1:]``, the text between the leading
    ``'.'`` and the last ``'.<tag>.part'``, and a target looked up by
    ``part_prefix(target.name)[1:]``.

    >>> part_prefix("beach.mp4")
    '.beach.mp4'
    >>> long = "x" * 240 + ".mp4"
    >>> hashed = part_prefix(long)
    >>> len(hashed), hashed == part_prefix(long), hashed == part_prefix("y" * 240 + ".mp4")
    (33, True, False)
    >>> part_prefix("x" * 236 + ".mp4") == "." + "x" * 236 + ".mp4"  # 255 bytes exactly
    True
    """
    plain = "." + name
    longest = len(plain.encode("utf-8")) + 1 + PART_TAG_LENGTH + len(_PART_SUFFIX)
    if longest <= NAME_MAX:
        return plain
    return "." + hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASHED_PREFIX_LENGTH]


def part_name(name: str, tag: str) -> str:
    """The temporary name every writer of ``name`` writes to first (a download, a sidecar,
    the report, an export: see :mod:`~orchestrator.outputs.atomicwrite`).

    ``tag`` tells concurrent writers apart; with an 8-character tag the result always fits in
    :data:`NAME_MAX` bytes.

    >>> part_name("beach.mp4", "0a1b2c3d")
    '.beach.mp4.0a1b2c3d.part'
    >>> name = "é" * 119 + ".mp4"  # 242 bytes in UTF-8: the plain form would be 257
    >>> long = part_name(name, "0a1b2c3d")
    >>> len(long.encode()), long.endswith(".0a1b2c3d.part")
    (47, True)
    >>> part_target(long) == part_prefix(name)[1:]
    True
    """
    return f"{part_prefix(name)}.{tag}{_PART_SUFFIX}"


def part_target(part: str) -> str | None:
    """The prefix key of a temporary name (what :func:`part_prefix` gave, without its dot), or
    ``None`` when ``part`` is not a temporary name.

    >>> part_target(part_name("beach.mp4", "0a1b2c3d"))
    'beach.mp4'
    >>> part_target("beach.mp4") is None
    True
    """
    if not (part.startswith(".") and part.endswith(_PART_SUFFIX)):
        return None
    prefix, _dot, _tag = part[1 : -len(_PART_SUFFIX)].rpartition(".")
    return prefix or None
