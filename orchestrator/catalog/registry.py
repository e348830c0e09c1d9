"""The set of known models: the built-in schema files plus any a user adds.

>>> catalog = builtin_catalog()
>>> catalog.require("runwayml/runway-gen-4/turbo/image-to-video").slug
'runway-gen-4-turbo'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path

from orchestrator.catalog.spec import CatalogError, ModelSpec, load_model_file, parse_model
from orchestrator.problems import closest


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
            near = closest(model_id, self._models)
            hint = f"; did you mean {near!r}?" if near else ""
            raise KeyError(f"unknown model {model_id!r}{hint}")
        return model

    def suggest(self, model_id: str) -> str | None:
        return closest(model_id, self._models)

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


@cache
def builtin_catalog() -> Catalog:
    """The models shipped inside the package (read once per process)."""
    folder = resources.files("orchestrator.catalog") / "schemas"
    models = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            models.append(parse_model(json.loads(item.read_text("utf-8")), origin=item.name))
    return Catalog(models)
