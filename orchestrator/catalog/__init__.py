"""The model catalog: schemas as data, universal input names, prices, a generic validator.

Each model ships as one JSON file in ``schemas/`` (the shape of ``GET /v1/models/{id}``);
adding a model means adding a file. :func:`builtin_catalog` loads them once. For a model
whose entry has no ``universal`` mapping (one only the API knows), :mod:`.derive` finds
one in its schema.
"""

from __future__ import annotations

from orchestrator.catalog.derive import derive_image_formats as derive_image_formats
from orchestrator.catalog.derive import derive_universal as derive_universal
from orchestrator.catalog.derive import with_derived_mapping as with_derived_mapping
from orchestrator.catalog.pricing import PriceTable as PriceTable
from orchestrator.catalog.registry import Catalog as Catalog
from orchestrator.catalog.registry import builtin_catalog as builtin_catalog
from orchestrator.catalog.registry import load_catalog as load_catalog
from orchestrator.catalog.spec import UNIVERSAL_NAMES as UNIVERSAL_NAMES
from orchestrator.catalog.spec import Alias as Alias
from orchestrator.catalog.spec import CatalogError as CatalogError
from orchestrator.catalog.spec import FieldSpec as FieldSpec
from orchestrator.catalog.spec import ModelSpec as ModelSpec
from orchestrator.catalog.spec import Price as Price
from orchestrator.catalog.spec import model_slug as model_slug
from orchestrator.catalog.validate import FieldIssue as FieldIssue
from orchestrator.catalog.validate import validate_payload as validate_payload
