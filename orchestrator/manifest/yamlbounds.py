"""Bounds on a YAML manifest, checked while it is composed, before any value is built.

Aliases that repeat aliases can make a 1 KB document stand for a billion values (a
"billion laughs" bomb): PyYAML shares the repeated objects, so loading is cheap, but
anything that walks or prints the value (an error message, a job key) would expand it, and
50,000 nested brackets exhaust Python's stack. :class:`BoundedLoader` counts as the parser's
events arrive and refuses a document with the line where a bound is crossed, the job and
the field it was in, and the bound. The bounds are far above what a manifest needs (a job is
about seven nodes; more jobs than :data:`MAX_NODES` allows belong in a ``jobs_from`` file):

- :data:`MAX_MANIFEST_BYTES`: the document's size, checked before it is parsed.
- :data:`MAX_DEPTH`: levels of nesting, counting what aliases bring in.
- :data:`MAX_NODES`: values (scalars, lists, mappings) written in the document; PyYAML
  needs about 800 bytes each while it reads, so about 200 MB at the bound.
- :data:`MAX_ALIASES`: alias uses (``*name``). A job that merges a shared mapping with
  ``<<: *common`` is one use; ten thousand jobs sharing values want ``defaults:``.
- :data:`MAX_EXPANDED_NODES` and :data:`MAX_EXPANDED_TEXT`: the values and the characters
  of text the document holds once every alias is written out in full.
- :data:`MAX_NUMBER_DIGITS`: the length of a whole number (Python refuses to convert 4,300
  digits, and YAML 1.1's base 60 ``1:2:3...`` grows without limit).
- An alias used inside the value it names (a cycle) is refused: nothing could print it.
"""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.inputfiles import format_bytes
from orchestrator.problems import clipped

MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 250_000
MAX_ALIASES = 10_000
MAX_EXPANDED_NODES = 1_000_000
MAX_EXPANDED_TEXT = 32 * 1024 * 1024
MAX_NUMBER_DIGITS = 100
ALIAS_HINT = (
    "aliases that repeat aliases multiply; write the values out, or use defaults: or matrix:"
)
SPLIT_HINT = "split it, or move the jobs to a jobs_from CSV or JSONL file"
#: Characters of one path component (a key) in a field's name, and components shown.
_KEY_CHARS = 40
_PATH_PARTS = 8


