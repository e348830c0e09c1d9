"""The set of known models: the built-in schema files plus any a user adds.

>>> catalog = builtin_catalog()
>>> catalog.require("runwayml/runway-gen-4/turbo/image-to-video").slug
'runway-gen-4-turbo'
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.catalog.parse import load_model_file, parse_model
from orchestrator.catalog.spec import CatalogError, ModelSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: difflib's similarity cutoff, the one :func:`orchestrator.problems.closest` uses.
CLOSE_ENOUGH = 0.6


class Catalog:
    """Model specifications by model id."""

    def __init__(self, models: Iterable[ModelSpec] = ()) -> None:
        self._models: dict[str, ModelSpec] = {}
        for model in models:
            self.add(model)

    def add(self, model: ModelSpec) -> None:
        """Add or replace a model (a user's file overrides the built-in one)."""
        self._models[model.model_id] = model

    def get(self, model_id: str) -> ModelSpec | None:
        return self._models.get(model_id)

    def require(self, model_id: str) -> ModelSpec:
        """The model, or a ``KeyError`` that suggests the closest known id."""
        model = self._models.get(model_id)
        if model is None:
            near = self.suggest(model_id)
            hint = f"; did you mean {near!r}?" if near else ""
            raise KeyError(f"unknown model {model_id!r}{hint}")
        return model

    def suggest(self, model_id: str) -> str | None:
        """The known id most like ``model_id``, compared without the shared task suffix
        (``/image-to-video`` alone would make every id look alike)."""
        found = self.suggestions(model_id, limit=1)
        return found[0] if found else None

    def suggestions(self, model_id: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` known ids most like ``model_id``, closest first.

        The likeness is the one of :func:`~orchestrator.problems.closest` (difflib's ratio,
        at least 0.6), on the ids without the shared task suffix, as in :meth:`suggest`.

        >>> for known in builtin_catalog().suggestions("bytedance/seedance-1-0/prp/image-to-video"):
        ...     print(known)
        bytedance/seedance-1-0/pro/image-to-video
        bytedance/seedance-v1.5-pro/image-to-video
        bytedance/seedance-1-0/lite/image-to-video
        >>> builtin_catalog().suggestions("acme/nothing-like-it", limit=2)
        []
        """
        return closest_ids(model_id, self._models, limit)

    def unknown_reason(self, model_id: str) -> str | None:
        """Why ``model_id`` is unknown, when the catalog knows more than that it is absent
        (a live catalog says the API was asked); None here."""
        return None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(sorted(self._models.values(), key=lambda m: m.model_id))

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def with_directory(self, directory: Path) -> Catalog:
        """A copy with every ``*.json`` catalog file of ``directory`` added."""
        merged = Catalog(self)
        if not directory.is_dir():
            raise CatalogError(f"{directory}: catalog directory not found")
        for path in sorted(directory.glob("*.json")):
            merged.add(load_model_file(path))
        return merged


def closest_ids(model_id: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` of the ``known`` ids most like ``model_id``, closest first, compared
    without the shared task suffix (``/image-to-video`` alone makes every id look alike).

    >>> closest_ids("bytedance/seedance-9/ultra", ["bytedance/seedance-1-0/pro/image-to-video",
    ...     "runwayml/runway-gen-4/turbo/image-to-video"])
    ['bytedance/seedance-1-0/pro/image-to-video']
    """
    if limit <= 0:
        return []
    by_core: dict[str, list[str]] = {}
    for name in sorted(known):
        by_core.setdefault(_core(name), []).append(name)
    cores = difflib.get_close_matches(_core(model_id), by_core, n=limit, cutoff=CLOSE_ENOUGH)
    return [name for core in cores for name in by_core[core]][:limit]


def _core(model_id: str) -> str:
    return model_id.removesuffix("/image-to-video")


@cache
def builtin_catalog() -> Catalog:
    """The models shipped inside the package (read once per process)."""
    folder = resources.files("orchestrator.catalog") / "schemas"
    models = [
        parse_model(json.loads(item.read_text("utf-8")), origin=item.name)
        for item in sorted(folder.iterdir(), key=lambda p: p.name)
        if item.name.endswith(".json")
    ]
    return Catalog(models)


def load_catalog(extra_dir: str | Path | None = None) -> Catalog:
    """The built-in models plus, when given, every schema file of ``extra_dir``."""
    catalog = builtin_catalog()
    return catalog.with_directory(Path(extra_dir)) if extra_dir else catalog
