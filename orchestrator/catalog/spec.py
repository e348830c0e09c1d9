"""Model specifications: the types a catalog entry is read into.

:class:`ModelSpec` is one model (its input fields, universal aliases, price and slug), built
from :class:`FieldSpec`, :class:`Alias` and :class:`Price`; a catalog entry that cannot be
read raises :class:`CatalogError`. :mod:`.parse` reads catalog files into these types.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrator.media.rules import ImageLimits, ImageRule

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Names a manifest may use for any model; each model maps the ones it supports.
UNIVERSAL_NAMES = ("prompt", "image", "last_image", "duration", "resolution", "ratio", "seed")
IMAGE_FORMATS = ("image_uri", "image_uris")
#: The JSON-schema types the validator checks; a schema naming another is refused.
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object")
PRICE_UNITS = ("second", "output")
_FLOAT_MAX = sys.float_info.max
_DECIMAL = re.compile(r"\d{1,6}(\.\d{1,6})?")


class CatalogError(ValueError):
    """A catalog file that cannot be read as a model specification."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input field of a model, as its JSON schema describes it."""

    name: str
    type: str | None = None
    title: str = ""
    description: str = ""
    enum: tuple[Any, ...] | None = None
    default: Any = None
    has_default: bool = False
    max_length: int | None = None
    min_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    items_type: str | None = None
    required: bool = False
    is_image: bool = False
    rules: tuple[ImageRule, ...] = ()
    image_formats: tuple[str, ...] | None = None

    @property
    def limits(self) -> ImageLimits:
        """The image size box this field's validation rules allow."""
        return ImageLimits.from_rules(self.rules)

    def allowed_text(self) -> str | None:
        """What values are allowed, in words, for error messages."""
        if self.enum is not None:
            return "allowed: " + ", ".join(_show(v) for v in self.enum)
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {_show(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"<= {_show(self.maximum)}")
        if bounds:
            return "allowed: " + " and ".join(bounds)
        return None


@dataclass(frozen=True, slots=True)
class Alias:
    """How one universal input name maps to a model's native field."""

    universal: str
    field: str
    wrap_list: bool = False
    values: Mapping[str, Any] | None = None

    def translate(self, value: Any) -> tuple[bool, Any]:
        """Map a universal value to the native one: ``(ok, native_value)``.

        Without a value table every value passes through unchanged; with one, a value
        missing from the table is not ok, and a value that is already native is kept.
        """
        if self.values is None:
            return True, value
        key = _show(value)
        if key in self.values:
            return True, self.values[key]
        if value in self.values.values():
            return True, value
        return False, value


@dataclass(frozen=True, slots=True)
class Price:
    """A model's list price: ``usd`` per ``unit`` (``second`` of video, or ``output``)."""

    usd: float
    unit: str = "second"
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the tool knows about one model: fields, aliases, price, slug."""

    model_id: str
    display_name: str
    slug: str
    fields: Mapping[str, FieldSpec]
    aliases: Mapping[str, Alias]
    price: Price | None = None
    pricing_note: str = ""
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.required)

    @cached_property
    def image_fields(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.is_image)

    def native_name(self, name: str) -> str | None:
        """The native field a universal or native name refers to, if the model has it."""
        if name in self.fields:
            return name
        alias = self.aliases.get(name)
        return alias.field if alias else None

    def universal_name(self, native: str) -> str | None:
        """The universal name of a native field, if it has one."""
        for alias in self.aliases.values():
            if alias.field == native:
                return alias.universal
        return None

    def input_names(self) -> list[str]:
        """Every name a manifest may use for this model: native fields and universal aliases."""
        return sorted(set(self.fields) | set(self.aliases))

    def inputs_text(self) -> str:
        """The inputs in words, universal name first: ``prompt, image (first_frame_image_url)``."""
        names = []
        for name in self.fields:
            universal = self.universal_name(name)
            names.append(f"{universal} ({name})" if universal and universal != name else name)
        return ", ".join(names)

    def duration_seconds(self, payload: Mapping[str, Any]) -> float | None:
        """Video length in seconds the payload asks for (schema default when unset).

        >>> from orchestrator.catalog import builtin_catalog
        >>> dreamina = builtin_catalog().require("bytedance/dreamina-3-0/pro/image-to-video")
        >>> dreamina.duration_seconds({"frames": 241})
        10.0

        A model whose durations are text (``enum: ["5", "10"]``) counts them as seconds.
        """
        alias = self.aliases.get("duration")
        if alias is None:
            return None
        spec = self.fields.get(alias.field)
        value = payload.get(alias.field, spec.default if spec else None)
        if value is None or isinstance(value, bool):
            return None
        if alias.values:
            for seconds, native in alias.values.items():
                if native == value:
                    return float(seconds)
            return None
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            value = float(value)  # an enum of numbers as text: "5", "10"
        # Not a length a price can be multiplied by: NaN, infinite, or past float range.
        ok = isinstance(value, int | float) and -_FLOAT_MAX <= value <= _FLOAT_MAX
        return float(value) if ok else None


def model_slug(model_id: str) -> str:
    """A short folder-safe name for a model id that has no catalog ``slug``.

    >>> model_slug("acme/wonder-video/v2/image-to-video")
    'wonder-video-v2'
    """
    parts = [p for p in model_id.split("/") if p]
    if len(parts) > 1:
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] in ("image-to-video", "text-to-video", "video"):
        parts = parts[:-1]
    return re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(parts)).strip("-.") or "model"


def _show(value: Any) -> str:
    """A value as a user would type it (``5`` not ``5.0``, ``true`` not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