class LimitExceeded(yaml.MarkedYAMLError):
    """A document over one of the bounds, with where it happened and what to do instead."""

    def __init__(
        self,
        problem: str,
        mark: Any,
        hint: str | None = None,
        job: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint
        self.job = job
        self.field = field


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a document over the bounds (see the module's docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._aliases = 0
        self._expanded_nodes = 0
        self._expanded_text = 0
        #: (height, nodes, characters) of each anchored node, aliases written out; a node
        #: is in ``anchors`` from its first event, here only once it is complete.
        self._sizes: dict[yaml.Node, tuple[int, int, int]] = {}
        #: (parent, key or index) of every node being composed, root first: where a bound
        #: is crossed, in words (``job 'beach': field 'prompt'``).
        self._path: list[tuple[yaml.Node | None, Any]] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose one node, counting it (or what an alias stands for) against the bounds.

        The counts are kept as the events arrive, so a bomb is refused after at most
        :data:`MAX_ALIASES` cheap steps, and a deep document after :data:`MAX_DEPTH` levels
        of recursion, before anything is built from them.
        """
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        self._path.append((parent, index))
        try:
            if isinstance(event, yaml.AliasEvent):
                node = super().compose_node(parent, index)  # undefined: ComposerError
                self._alias(node, event)
                return node
            self._depth += 1
            self._nodes += 1
            self._expanded_nodes += 1
            if self._depth > MAX_DEPTH:
                self._refuse(
                    f"values are nested more than {MAX_DEPTH} levels deep",
                    event,
                    "a manifest needs a few levels; write the value flat",
                )
            if self._nodes > MAX_NODES:
                self._refuse(
                    f"the manifest holds more than {MAX_NODES:,} values (YAML nodes)",
                    event,
                    SPLIT_HINT,
                )
            if isinstance(event, yaml.ScalarEvent):
                self._add_text(len(event.value), event)
            node = super().compose_node(parent, index)
            self._depth -= 1
            if (
                isinstance(node, yaml.ScalarNode)
                and node.tag == "tag:yaml.org,2002:int"
                and len(node.value) > MAX_NUMBER_DIGITS
            ):
                self._refuse(
                    f"a whole number may have at most {MAX_NUMBER_DIGITS} digits; this one "
                    f"has {len(node.value):,} characters",
                    event,
                    "quote it to make it text",
                )
            if event.anchor is not None and node is not None:
                self._sizes[node] = self._measure(node)
            return node
        finally:
            self._path.pop()

    def _alias(self, node: yaml.Node | None, event: Any) -> None:
        """Count one alias use as everything it stands for."""
        name = clipped(str(event.anchor), _KEY_CHARS)
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            self._refuse(
                f"the manifest uses more than {MAX_ALIASES:,} aliases (*name)", event, ALIAS_HINT
            )
        size = self._sizes.get(node) if node is not None else None
        if size is None:
            self._refuse(
                f"alias *{name} is used inside the value it names (a cycle)",
                event,
                "an alias may only repeat a value that is complete",
            )
            return
        height, nodes, text = size
        if self._depth + height > MAX_DEPTH:
            self._refuse(
                f"alias *{name} nests values more than {MAX_DEPTH} levels deep", event, ALIAS_HINT
            )
        self._expanded_nodes += nodes
        if self._expanded_nodes > MAX_EXPANDED_NODES:
            self._refuse(
                f"with its aliases written out the manifest would hold more than "
                f"{MAX_EXPANDED_NODES:,} values (alias *{name} crosses the limit)",
                event,
                ALIAS_HINT,
            )
        self._add_text(text, event, alias=name)

    def _add_text(self, size: int, event: Any, alias: str | None = None) -> None:
        self._expanded_text += size
        if self._expanded_text > MAX_EXPANDED_TEXT:
            where = f" (alias *{alias} crosses the limit)" if alias else ""
            self._refuse(
                "with its aliases written out the manifest would hold more than "
                f"{format_bytes(MAX_EXPANDED_TEXT)} of text{where}",
                event,
                ALIAS_HINT if alias else SPLIT_HINT,
            )

    def _measure(self, node: yaml.Node) -> tuple[int, int, int]:
        """(height, nodes, characters) of a complete node, with its aliases written out.

        Anchored nodes inside it were measured when they were complete; the rest is walked
        once (its depth is already within :data:`MAX_DEPTH`, so the recursion is bounded).
        """
        known = self._sizes.get(node)
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            return 1, 1, len(node.value)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                children += (key, value)
        else:
            children = list(node.value)
        height, nodes, text = 0, 1, 0
        for child in children:
            h, n, t = self._measure(child)
            height, nodes, text = max(height, h), nodes + n, text + t
        return height + 1, nodes, text

    def _refuse(self, problem: str, event: Any, hint: str) -> None:
        job, field = self._where()
        raise LimitExceeded(problem, event.start_mark, hint, job=job, field=field)

    def _where(self) -> tuple[str | None, str | None]:
        """The job and field of the node being composed: ``('beach', 'prompt[3]')``.

        A value under ``jobs:`` is in a job (named by its ``id`` when that came first, else
        ``#N``); anything else names its place from the top (``matrix.seed``).
        """
        parts: list[str | int] = []
        job: str | None = None
        for depth, (_parent, index) in enumerate(self._path):
            if isinstance(index, int):
                part: str | int | None = index
            elif isinstance(index, yaml.ScalarNode):
                part = clipped(str(index.value), _KEY_CHARS)
            else:
                part = None  # the root, or a mapping's key
            if part is None:
                continue
            parts.append(part)
            if parts == ["jobs"] and depth + 1 < len(self._path):
                job_index = self._path[depth + 1][1]
                job_node = self._path[depth + 2][0] if depth + 2 < len(self._path) else None
                if isinstance(job_index, int):
                    job = _job_id(job_node) or f"#{job_index + 1}"
        if job is not None:
            parts = parts[2:]
        if not parts:
            return job, None
        text = ""
        for part in parts[:_PATH_PARTS]:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        if len(parts) > _PATH_PARTS:
            text += "..."
        return job, text


def _job_id(node: yaml.Node | None) -> str | None:
    """The ``id`` already composed in a job's mapping, when it is plain text."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "id"
            and isinstance(value, yaml.ScalarNode)
        ):
            return clipped(str(value.value), _KEY_CHARS)
    return None
