"""Safe YAML loading that remembers where every key came from.

PyYAML's safe loader builds plain dicts and lists; error messages need line numbers, so
mappings load as :class:`LocatedDict` (a dict with ``line`` and ``key_lines``) and
sequences as :class:`LocatedList` (a list with ``line`` and ``item_lines``). Tags that
construct Python objects are refused (the safe loader knows none of them), and a key
written twice in one mapping is an error instead of a silent override (a key merged in with
``<<: *anchor`` may still be overridden: that is what merge keys are for).

A manifest is bounded while it is read (see :mod:`orchestrator.manifest.yamlbounds`): an
alias bomb, a document nested 50,000 levels deep or a huge one is refused with its line
before any value is built from it.

>>> data = load_yaml("batch: demo\\njobs:\\n  - prompt: hi\\n", "m.yaml")
>>> data.key_lines["jobs"], data["jobs"].item_lines[0]
(2, 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.inputfiles import FileMissing, FileRefused, file_size, format_bytes, read_head
from orchestrator.manifest.yamlbounds import (
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    SPLIT_HINT,
    BoundedLoader,
    LimitExceeded,
)
from orchestrator.problems import InputError, Problem, show_value

if TYPE_CHECKING:
    from pathlib import Path


class LocatedDict(dict[Any, Any]):
    """A mapping loaded from YAML, with the 1-based line of itself and of each key."""

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int | None:
        """The line of ``key`` if it was written, else the mapping's own line."""
        return self.key_lines.get(key, self.line)


class LocatedList(list[Any]):
    """A sequence loaded from YAML, with the 1-based line of itself and of each item."""

    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int | None:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class _Loader(BoundedLoader):
    """SafeLoader whose mappings and sequences remember their lines, within the bounds."""

    def __init__(self, stream: str, filename: str) -> None:
        super().__init__(stream)
        self.filename = filename
        self.problems: list[Problem] = []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[LocatedDict]:
    data = LocatedDict()
    data.line = node.start_mark.line + 1
    yield data
    written = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    # flatten_mapping puts the pairs merged in with ``<<: *anchor`` first; a key written in
    # the mapping itself overrides a merged one silently (that is what merge keys are for).
    merged = len(node.value) - written
    own: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            loader.problems.append(
                Problem("a mapping key must be plain text", file=loader.filename, line=line)
            )
            continue
        if index >= merged:
            if key in own:
                first = data.key_lines.get(key)
                loader.problems.append(
                    Problem(
                        f"key {show_value(key)} is written twice in one mapping "
                        f"(first on line {first})",
                        file=loader.filename,
                        line=line,
                        hint="YAML would silently keep only the last one",
                    )
                )
            own.add(key)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LocatedList]:
    data = LocatedList()
    data.line = node.start_mark.line + 1
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_lines.append(item.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def read_manifest(manifest: Path, shown: str) -> str:
    """The manifest's text, refused when it is bigger than a manifest may be.

    A pipe is read too (``orchestrator validate <(generate-manifest)``): the user named it
    on the command line. Only files the manifest itself names must be regular files.
    """
    try:
        head = read_head(manifest, MAX_MANIFEST_BYTES, regular_only=False)
    except FileMissing as exc:
        raise InputError([Problem("manifest file not found", file=shown)]) from exc
    except FileRefused as exc:
        raise InputError([Problem(f"cannot read the manifest: {exc.reason}", file=shown)]) from exc
    if len(head) > MAX_MANIFEST_BYTES:
        raise InputError([too_big(shown, head, file_size(manifest))])
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise InputError(
            [
                Problem(
                    f"cannot read the manifest: it is not UTF-8 text ({exc.reason})",
                    file=shown,
                    line=line,
                )
            ]
        ) from exc


def load_yaml(text: str, filename: str) -> Any:
    """Parse YAML text safely; raise :class:`InputError` naming the file and line.

    ``text`` larger than :data:`MAX_MANIFEST_BYTES` is refused before it is parsed.
    """
    if len(text) > MAX_MANIFEST_BYTES // 4:  # else it cannot be over, even all 4-byte
        encoded = text.encode("utf-8")
        if len(encoded) > MAX_MANIFEST_BYTES:
            raise InputError([too_big(filename, encoded, len(encoded))])
    loader = _Loader(text, filename)
    try:
        data = loader.get_single_data()
    except LimitExceeded as exc:
        mark = exc.problem_mark
        raise InputError(
            [
                Problem(
                    str(exc.problem),
                    file=filename,
                    line=mark.line + 1 if mark is not None else None,
                    job=exc.job,
                    field=exc.field,
                    hint=exc.hint,
                )
            ]
        ) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        tag_hint = None
        if exc.problem and "could not determine a constructor" in exc.problem:
            tag_hint = "tags that construct objects are refused; write plain values"
        raise InputError(
            [
                Problem(
                    f"not allowed in a manifest: {exc.problem}",
                    file=filename,
                    line=line,
                    hint=tag_hint,
                )
            ]
        ) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context is not mark:
            # e.g. an unclosed quote or bracket: the problem is found at the end of the file,
            # the user has to look where the quoted text or the list began.
            what += f" ({exc.context} on line {context.line + 1})"
        raise InputError([Problem(f"malformed YAML: {what}", file=filename, line=line)]) from exc
    except yaml.YAMLError as exc:
        raise InputError([Problem(f"malformed YAML: {exc}", file=filename)]) from exc
    finally:
        loader.dispose()
    if loader.problems:
        raise InputError(loader.problems)
    return data


def too_big(filename: str, head: bytes, size: int | None) -> Problem:
    """The problem of a manifest over :data:`MAX_MANIFEST_BYTES`, at the line where the
    limit is crossed (``head``: its first bytes; ``size``: its size, when known)."""
    what = f"is {format_bytes(size)}" if size is not None else "holds more than that"
    return Problem(
        f"a manifest may hold at most {format_bytes(MAX_MANIFEST_BYTES)}; this one {what} "
        "(the limit is crossed on this line)",
        file=filename,
        line=head[:MAX_MANIFEST_BYTES].count(b"\n") + 1,
        hint=SPLIT_HINT,
    )


def located(value: Any, source: str, depth: int = 0) -> Any:
    """``value`` with its mappings and lists as the loader's located types (no lines), paths
    as text and tuples as lists; a value nested deeper than a manifest may be (or one that
    contains itself) is an :class:`InputError`."""
    if depth > MAX_DEPTH:
        raise InputError(
            [Problem(f"nested more than {MAX_DEPTH} levels deep (or contains itself)", file=source)]
        )
    if isinstance(value, Mapping):
        return LocatedDict((key, located(item, source, depth + 1)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return LocatedList(located(item, source, depth + 1) for item in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
