"""Output paths: patterns rendered per job, and nothing ever leaves the output root."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from orchestrator.outputs.paths import (
    NAME_MAX,
    PATTERN_FIELDS,
    OutputPathError,
    check_relative,
    part_name,
    part_prefix,
    part_target,
    pattern_fields,
    render_output_path,
    resolve_inside,
)

if TYPE_CHECKING:
    from pathlib import Path

VALUES = {
    "batch": "spring",
    "model_slug": "seedance-1-0-lite",
    "model": "bytedance_seedance-1-0_lite_image-to-video",
    "id": "beach",
    "variant": "_seed-1",
    "job": "beach_seed-1",
    "replicate": 1,
    "seed": None,
    "key": "0123456789ab",
}


def test_pattern_fields_lists_the_placeholders_used() -> None:
    assert pattern_fields("{batch}/{model_slug}/{id}{variant}.mp4") == [
        "batch",
        "model_slug",
        "id",
        "variant",
    ]
    assert pattern_fields("fixed.mp4") == []
    assert pattern_fields("{{literal}}/{key}.mp4") == ["key"]


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        pytest.param("{batch}/{foo}.mp4", ["unknown placeholder {foo}", "{id}"], id="unknown"),
        pytest.param("{id:>8}.mp4", ["without format specs"], id="format-spec"),
        pytest.param("{id!r}.mp4", ["without format specs"], id="conversion"),
        pytest.param("{id.mp4", ["malformed"], id="unclosed-brace"),
        pytest.param("{}.mp4", ["unknown placeholder {}"], id="positional"),
    ],
)
def test_bad_patterns_are_refused(pattern: str, words: list[str]) -> None:
    with pytest.raises(OutputPathError) as caught:
        pattern_fields(pattern)
    for word in words:
        assert word in str(caught.value)


def test_render_fills_every_placeholder_and_none_becomes_empty() -> None:
    pattern = "/".join("{" + name + "}" for name in PATTERN_FIELDS) + ".mp4"
    rendered = render_output_path(pattern, VALUES)
    assert rendered == (
        "spring/seedance-1-0-lite/bytedance_seedance-1-0_lite_image-to-video/beach/_seed-1/"
        "beach_seed-1/1/0123456789ab.mp4"
    )  # the empty {seed} component is dropped
    assert render_output_path("{batch}/{id}{variant}.mp4", VALUES) == "spring/beach_seed-1.mp4"


@pytest.mark.parametrize(
    ("pattern", "values", "words"),
    [
        pytest.param("../{id}.mp4", VALUES, ["'..' is not allowed"], id="dotdot-in-pattern"),
        pytest.param("{id}/../../x.mp4", VALUES, ["'..' is not allowed"], id="dotdot-later"),
        pytest.param("/abs/{id}.mp4", VALUES, ["is absolute"], id="absolute"),
        pytest.param("C:/x/{id}.mp4", VALUES, ["is absolute"], id="windows-drive"),
        pytest.param("{id}/x.mp4", {"id": ".."}, ["'..' is not allowed"], id="dotdot-in-value"),
        pytest.param("{id}/x.mp4", {"id": "/etc"}, ["is absolute"], id="absolute-value"),
        pytest.param("{id}.mp4", {"id": "a\\..\\b"}, ["backslash"], id="backslash"),
        pytest.param("{id}", {"id": ""}, ["is empty"], id="empty"),
        pytest.param("{id}.mp4", {"id": "a?b"}, ["unsafe path component"], id="unsafe-char"),
        pytest.param("{id}/x.mp4", {"id": "-rf"}, ["unsafe path component"], id="leading-dash"),
    ],
)
def test_render_refuses_paths_that_escape_or_are_unsafe(
    pattern: str, values: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(OutputPathError) as caught:
        render_output_path(pattern, values)
    for word in words:
        assert word in str(caught.value)
    assert repr(pattern) in str(caught.value)


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("a/b.mp4", "a/b.mp4"),
        ("./a//b/./c.mp4", "a/b/c.mp4"),
        ("a b/c d.mp4", "a b/c d.mp4"),
        ("a/b/", "a/b"),
    ],
)
def test_check_relative_normalises(path: str, normal: str) -> None:
    assert check_relative(path) == normal


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../x", "'..' is not allowed"),
        ("a/../../x", "'..' is not allowed"),
        ("/x", "is absolute"),
        ("c:x", "is absolute"),
        ("a\x00b", "NUL"),
        (".", "is empty"),
        ("a/ b", "unsafe path component ' b'"),
        ("a/b ", "unsafe path component 'b '"),
        ("a/b*", "unsafe path component 'b*'"),
    ],
)
def test_check_relative_refuses(path: str, words: str) -> None:
    with pytest.raises(OutputPathError) as caught:
        check_relative(path)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"path {path!r}")


def test_resolve_inside_gives_an_absolute_path_under_the_root(tmp_path: Path) -> None:
    target = resolve_inside(tmp_path / "out", "b/m/beach.mp4")
    assert target == (tmp_path / "out" / "b" / "m" / "beach.mp4").resolve()
    assert target.is_absolute()


def test_resolve_inside_refuses_dotdot_and_absolute(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="not allowed"):
        resolve_inside(tmp_path, "../evil.mp4")
    with pytest.raises(OutputPathError, match="absolute"):
        resolve_inside(tmp_path, str(tmp_path / "x.mp4"))


def test_resolve_inside_refuses_a_symlink_that_points_outside(tmp_path: Path) -> None:
    root = tmp_path / "out"
    outside = tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(OutputPathError) as caught:
        resolve_inside(root, "link/video.mp4")
    assert "resolves outside the output folder" in str(caught.value)
    assert "'link/video.mp4'" in str(caught.value)


def test_resolve_inside_follows_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "out"
    (root / "real").mkdir(parents=True)
    os.symlink(root / "real", root / "alias")
    assert resolve_inside(root, "alias/v.mp4") == (root / "real" / "v.mp4").resolve()


def test_resolve_inside_works_when_the_root_itself_is_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    os.symlink(real, tmp_path / "root-link")
    assert resolve_inside(tmp_path / "root-link", "a.mp4") == real.resolve() / "a.mp4"


TAG = "0a1b2c3d"


@pytest.mark.parametrize(
    ("name", "hashed"),
    [
        pytest.param("beach.mp4", False, id="short"),
        pytest.param("x" * 236 + ".mp4", False, id="240-bytes-fits-exactly"),
        pytest.param("x" * 237 + ".mp4", True, id="241-bytes"),
        pytest.param("x" * 251 + ".mp4", True, id="255-bytes"),
        pytest.param("é" * 118 + ".mp4", False, id="utf8-240-bytes"),
        pytest.param("é" * 119 + ".mp4", True, id="utf8-242-bytes-but-123-chars"),
    ],
)
def test_part_names_always_fit_and_hash_only_when_needed(name: str, hashed: bool) -> None:
    part = part_name(name, TAG)
    assert len(part.encode("utf-8")) <= NAME_MAX
    assert part.startswith(".")
    assert part.endswith(f".{TAG}.part")
    assert (part == f".{name}.{TAG}.part") is not hashed
    if hashed:
        assert len(part_prefix(name)) == 33
        assert all(c in "0123456789abcdef" for c in part_prefix(name)[1:])


def test_part_prefixes_are_deterministic_and_tell_targets_apart() -> None:
    names = ["a" * 250 + ".mp4", "a" * 249 + "b.mp4", "a" * 250 + ".json", "beach.mp4"]
    prefixes = [part_prefix(n) for n in names]
    assert prefixes == [part_prefix(n) for n in names]
    assert len(set(prefixes)) == len(names)


def test_a_folder_of_part_files_indexes_by_prefix(tmp_path: Path) -> None:
    """What Leftovers does: index the part files by prefix, look a target up by its own."""
    targets = ["beach.mp4", "y" * 245 + ".mp4", "z" * 200 + ".json"]
    for number, target in enumerate(targets):
        (tmp_path / part_name(target, f"{number:08x}")).write_bytes(b"")  # the file system agrees
        (tmp_path / part_name(target, f"{number + 100:08x}")).write_bytes(b"")
    (tmp_path / "beach.mp4").write_bytes(b"")
    index: dict[str, list[str]] = {}
    for entry in os.listdir(tmp_path):
        prefix = part_target(entry)
        if prefix is not None:
            index.setdefault(prefix, []).append(entry)
    for target in targets:
        assert len(index.pop(part_prefix(target)[1:])) == 2
    assert index == {}
