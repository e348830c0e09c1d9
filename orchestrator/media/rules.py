"""Image validation rules, as RunComfy's model schemas publish them.

Every image field of a model schema may carry ``validations`` such as::

    {"validation_rule": "width_pixels<", "validation_value": 6000,
     "validation_error": "The uploaded image width and height must not exceed 6000 pixels."}

A rule is a measure (``width_pixels``, ``height_pixels``, ``width/height``, ``file_size_mb``)
followed by a comparison (``<``, ``<=``, ``>``, ``>=``). :class:`ImageRule` parses one and
checks it against an image's oriented size and its byte count.

>>> rule = ImageRule.parse({"validation_rule": "width_pixels>", "validation_value": 300})
>>> rule.holds(width=301, height=400, size_bytes=10)
True
>>> rule.holds(width=300, height=400, size_bytes=10)
False
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

MEASURES = ("width_pixels", "height_pixels", "width/height", "file_size_mb")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
#: One "MB" in the schemas' ``file_size_mb`` rules. The pages do not say whether they mean
#: 10**6 or 2**20 bytes; the smaller reading is the safe one (never send a file the server
#: might reject).
BYTES_PER_MB = 1_000_000


@dataclass(frozen=True, slots=True)
class ImageRule:
    """One ``validations`` entry of a model's image field."""

    measure: str
    op: str
    value: float
    message: str

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> ImageRule:
        """Parse a schema entry; raise ``ValueError`` for a rule this tool cannot check."""
        text = str(raw.get("validation_rule", "")).replace(" ", "")
        value = raw.get("validation_value")
        # Longest comparison first so "<=" is not read as "<" followed by "=".
        for op in sorted(COMPARISONS, key=len, reverse=True):
            if text.endswith(op):
                measure = text[: -len(op)]
                break
        else:
            raise ValueError(f"unknown image validation rule {text!r}")
        if measure not in MEASURES:
            raise ValueError(
                f"unknown image measure {measure!r} in rule {text!r}; known: {', '.join(MEASURES)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"rule {text!r} needs a numeric validation_value, got {value!r}")
        message = str(raw.get("validation_error") or f"image must satisfy {measure} {op} {value}")
        return cls(measure=measure, op=op, value=float(value), message=message)

    @property
    def text(self) -> str:
        """The rule as the schema spells it, e.g. ``width_pixels<6000``."""
        value = int(self.value) if self.value.is_integer() else self.value
        return f"{self.measure}{self.op}{value}"

    def measured(self, width: int, height: int, size_bytes: int) -> float:
        """The quantity this rule compares, for an image of that oriented size."""
        if self.measure == "width_pixels":
            return float(width)
        if self.measure == "height_pixels":
            return float(height)
        if self.measure == "width/height":
            return width / height if height else math.inf
        return size_bytes / BYTES_PER_MB

    def holds(self, width: int, height: int, size_bytes: int) -> bool:
        """Whether an image of this oriented size and byte count satisfies the rule."""
        return COMPARISONS[self.op](self.measured(width, height, size_bytes), self.value)


def parse_rules(raw: Iterable[Mapping[str, object]]) -> tuple[ImageRule, ...]:
    """Parse a field's whole ``validations`` list."""
    return tuple(ImageRule.parse(entry) for entry in raw)


def violations(
    rules: Iterable[ImageRule], width: int, height: int, size_bytes: int
) -> list[ImageRule]:
    """The rules an image breaks, in schema order (empty when it passes)."""
    return [rule for rule in rules if not rule.holds(width, height, size_bytes)]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """The box of allowed sizes the rules describe, in whole pixels.

    ``None`` means unbounded. Strict comparisons are turned into inclusive integer bounds
    (``width_pixels<6000`` allows at most 5999 pixels).
    """

    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_aspect: float | None = None
    max_aspect: float | None = None
    max_bytes: int | None = None

    @classmethod
    def from_rules(cls, rules: Iterable[ImageRule]) -> ImageLimits:
        """Fold the rules of one field into one box of limits (the tightest of each kind)."""
        bounds: dict[str, float] = {}

        def tighten(name: str, value: float, smaller_wins: bool) -> None:
            old = bounds.get(name)
            if old is None or (value < old if smaller_wins else value > old):
                bounds[name] = value

        for rule in rules:
            upper = rule.op in ("<", "<=")
            strict = rule.op in ("<", ">")
            if rule.measure in ("width_pixels", "height_pixels"):
                axis = "width" if rule.measure == "width_pixels" else "height"
                if upper:
                    limit = math.ceil(rule.value) - 1 if strict else math.floor(rule.value)
                    tighten(f"max_{axis}", limit, smaller_wins=True)
                else:
                    limit = math.floor(rule.value) + 1 if strict else math.ceil(rule.value)
                    tighten(f"min_{axis}", limit, smaller_wins=False)
            elif rule.measure == "width/height":
                if upper:
                    tighten("max_aspect", rule.value, smaller_wins=True)
                else:
                    tighten("min_aspect", rule.value, smaller_wins=False)
            else:
                limit_bytes = rule.value * BYTES_PER_MB
                as_int = math.ceil(limit_bytes) - 1 if strict else math.floor(limit_bytes)
                tighten("max_bytes", as_int, smaller_wins=True)

        def whole(name: str) -> int | None:
            value = bounds.get(name)
            return None if value is None else int(value)

        return cls(
            min_width=whole("min_width"),
            max_width=whole("max_width"),
            min_height=whole("min_height"),
            max_height=whole("max_height"),
            min_aspect=bounds.get("min_aspect"),
            max_aspect=bounds.get("max_aspect"),
            max_bytes=whole("max_bytes"),
        )
