"""Universal names for a model the tool has never seen, derived from its input schema.

The five shipped files carry a hand-made ``universal`` mapping (and ``image_formats``). A
model that only the API knows gets one derived here, and only where the schema leaves no
doubt: a rule that finds two candidates maps neither, and the native names always work.

>>> entry = {"input_schema": {"properties": {
...     "text_prompt": {"type": "string"},
...     "frames_in": {"type": "array", "items": {"type": "string", "format": "image_uri"}},
...     "clip_seconds": {"type": "integer", "enum": [5, 10]},
... }}}
>>> for name, target in derive_universal(entry).items():
...     print(name, target)
prompt {'field': 'text_prompt'}
image {'field': 'frames_in', 'wrap': 'list'}
duration {'field': 'clip_seconds'}

The rules, in the order they apply:

- **Image fields** are those with image ``validations`` (pixel, aspect or file-size
  rules), an ``image_uri``/``image_uris`` ``format`` (on the field or its ``items``), or a
  name containing "image" or "frame" on a string (or array of strings) field without an
  ``enum``. One image field is ``image``; of two, the one named first/start/begin is
  ``image`` and the one named last/end/tail/final is ``last_image`` (when only one of the
  two has such a word and it is an end word, the other is ``image``: ``image`` and
  ``image_tail``). Three or more stay unmapped.
- **prompt**: the single free-text field (``type: string``, no ``enum``, not an image)
  whose name contains "prompt", has the word "text" (``promptText``, ``text_prompt``; not
  ``context``), or is ``description``; negative prompts never count.
- **duration**: the single number or integer field (or one whose ``enum`` is all numbers,
  or all numbers written as text)
  whose name contains "duration", "seconds" or "length", and not "max"/"min" as a word.
- **resolution**: the single field with "resolution" in its name. **ratio**: the single
  field with the word "ratio" in its name (``aspect_ratio``, ``aspectRatio``; not
  ``duration``) or named ``aspect``. **seed**: the single integer field with "seed" in
  its name.
- A field named exactly like a universal name is that name's field (``image`` maps to
  ``image``), and never another universal name's. Two universal names that would share one
  field are both left unmapped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.catalog.spec import IMAGE_FORMATS, UNIVERSAL_NAMES
from orchestrator.media.rules import MEASURES

START_WORDS = frozenset({"first", "start", "begin"})
END_WORDS = frozenset({"last", "end", "tail", "final"})
#: Pillow's names, as ``image_formats`` holds them (see ``media.probe.normalize_formats``).
FORMAT_NAMES = ("JPEG", "PNG", "WEBP", "GIF")
_FORMAT_WORD = re.compile(r"\b(jpe?g|png|webp|gif)s?\b", re.IGNORECASE)
#: "GIF is not supported" names a format that is refused, not accepted: such a description
#: gives no list at all (the tool then sends JPEG or PNG, as for any model).
_NEGATION = re.compile(r"\b(not|no|never|except|unsupported|without)\b|n't", re.IGNORECASE)
#: Words of a field name: ``firstFrameImageURL`` -> first, frame, image, url.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

Property = Mapping[str, Any]


def derive_universal(entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A ``universal`` mapping for ``entry`` (the JSON shape of the shipped files' key).

    Reads ``entry["input_schema"]`` only; a schema it cannot make sense of gives ``{}``
    (:func:`~orchestrator.catalog.parse.parse_model` reports what is wrong with it).

    >>> derive_universal({"input_schema": {"properties": {
    ...     "image": {"type": "string"}, "image_tail": {"type": "string"}}}})
    {'image': {'field': 'image'}, 'last_image': {'field': 'image_tail'}}
    """
    props = _properties(entry)
    images = [name for name, prop in props.items() if _is_image(name, prop)]
    found = _image_roles(images)
    others = {name: prop for name, prop in props.items() if name not in images}
    for universal, rule in _RULES.items():
        hits = [name for name, prop in others.items() if rule(name, _words(name), prop)]
        if len(hits) == 1:
            found[universal] = hits[0]
    for universal in UNIVERSAL_NAMES:
        if universal in props:
            # The native name is the universal one: anything else would shadow a field.
            is_image_name = universal in ("image", "last_image")
            if is_image_name and universal not in images:
                found.pop(universal, None)
            else:
                found[universal] = universal
    found = {
        universal: native
        for universal, native in found.items()
        if native == universal or native not in UNIVERSAL_NAMES
    }
    shared = Counter(found.values())
    mapping: dict[str, dict[str, Any]] = {}
    for universal in UNIVERSAL_NAMES:
        native = found.get(universal)
        if native is None or shared[native] > 1:
            continue
        mapping[universal] = {"field": native}
        if universal in ("image", "last_image") and props[native].get("type") == "array":
            mapping[universal]["wrap"] = "list"
    return mapping


def derive_image_formats(entry: Mapping[str, Any]) -> dict[str, list[str]]:
    """The formats each image field's description names, as ``image_formats`` holds them.

    ``image_formats`` is an allow-list (the image is re-encoded to one of them), so a field
    whose description names no format, or names one in a negation, gets no entry: the tool
    then sends JPEG or PNG, as it does for any model.

    >>> derive_image_formats({"input_schema": {"properties": {"image_urls": {
    ...     "type": "array", "items": {"type": "string", "format": "image_uri"},
    ...     "description": "Upload JPG or png only."}}}})
    {'image_urls': ['JPEG', 'PNG']}
    """
    formats: dict[str, list[str]] = {}
    for name, prop in _properties(entry).items():
        description = prop.get("description")
        if not _is_image(name, prop) or not isinstance(description, str):
            continue
        if _NEGATION.search(description):
            continue
        named = {word.upper().replace("JPG", "JPEG") for word in _FORMAT_WORD.findall(description)}
        if named:
            formats[name] = [kind for kind in FORMAT_NAMES if kind in named]
    return formats


def with_derived_mapping(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``entry`` with ``universal`` and ``image_formats`` derived where absent.

    A key that is present (not ``None``) is kept as it is, so a shipped file, or a live
    entry merged with one, comes back unchanged. The copy is shallow; ``entry`` itself is
    never modified.

    >>> entry = {"model_id": "acme/x", "input_schema": {"properties": {"prompt": {}}}}
    >>> with_derived_mapping(entry)["universal"]
    {'prompt': {'field': 'prompt'}}
    >>> with_derived_mapping({**entry, "universal": {}})["universal"]
    {}
    """
    copy = dict(entry)
    if copy.get("universal") is None:
        copy["universal"] = derive_universal(entry)
    if copy.get("image_formats") is None:
        copy["image_formats"] = derive_image_formats(entry)
    return copy


def _properties(entry: Mapping[str, Any]) -> dict[str, Property]:
    schema = entry.get("input_schema")
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(props, Mapping):
        return {}
    return {n: p for n, p in props.items() if isinstance(n, str) and isinstance(p, Mapping)}


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(name)]


def _items(prop: Property) -> Property:
    items = prop.get("items")
    return items if isinstance(items, Mapping) else {}


def _is_text(prop: Property) -> bool:
    return prop.get("type") == "string" and prop.get("enum") is None


def _is_image(name: str, prop: Property) -> bool:
    if prop.get("format") in IMAGE_FORMATS or _items(prop).get("format") in IMAGE_FORMATS:
        return True
    rules = prop.get("validations")
    if isinstance(rules, list) and any(_is_image_rule(rule) for rule in rules):
        return True
    lowered = name.lower()
    texts = prop.get("type") == "array" and _items(prop).get("type") == "string"
    return ("image" in lowered or "frame" in lowered) and (_is_text(prop) or texts)


def _is_image_rule(rule: Any) -> bool:
    text = rule.get("validation_rule") if isinstance(rule, Mapping) else None
    return isinstance(text, str) and text.replace(" ", "").startswith(MEASURES)


def _image_roles(images: list[str]) -> dict[str, str]:
    if len(images) == 1:
        return {"image": images[0]}
    if len(images) != 2:
        return {}
    roles = {name: _role(_words(name)) for name in images}
    starts = [name for name, role in roles.items() if role == "start"]
    ends = [name for name, role in roles.items() if role == "end"]
    found = {}
    if len(starts) == 1:
        found["image"] = starts[0]
    if len(ends) == 1:
        found["last_image"] = ends[0]
        [other] = [name for name in images if name != ends[0]]
        if not starts and roles[other] is None:
            found["image"] = other
    return found


def _role(words: list[str]) -> str | None:
    start, end = bool(START_WORDS.intersection(words)), bool(END_WORDS.intersection(words))
    if start == end:
        return None
    return "start" if start else "end"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_numeric_text(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"\d{1,6}(\.\d{1,6})?", value.strip()))


def _is_prompt(name: str, words: list[str], prop: Property) -> bool:
    lowered = name.lower()
    if not _is_text(prop) or "negative" in lowered or "neg" in words:
        return False
    return "prompt" in lowered or "text" in words or lowered == "description"


def _is_duration(name: str, words: list[str], prop: Property) -> bool:
    enum = prop.get("enum")
    # Numbers, or an enum of numbers (as numbers or as text: ``["5", "10"]``).
    numeric = prop.get("type") in ("integer", "number") or (
        prop.get("type") in (None, "string")
        and isinstance(enum, list)
        and bool(enum)
        and all(_is_number(value) or _is_numeric_text(value) for value in enum)
    )
    lowered = name.lower()
    named = any(word in lowered for word in ("duration", "seconds", "length"))
    # "max_length" is a limit, not the clip's length.
    return numeric and named and not {"max", "min"}.intersection(words)


def _is_resolution(name: str, words: list[str], prop: Property) -> bool:
    return "resolution" in name.lower()


def _is_ratio(name: str, words: list[str], prop: Property) -> bool:
    return "ratio" in words or name.lower() == "aspect"


def _is_seed(name: str, words: list[str], prop: Property) -> bool:
    return prop.get("type") == "integer" and "seed" in name.lower()


_RULES: dict[str, Callable[[str, list[str], Property], bool]] = {
    "prompt": _is_prompt,
    "duration": _is_duration,
    "resolution": _is_resolution,
    "ratio": _is_ratio,
    "seed": _is_seed,
}
